"""The one place that knows where each image's content lies in a padded
batch: content grids from pixel sizes, scaled grids and masks."""
import pytest

from cait_mm.core import content_cells, content_mask, scale_cells


def test_content_cells_round_partial_patches_up():
    assert content_cells([(64, 80), (40, 57)], 16, (4, 5)) == [(4, 5),
                                                               (3, 4)]
    # nothing to say when no image is padded, or without sizes
    assert content_cells([(64, 80), (63, 65)], 16, (4, 5)) is None
    assert content_cells(None, 16, (4, 5)) is None
    with pytest.raises(ValueError,
                       match=r'exceed the input map \(4, 5\) of stride 16'):
        content_cells([(80, 80)], 16, (4, 5), what='input map')


def test_scaled_cells_and_masks():
    assert scale_cells([(3, 5), (4, 1)], 0.5) == [(2, 3), (2, 1)]
    assert scale_cells([(3, 5)], 4.0) == [(12, 20)]
    mask = content_mask([(1, 2), (2, 3)], (2, 3))
    assert mask.tolist() == [[[True, True, False], [False, False, False]],
                             [[True, True, True], [True, True, True]]]
