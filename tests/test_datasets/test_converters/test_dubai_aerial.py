import hashlib
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest

from cait_mm.datasets.converters import convert_dubai_aerial, sliding_windows
from cait_mm.datasets.converters.dubai_aerial import (CLASSES, COLOURS,
                                                      colours_to_label)
from ...conftest import run_tool
from ..fake_sources import DUBAI_SIZES, write_dubai_source

NAME = re.compile(r'tile(\d)_(image_part_\d{3})_y(\d{4})_x(\d{4})\.png')


def _crops(out, split):
    """``{(tile, name): {(y, x): file}}`` of one split."""
    found = {}
    files = sorted(os.listdir(osp.join(out, 'annotations', split)))
    assert files == sorted(os.listdir(osp.join(out, 'images', split)))
    for f in files:
        tile, name, y, x = NAME.fullmatch(f).groups()
        found.setdefault((int(tile), name), {})[int(y), int(x)] = f
    return found


def _digest(root):
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            h.update(name.encode())
            with open(osp.join(folder, name), 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def test_colours_to_label_uses_the_mask_colours():
    mask = np.array([list(COLOURS) + [(0, 0, 0), (0, 0, 0), (9, 9, 9)]],
                    np.uint8)
    label, unknown = colours_to_label(mask)
    assert label.tolist() == [[0, 1, 2, 3, 4, 5, 255, 255, 255]]
    assert dict(unknown) == {(0, 0, 0): 2, (9, 9, 9): 1}
    assert CLASSES[0] == 'building' and COLOURS[0] == (60, 16, 152)
    with pytest.raises(ValueError, match='shape'):
        colours_to_label(np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize(
    'split, tiles, stride',
    [
        ('training', range(1, 7), 24),
        ('validation', range(7, 9), 32),  # validation stride: the crop size
    ])
def test_crops_tile_the_images_exactly(dubai_source, dubai_converted, split,
                                       tiles, stride):
    src, expected = dubai_source
    out, _ = dubai_converted
    crops = _crops(out, split)
    names = ('image_part_001', 'image_part_002')
    assert sorted(crops) == [(t, n) for t in tiles for n in names]
    for (tile, name), files in crops.items():
        h, w = DUBAI_SIZES[tile]
        assert sorted(files) == [(y, x)
                                 for y in sliding_windows(h, 32, stride)
                                 for x in sliding_windows(w, 32, stride)]
        image = cv2.imread(
            osp.join(src, f'tile_{tile}', 'images', name + '.jpg'))
        seen = np.zeros((h, w), bool)
        for (y, x), f in files.items():
            window = (slice(y, y + 32), slice(x, x + 32))
            label = cv2.imread(
                osp.join(out, 'annotations', split, f), cv2.IMREAD_UNCHANGED)
            assert label.shape == (min(32, h), min(32, w))  # never padded
            np.testing.assert_array_equal(label, expected[tile, name][window])
            # images are crops of the decoded JPEG, not compressed again
            np.testing.assert_array_equal(
                cv2.imread(osp.join(out, 'images', split, f)), image[window])
            seen[window] = True
        assert seen.all()


def test_summary_counts_sources_and_unknown_colours(dubai_source,
                                                    dubai_converted):
    _, expected = dubai_source
    _, summary = dubai_converted
    train = summary.splits['training']
    labels = [
        expected[t, n].ravel() for t in range(1, 7)
        for n in ('image_part_001', 'image_part_002')
    ]
    counts = np.bincount(np.concatenate(labels), minlength=256)
    assert train.sources == 12
    assert train.class_pixels.tolist() == counts[:6].tolist()
    assert train.ignore_pixels == counts[255]
    # 2 images per tile; tile 1 is 50x70 -> 2x3 crops, tile 2 30x28 -> 1,
    # 3 33x64 -> 2x3, 4 64x40 -> 3x2, 5 32x32 -> 1, 6 45x45 -> 2x2
    assert train.samples == 2 * (6 + 1 + 6 + 6 + 1 + 4)
    val_unknown = expected['unknown']['validation']
    assert (f'validation: unknown mask colours set to ignore (255): '
            f'(0, 0, 0): {val_unknown[0, 0, 0]}, '
            f'(1, 2, 3): {val_unknown[1, 2, 3]}') in summary.format()


def test_conversion_is_deterministic(dubai_source, dubai_converted, tmp_path):
    convert_dubai_aerial(
        dubai_source[0], str(tmp_path), crop_size=32, stride=24)
    assert _digest(str(tmp_path)) == _digest(dubai_converted[0])


def test_validation_stride_can_be_chosen(dubai_source, tmp_path):
    convert_dubai_aerial(
        dubai_source[0], str(tmp_path), crop_size=32, stride=32, val_stride=16)
    crops = _crops(str(tmp_path), 'validation')
    assert sorted(crops[7, 'image_part_001']) == [(y, x)
                                                  for y in (0, 16, 32, 38)
                                                  for x in (0, 16, 18)]
    assert sorted(_crops(str(tmp_path), 'training')[1, 'image_part_001']) \
        == [(y, x) for y in (0, 18) for x in (0, 32, 38)]


def test_bad_sources_and_arguments_are_named(tmp_path):
    src = tmp_path / 'src'
    write_dubai_source(str(src), sizes={t: (8, 8) for t in range(1, 9)})
    with pytest.raises(ValueError, match='stride 40 > crop size 32'):
        convert_dubai_aerial(
            str(src), str(tmp_path / 'a'), crop_size=32, stride=40)
    assert not (tmp_path / 'a').exists()

    os.remove(src / 'tile_4' / 'masks' / 'image_part_001.png')
    with pytest.raises(
            FileNotFoundError,
            match=r"tile_4: images without a mask \['image_part"):
        convert_dubai_aerial(str(src), str(tmp_path / 'b'))

    write_dubai_source(str(src), sizes={4: (8, 8), 7: (9, 8)})
    cv2.imwrite(
        str(src / 'tile_7' / 'images' / 'image_part_001.jpg'),
        np.zeros((9, 7, 3), np.uint8))
    with pytest.raises(ValueError, match=r'is 7x9 but its mask .* 8x9'):
        convert_dubai_aerial(str(src), str(tmp_path / 'c'))
    # tiles 1-6 were written before tile 7 failed; all of it is removed
    assert not (tmp_path / 'c' / 'images').exists()

    os.rename(src / 'tile_8', src / 'tile_9')
    with pytest.raises(FileNotFoundError, match='tile_8/images'):
        convert_dubai_aerial(str(src), str(tmp_path / 'd'))


def test_command_line_tool(dubai_source, tmp_path):
    proc = run_tool([
        'tools/dataset_converters/dubai_aerial.py', '--src', dubai_source[0],
        '--out',
        str(tmp_path), '--crop-size', '32', '--stride', '24'
    ])
    assert '(32x32 crops)' in proc.stdout
    assert 'training: 12 source images -> 48 samples' in proc.stdout
    assert 'unknown mask colours set to ignore (255): (0, 0, 0)' in \
        proc.stdout
    assert len(os.listdir(tmp_path / 'images' / 'training')) == 48
