"""experiments/offline_bundle.py: what a machine with torch but no network
lacks is the closure of the product's requirements less what it has; the
bundle's mmcv loads its ops by name and fails only when one is called;
a bundle for another Python is refused before pip runs."""
import importlib.metadata
import json
import os.path as osp
import types

import pytest

from experiments import offline_bundle as ob
from ..conftest import REPO


def _dists(table):
    def dist(name):
        if name not in table:
            raise importlib.metadata.PackageNotFoundError(name)
        return table[name]
    return dist


DISTS = {
    'app': ('1.0', ['lib-a>=1', 'lib-b; python_version < "3.12"',
                    'opencv-python', 'extra-only; extra == "test"',
                    'torch']),
    'lib-a': ('2.0', ['lib-c', 'app']),  # a cycle back to the root
    'lib-b': ('0.1', []),
    'lib-c': ('3.1', ['numpy']),
    'opencv-python': ('4.0', ['numpy']),
}


def test_closure_follows_markers_not_extras_and_stops_at_the_target():
    have = {'torch', 'numpy'}
    assert ob.closure(['app'], have, '3.12', _dists(DISTS)) == {
        'app': '1.0', 'lib-a': '2.0', 'lib-c': '3.1',
        'opencv-python': '4.0'}
    assert 'lib-b' in ob.closure(['app'], have, '3.11', _dists(DISTS))
    # the target's headless OpenCV provides the same cv2
    assert 'opencv-python' not in ob.closure(
        ['app'], have | {'opencv-python-headless'}, '3.12', _dists(DISTS))
    assert ob.closure(['App'], have | {'app'}, '3.12', _dists(DISTS)) == {}


def test_closure_names_what_is_missing_here():
    with pytest.raises(SystemExit, match='lib-x is needed but not installed'):
        ob.closure(['lib-x'], set(), '3.12', _dists(DISTS))


def test_the_lists_it_reads(tmp_path):
    listed = tmp_path / 'have.txt'
    listed.write_text('# comment\nPackage    Version\n---------- -------\n'
                      'Torch==2.11.0\nopencv_python_headless 4.12\n'
                      'typing-extensions  # trailing\n\n')
    assert ob.read_names(str(listed)) == {
        'torch', 'opencv-python-headless', 'typing-extensions'}
    device = ob.read_names(ob.DEVICE_PACKAGES)
    assert {'torch', 'torchvision', 'numpy', 'timm'} <= device
    assert not device & {'mmcv', 'mmengine', 'mmsegmentation', 'mmdet'}
    roots = ob.requirement_names(osp.join(REPO, 'requirements.txt'))
    assert {'mmsegmentation', 'mmdet', 'mmpretrain', 'timm'} <= set(roots)


def test_the_bundles_mmcv_ops_load_by_name_and_fail_when_called():
    ext = types.ModuleType('mmcv._ext')
    exec(ob.MMCV_EXT, ext.__dict__)
    assert hasattr(ext, 'nms') and hasattr(ext, 'roi_align_forward')
    with pytest.raises(RuntimeError, match="'nms' is not in this bundle"):
        ext.nms(None, None)
    assert not hasattr(ext, '__path__')  # not taken for a package


def test_a_bundle_for_another_python_is_refused(tmp_path):
    (tmp_path / 'bundle.json').write_text(json.dumps(
        dict(python_version='2.7', have='x', wheels={'a': 'a.whl'})))
    with pytest.raises(SystemExit, match='wheels for Python 2.7'):
        ob.install(str(tmp_path), str(tmp_path / 'site'))
    assert not (tmp_path / 'site').exists()


def test_platform_tags_name_every_glibc():
    tags = ob.platforms(31)
    assert tags[0] == 'manylinux_2_31_x86_64'
    assert 'manylinux_2_17_x86_64' in tags and 'manylinux1_x86_64' in tags
    assert 'manylinux_2_16_x86_64' not in tags
