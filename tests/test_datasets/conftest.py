import pytest

from cait_mm.datasets.converters import (convert_dubai_aerial,
                                         convert_isbi_membrane)
from .fake_sources import write_dubai_source, write_isbi_source


@pytest.fixture(scope='session')
def isbi_source(tmp_path_factory):
    root = tmp_path_factory.mktemp('isbi_src')
    return str(root), write_isbi_source(str(root))


@pytest.fixture(scope='session')
def dubai_source(tmp_path_factory):
    root = tmp_path_factory.mktemp('dubai_src')
    return str(root), write_dubai_source(
        str(root), names=('image_part_001', 'image_part_002'))


@pytest.fixture(scope='session')
def isbi_converted(tmp_path_factory, isbi_source):
    out = str(tmp_path_factory.mktemp('isbi_out'))
    return out, convert_isbi_membrane(isbi_source[0], out)


@pytest.fixture(scope='session')
def dubai_converted(tmp_path_factory, dubai_source):
    out = str(tmp_path_factory.mktemp('dubai_out'))
    return out, convert_dubai_aerial(
        dubai_source[0], out, crop_size=32, stride=24)
