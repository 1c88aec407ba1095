import hashlib
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest

from cait_mm.datasets.converters import convert_isbi_membrane
from cait_mm.datasets.converters.isbi_membrane import mask_to_label
from ...conftest import run_tool
from ..fake_sources import write_isbi_source


def _digest(root):
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            h.update(osp.relpath(osp.join(folder, name), root).encode())
            with open(osp.join(folder, name), 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def test_mask_values_to_class_ids():
    mask = np.array([[0, 1, 127, 128, 254, 255]], np.uint8)
    assert mask_to_label(mask).tolist() == [[0, 0, 0, 1, 1, 1]]
    with pytest.raises(ValueError, match='shape'):
        mask_to_label(np.zeros((2, 2, 3), np.uint8))


def test_fixed_split_labels_and_images(isbi_source, isbi_converted):
    src, expected = isbi_source
    out, summary = isbi_converted
    names = {
        split: sorted(os.listdir(osp.join(out, 'annotations', split)))
        for split in ('training', 'validation')
    }
    assert names['training'] == [f'{i:02d}.png' for i in range(24)]
    assert names['validation'] == [f'{i:02d}.png' for i in range(24, 30)]
    for split in names:
        assert sorted(os.listdir(osp.join(out, 'images', split))) == \
            names[split]
    for i, label in expected.items():
        split = 'training' if i < 24 else 'validation'
        written = cv2.imread(
            osp.join(out, 'annotations', split, f'{i:02d}.png'),
            cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, label)
        with open(osp.join(src, 'images', f'{i}.png'), 'rb') as a, open(
                osp.join(out, 'images', split, f'{i:02d}.png'), 'rb') as b:
            assert a.read() == b.read()

    train = summary.splits['training']
    assert (train.sources, train.samples) == (24, 24)
    assert train.class_pixels.tolist() == np.bincount(
        np.concatenate([expected[i].ravel() for i in range(24)])).tolist()
    assert summary.splits['validation'].samples == 6
    assert '(thresholded at 128): 4 pixels' in summary.format()


def test_conversion_is_deterministic(isbi_source, isbi_converted, tmp_path):
    convert_isbi_membrane(isbi_source[0], str(tmp_path))
    assert _digest(str(tmp_path)) == _digest(isbi_converted[0])


def test_bad_sources_are_named(tmp_path):
    src = tmp_path / 'src'
    write_isbi_source(str(src), size=(8, 8))
    os.remove(src / 'labels' / '27.png')
    with pytest.raises(FileNotFoundError, match='labels/27.png'):
        convert_isbi_membrane(str(src), str(tmp_path / 'a'))
    assert not (tmp_path / 'a').exists()  # nothing written

    write_isbi_source(str(src), size=(8, 8), ids=[27])
    cv2.imwrite(str(src / 'labels' / '3.png'), np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r'3.png is 8x8 but its mask .* 9x8'):
        convert_isbi_membrane(str(src), str(tmp_path / 'b'))
    # the half-written layout is removed, not left to pass for a dataset
    assert not (tmp_path / 'b' / 'images').exists()
    assert not (tmp_path / 'b' / 'annotations').exists()

    write_isbi_source(str(src), size=(8, 8), ids=[3, 30])
    summary = convert_isbi_membrane(str(src), str(tmp_path / 'c'))
    assert 'not in the fixed split, not converted: 30.png' in \
        summary.format()


def test_command_line_tool(isbi_source, tmp_path):
    out = str(tmp_path / 'out')
    args = [
        'tools/dataset_converters/isbi_membrane.py', '--src', isbi_source[0],
        '--out', out
    ]
    proc = run_tool(args)
    assert 'training: 24 source images -> 24 samples' in proc.stdout
    assert 'validation: 6 source images -> 6 samples' in proc.stdout
    again = run_tool(args, check=False)
    assert again.returncode != 0 and '--overwrite' in again.stderr
    shutil.rmtree(osp.join(out, 'images', 'validation'))
    run_tool(args + ['--overwrite'])
    assert len(os.listdir(osp.join(out, 'images', 'validation'))) == 6
