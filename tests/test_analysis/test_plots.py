"""The accuracy-against-speed scatter: a complete image file, written
atomically, in the format its suffix names."""
import pytest

from cait_mm.analysis.plots import accuracy_speed_plot

POINTS = [('dense', 1.0, 55.6, 0.3), ('ATME', 1.4, 55.1, None)]


@pytest.mark.parametrize('suffix, magic', [('png', b'\x89PNG\r\n\x1a\n'),
                                           ('pdf', b'%PDF')])
def test_the_plot_is_a_file_of_its_suffix(tmp_path, suffix, magic):
    path = tmp_path / f'results.{suffix}'
    accuracy_speed_plot(POINTS, 'images/s', 'mIoU', 'title', str(path))
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_plot_leaves_the_previous_file(tmp_path):
    path = tmp_path / 'results.nope'
    path.write_bytes(b'previous')
    with pytest.raises(ValueError):  # matplotlib knows no such format
        accuracy_speed_plot(POINTS, 'x', 'y', 't', str(path))
    assert path.read_bytes() == b'previous'
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
