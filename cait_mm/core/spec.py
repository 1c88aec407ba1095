"""The compression spec: what a (compressed) plain ViT is made of.

One small object holds everything that decides a compressed ViT's layers
and token flow: the architecture, the per-block channel widths (smaller
after CDCP) and the token reducer (ATME, TPS, ...). It is built from a
config (:meth:`CompressionSpec.from_config`), written to and read from a
compressed checkpoint's metadata (:meth:`to_dict` / :meth:`from_dict`), and
checked here only: a config that asks for something a compressed checkpoint
does not hold fails with exactly the settings that conflict.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from .compactor import num_to_prune
from .token_reducer import (TOKEN_REDUCERS, TokenReducer, build_token_reducer,
                            saved_config)

ARCHS: Dict[str, Dict[str, Any]] = {
    'deit-t': dict(embed_dims=192, num_layers=12, num_heads=3, mlp_ratio=4.),
    'deit-s': dict(embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4.),
    'deit-b': dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.),
}
ARCH_KEYS = ('embed_dims', 'mlp_ratio', 'num_heads', 'num_layers')
WIDTH_KEYS = ('qk_dim', 'v_dim', 'mlp_hidden')
RATIO_KEYS = dict(qk='qk_dim', v='v_dim', mlp='mlp_hidden')
# What a config leaves unset (None) takes, when no checkpoint decides it.
DEFAULTS = dict(arch='deit-s', patch_size=16, qkv_bias=True,
                with_cls_token=True)
# The keys of a spec in checkpoint metadata (CompressionSpec.to_dict).
SPEC_KEYS = ('arch', 'patch_size', 'qkv_bias', 'with_cls_token',
             'channel_widths', 'token_reducer')


def parse_arch(arch: Union[str, Dict]) -> Dict[str, Any]:
    """``'deit-t'`` / ``'deit-s'`` / ``'deit-b'`` or a dict with exactly
    ``embed_dims``, ``num_layers``, ``num_heads``, ``mlp_ratio``."""
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ValueError(f'Unknown arch "{arch}"; valid archs: '
                             f'{sorted(ARCHS)}, or a dict with embed_dims, '
                             'num_layers, num_heads, mlp_ratio')
        arch = ARCHS[arch]
    if not isinstance(arch, dict) or set(arch) != set(ARCH_KEYS):
        raise ValueError(f'A custom arch must be a dict with exactly the keys '
                         f'{sorted(ARCH_KEYS)}, got {arch!r}')
    return {k: arch[k] for k in ARCH_KEYS}


def dense_widths(arch: Dict[str, Any]) -> Dict[str, int]:
    """The unpruned per-block widths of ``arch``."""
    head = arch['embed_dims'] // arch['num_heads']
    return dict(qk_dim=head, v_dim=head,
                mlp_hidden=int(arch['embed_dims'] * arch['mlp_ratio']))


def parse_widths(channel_widths: Union[None, Dict, Sequence[Dict]],
                 arch: Dict[str, Any]) -> Tuple[Dict[str, int], ...]:
    """Per-block ``dict(qk_dim=, v_dim=, mlp_hidden=)``.

    ``None`` gives the dense widths; a single ``dict(qk=, v=, mlp=)`` of
    pruning ratios prunes every block alike (rounded as ``CDCPHook``
    rounds); a list gives each block's widths.
    """
    dense = dense_widths(arch)
    num_layers = arch['num_layers']
    if channel_widths is None:
        return tuple(dict(dense) for _ in range(num_layers))
    if isinstance(channel_widths, dict):
        unknown = set(channel_widths) - set(RATIO_KEYS)
        if unknown:
            raise ValueError(f'channel_widths as ratios takes the keys '
                             f'{sorted(RATIO_KEYS)}, got '
                             f'{sorted(channel_widths)}')
        widths = dict(dense)
        for group, ratio in channel_widths.items():
            full = dense[RATIO_KEYS[group]]
            widths[RATIO_KEYS[group]] = full - num_to_prune(ratio, full,
                                                            group)
        return tuple(dict(widths) for _ in range(num_layers))
    if len(channel_widths) != num_layers:
        raise ValueError(f'channel_widths has {len(channel_widths)} entries '
                         f'for {num_layers} blocks')
    parsed = []
    for i, entry in enumerate(channel_widths):
        entry = dict(entry)
        if set(entry) != set(WIDTH_KEYS) or not all(
                isinstance(entry[k], int) and 0 < entry[k] <= dense[k]
                for k in WIDTH_KEYS):
            raise ValueError(
                f'channel_widths[{i}] = {entry}: needs the keys '
                f'{list(WIDTH_KEYS)} with positive ints no larger than the '
                f'unpruned {dense}')
        parsed.append({k: entry[k] for k in WIDTH_KEYS})
    return tuple(parsed)


@dataclass(frozen=True)
class CompressionSpec:
    """Architecture, channel widths and token reducer of a compressed ViT.

    Attributes:
        arch (dict): ``embed_dims``, ``num_layers``, ``num_heads``,
            ``mlp_ratio``.
        channel_widths (tuple[dict]): Per block, ``qk_dim`` and ``v_dim``
            (per head) and ``mlp_hidden``; the dense widths when unpruned.
        token_reducer (dict, optional): ``dict(type=..., **settings)``, as
            :func:`~cait_mm.core.token_reducer.build_token_reducer` takes.
        patch_size (int): Patch size.
        qkv_bias (bool): Bias in the ``qkv`` projections.
        with_cls_token (bool): A class token leads the sequence.
    """
    arch: Dict[str, Any]
    channel_widths: Tuple[Dict[str, int], ...]
    token_reducer: Optional[Dict] = None
    patch_size: int = 16
    qkv_bias: bool = True
    with_cls_token: bool = True
    #: Where the settings came from, for error messages.
    source: str = field(default='the config', compare=False)

    def __post_init__(self):
        arch = parse_arch(self.arch)
        object.__setattr__(self, 'arch', arch)
        object.__setattr__(self, 'channel_widths',
                           parse_widths(self.channel_widths, arch))
        if not isinstance(self.patch_size, int) or self.patch_size < 1:
            raise ValueError(f'patch_size must be a positive int, got '
                             f'{self.patch_size!r} ({self.source})')
        reducer = self.token_reducer
        where = f'{self.source}: ' if self.source != 'the config' else ''
        if reducer is not None and (not isinstance(reducer, dict)
                                    or 'type' not in reducer):
            raise ValueError(f"{where}token_reducer {reducer!r} needs a type, "
                             "e.g. dict(type='ATME', schedule='deit-s')")
        if reducer is not None and reducer['type'] not in TOKEN_REDUCERS:
            raise ValueError(f'{where}Unknown token reducer '
                             f'"{reducer["type"]}"; known: '
                             f'{sorted(TOKEN_REDUCERS)}')

    # ------------------------------------------------------------ building
    @classmethod
    def from_config(cls,
                    arch: Union[None, str, Dict] = None,
                    channel_widths: Union[None, Dict, Sequence] = None,
                    token_reducer: Optional[Dict] = None,
                    patch_size: Optional[int] = None,
                    qkv_bias: Optional[bool] = None,
                    with_cls_token: Optional[bool] = None,
                    saved: Optional['CompressionSpec'] = None
                    ) -> 'CompressionSpec':
        """The spec a config asks for; ``None`` means "not set".

        Without ``saved``, unset settings take their defaults (DeiT-S,
        16-pixel patches, qkv bias, a class token, dense widths, no token
        reducer). With ``saved`` (a compressed checkpoint's spec) the file
        decides them: settings the config repeats must agree with it, and a
        token reducer set in the config replaces the file's.

        Raises:
            ValueError: naming every setting that conflicts with ``saved``.
        """
        given = dict(arch=arch, patch_size=patch_size, qkv_bias=qkv_bias,
                     with_cls_token=with_cls_token)
        if saved is None:
            settings = {k: DEFAULTS[k] if v is None else v
                        for k, v in given.items()}
            return cls(channel_widths=channel_widths,
                       token_reducer=token_reducer, **settings)
        wanted = {k: v for k, v in given.items() if v is not None}
        if 'arch' in wanted:
            wanted['arch'] = parse_arch(wanted['arch'])
        if channel_widths is not None:
            wanted['channel_widths'] = parse_widths(
                channel_widths, wanted.get('arch', saved.arch))
        conflicts = [
            f'{name}: config {value!r}, checkpoint '
            f'{getattr(saved, name)!r}'
            for name, value in wanted.items() if value != getattr(saved, name)
        ]
        if conflicts:
            raise ValueError(
                f'{saved.source} does not fit this CAITViT config: ' +
                '; '.join(conflicts) + '. Drop these settings from the '
                'config (the checkpoint defines them) or use the matching '
                'checkpoint.')
        if token_reducer is not None:
            saved = replace(saved, token_reducer=token_reducer)
        return saved

    def build_token_reducer(self) -> Optional[TokenReducer]:
        """The token reducer module, or ``None``.

        Raises:
            ValueError: if the reducer needs a class token the ViT lacks.
        """
        if self.token_reducer is None:
            return None
        reducer = build_token_reducer(self.token_reducer,
                                      self.arch['num_layers'],
                                      self.arch['embed_dims'])
        if reducer.needs_class_token and not self.with_cls_token:
            raise ValueError(f'token_reducer {self.token_reducer} reads the '
                             "class token: it needs with_cls_token=True")
        return reducer

    @property
    def channel_pruned(self) -> bool:
        """Whether any block is narrower than the dense architecture."""
        dense = dense_widths(self.arch)
        return any(w != dense for w in self.channel_widths)

    # ------------------------------------------------------- serialising
    def to_dict(self) -> Dict[str, Any]:
        """The spec in plain Python types (for checkpoint metadata)."""
        return dict(
            arch=dict(self.arch),
            patch_size=self.patch_size,
            qkv_bias=self.qkv_bias,
            with_cls_token=self.with_cls_token,
            channel_widths=[dict(w) for w in self.channel_widths],
            token_reducer=None if self.token_reducer is None else
            saved_config(self.token_reducer))

    @classmethod
    def from_dict(cls, data: Dict[str, Any],
                  source: str = 'the checkpoint') -> 'CompressionSpec':
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: naming the missing or unknown keys.
        """
        keys = set(SPEC_KEYS)
        if not isinstance(data, dict) or set(data) != keys:
            have = set(data) if isinstance(data, dict) else set()
            raise ValueError(
                f'{source}: malformed compression spec; missing keys '
                f'{sorted(keys - have)}, unknown keys {sorted(have - keys)}')
        return cls(
            arch=data['arch'],
            channel_widths=data['channel_widths'],
            token_reducer=data['token_reducer'],
            patch_size=data['patch_size'],
            qkv_bias=data['qkv_bias'],
            with_cls_token=data['with_cls_token'],
            source=source)
