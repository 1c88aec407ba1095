import numpy as np
import pytest

from cait_mm.datasets.converters.common import (ConversionSummary,
                                                prepare_layout,
                                                sliding_windows)


@pytest.mark.parametrize('length, crop, stride, starts', [
    (1000, 512, 384, [0, 384, 488]),
    (544, 512, 384, [0, 32]),
    (512, 512, 384, [0]),
    (300, 512, 384, [0]),
    (1024, 512, 512, [0, 512]),
    (1025, 512, 512, [0, 512, 513]),
    (2149, 512, 384, [0, 384, 768, 1152, 1536, 1637]),
])
def test_sliding_windows_known_cases(length, crop, stride, starts):
    assert sliding_windows(length, crop, stride) == starts


@pytest.mark.parametrize('crop, stride', [(8, 8), (8, 5), (8, 1), (5, 3)])
def test_sliding_windows_cover_without_gaps(crop, stride):
    for length in range(1, 60):
        starts = sliding_windows(length, crop, stride)
        covered = np.zeros(length, int)
        for start in starts:
            covered[start:start + crop] += 1
            # every window is a full crop unless the axis is shorter
            assert min(crop, length) == len(covered[start:start + crop])
        assert (covered >= 1).all(), (length, starts)
        assert starts[0] == 0 and min(starts[-1] + crop, length) == length
        assert starts == sorted(set(starts))
        # consecutive windows overlap by at least crop - stride
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_sliding_windows_reject_gaps_and_nonsense():
    with pytest.raises(ValueError, match='no crop'):
        sliding_windows(100, 32, 33)
    with pytest.raises(ValueError, match='positive'):
        sliding_windows(100, 32, 0)


def test_prepare_layout_refuses_to_mix_conversions(tmp_path):
    dirs = prepare_layout(str(tmp_path))
    assert sorted(dirs) == [('annotations', 'training'),
                            ('annotations', 'validation'),
                            ('images', 'training'), ('images', 'validation')]
    (tmp_path / 'images' / 'training' / 'stale.png').write_bytes(b'x')
    (tmp_path / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='--overwrite'):
        prepare_layout(str(tmp_path))
    prepare_layout(str(tmp_path), overwrite=True)
    assert not (tmp_path / 'images' / 'training' / 'stale.png').exists()
    assert (tmp_path / 'images' / 'training').is_dir()
    # only the layout folders are replaced
    assert (tmp_path / 'notes.txt').read_text() == 'mine'


def test_summary_counts_and_format():
    summary = ConversionSummary(('a', 'b'))
    split = summary.split('training')
    split.add_label(np.array([[0, 0, 1], [255, 1, 1]], np.uint8))
    split.add_label(np.array([[1]], np.uint8))
    split.sources, split.samples = 2, 5
    assert split.class_pixels.tolist() == [2, 4]
    assert split.ignore_pixels == 1
    text = summary.format()
    assert 'training: 2 source images -> 5 samples, 7 source pixels' in text
    assert '28.57%' in text and '57.14%' in text and '14.29%' in text
