"""CompressionSpec: one object for architecture, widths and token reducer,
built from a config, checked against a compressed checkpoint's, and
serialised for its metadata."""
import pytest

from cait_mm.core import CompressionSpec
from cait_mm.core.spec import ARCHS, parse_widths

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.)
ATME = dict(type='ATME', schedule=[[1, 'h', 0.5]], granularity='token')


def _saved(**kwargs):
    settings = dict(arch=TINY, channel_widths=dict(qk=0.5, mlp=0.25),
                    token_reducer=ATME)
    settings.update(kwargs)
    return CompressionSpec(source='compressed checkpoint "x.pth"',
                           **settings)


def test_defaults_are_a_dense_deit_s():
    spec = CompressionSpec.from_config()
    assert spec.arch == ARCHS['deit-s']
    assert spec.channel_widths == tuple(
        dict(qk_dim=64, v_dim=64, mlp_hidden=1536) for _ in range(12))
    assert spec.token_reducer is None and not spec.channel_pruned
    assert (spec.patch_size, spec.qkv_bias, spec.with_cls_token) == (16, True,
                                                                     True)
    assert spec.build_token_reducer() is None


def test_a_saved_spec_decides_what_the_config_leaves_unset():
    saved = _saved()
    assert CompressionSpec.from_config(saved=saved) == saved
    # repeating the file's settings is fine; a reducer in the config wins
    spec = CompressionSpec.from_config(
        arch=dict(TINY), patch_size=16, qkv_bias=True,
        channel_widths=list(saved.channel_widths),
        token_reducer=dict(type='TPS', blocks=(2, )), saved=saved)
    assert spec.arch == TINY and spec.channel_widths == saved.channel_widths
    assert spec.token_reducer == dict(type='TPS', blocks=(2, ))
    assert spec.channel_pruned


def test_conflicts_with_the_saved_spec_are_named_exactly():
    saved = _saved()
    with pytest.raises(ValueError) as error:
        CompressionSpec.from_config(arch='deit-t', with_cls_token=False,
                                    patch_size=16, saved=saved)
    message = str(error.value)
    assert message.startswith('compressed checkpoint "x.pth" does not fit')
    assert 'arch: config' in message
    assert 'with_cls_token: config False, checkpoint True' in message
    assert 'patch_size' not in message and 'channel_widths' not in message
    # widths given as ratios are compared as the widths they make
    with pytest.raises(ValueError, match='channel_widths: config'):
        CompressionSpec.from_config(channel_widths=dict(qk=0.25), saved=saved)
    assert CompressionSpec.from_config(
        channel_widths=dict(qk=0.5, mlp=0.25), saved=saved) == saved


def test_round_trip_through_metadata():
    saved = _saved()
    data = saved.to_dict()
    assert data['channel_widths'][0] == dict(qk_dim=8, v_dim=16,
                                             mlp_hidden=48)
    assert CompressionSpec.from_dict(data) == saved
    with pytest.raises(ValueError,
                       match=r"missing keys \['arch'\], unknown keys "
                       r"\['extra'\]"):
        CompressionSpec.from_dict(
            dict({k: v for k, v in data.items() if k != 'arch'}, extra=1),
            'f.pth')


def test_the_metadata_leaves_out_how_a_machine_runs_the_reducer():
    """ATME's kernel (Triton on a GPU) is a runtime option: a checkpoint
    saved with it rebuilds with the reference merge anywhere."""
    reducer = dict(type='ATME', schedule='deit-s', kernel='triton')
    spec = CompressionSpec.from_config(token_reducer=reducer)
    assert spec.token_reducer == reducer  # the running model uses it
    data = spec.to_dict()
    assert data['token_reducer'] == dict(type='ATME', schedule='deit-s')
    assert CompressionSpec.from_dict(data).build_token_reducer().kernel == \
        'torch'


def test_bad_settings_fail_naming_them():
    with pytest.raises(ValueError, match='Unknown arch "deit-l"'):
        CompressionSpec.from_config(arch='deit-l')
    with pytest.raises(ValueError, match='exactly the keys'):
        CompressionSpec.from_config(arch=dict(embed_dims=32))
    with pytest.raises(ValueError, match='needs a type'):
        CompressionSpec.from_config(token_reducer=dict(schedule='deit-s'))
    with pytest.raises(ValueError, match='Unknown token reducer "DiffRate"'):
        CompressionSpec.from_config(token_reducer=dict(type='DiffRate'))
    with pytest.raises(ValueError, match='patch_size must be a positive'):
        CompressionSpec.from_config(patch_size=0)
    spec = CompressionSpec.from_config(
        arch=TINY, with_cls_token=False,
        token_reducer=dict(type='TPS', blocks=(1, 2), score='attn'))
    with pytest.raises(ValueError, match='needs with_cls_token=True'):
        spec.build_token_reducer()


def test_widths_from_ratios_and_lists():
    assert parse_widths(dict(qk=0.5, v=0.25, mlp=0.5), ARCHS['deit-s'])[0] \
        == dict(qk_dim=32, v_dim=48, mlp_hidden=768)
    with pytest.raises(ValueError, match='3 entries for 4 blocks'):
        parse_widths([{}] * 3, TINY)
    with pytest.raises(ValueError, match=r'channel_widths\[0\]'):
        parse_widths([dict(qk_dim=17, v_dim=8, mlp_hidden=8)] * 4, TINY)
