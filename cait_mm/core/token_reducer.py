"""The token-reducer slot: the interface between a ViT and the methods that
reduce its tokens, and the registry that builds them by name.

A ViT holds at most one reducer, built from a config such as
``dict(type='ATME', schedule='deit-s')`` or ``dict(type='TPS',
keep_ratio=0.7)``. It asks every reducer the same questions (where it acts,
whether it needs the class token, what losses it adds, how to rebuild it)
and never looks at its class, so a new reducer is one registered class.
"""
import math
from dataclasses import dataclass
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Set,
                    Tuple, Type)

import torch
from torch import Tensor, nn

from .flops_budget import block_flops_fraction
from .token_state import TokenState
from .vit_layers import AttentionInfo


class TokenReducer(nn.Module):
    """Base class of token reducers (ATME merging, TPS pruning/squeezing).

    A reducer acts in some blocks, between the attention half and the MLP
    half, where that block's queries and keys are at hand. It returns fewer
    tokens and the :class:`TokenState` updated to match (sizes for
    proportional attention, the source map for restoration). Restoring tokens
    to the full grid is the state's job, common to every reducer.

    Subclasses are registered with :func:`register_token_reducer` and built
    with :func:`build_token_reducer`, which passes the ViT's ``num_layers``
    and ``embed_dims``.

    Args:
        num_layers (int): Number of blocks of the ViT it is built for; block
            indices are checked against it at build time.
        embed_dims (int, optional): Token width of the ViT, for reducers
            with weights of their own (e.g. TPS's learned scorer).
    """
    #: The name the reducer is registered under (its config's ``type``).
    type_name: str = ''
    #: The settings :meth:`for_flops` can tune to meet a FLOPs target
    #: (the first by default): ``name: (kind, low, high)``, ``kind``
    #: ``'int'`` (``high=None``: up to the patch count) or ``'float'``;
    #: empty where a reducer overrides :meth:`for_flops`.
    flops_knobs: Dict[str, Tuple[str, float, Optional[float]]] = {}
    #: Constructor options that choose how this machine runs the reducer,
    #: not what it computes (ATME's ``kernel``): a model's saved spec
    #: leaves them out, so a checkpoint runs anywhere.
    runtime_options: Tuple[str, ...] = ()
    #: Whether it runs on padded batches (``TokenState.valid_shape``: each
    #: image merges or prunes as it would alone), as mmdet's detectors feed
    #: them; the others refuse such a batch.
    supports_padding: bool = False

    def __init__(self, num_layers: int, embed_dims: Optional[int] = None):
        super().__init__()
        self.num_layers = num_layers
        self.embed_dims = embed_dims

    @property
    def blocks(self) -> Set[int]:
        """Indices of the blocks this reducer acts in."""
        raise NotImplementedError

    @property
    def needs_class_token(self) -> bool:
        """Whether it reads the class token (e.g. to score tokens by the
        class token's attention); a ViT without one refuses it."""
        return False

    def losses(self) -> Dict[str, Tensor]:
        """Losses of the last training forward that the task model adds to
        its own (e.g. TPS's keep-ratio loss); none by default."""
        return {}

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        """Patch tokens after each of the ``num_layers`` blocks for an
        unpadded input of ``grid`` patches: known before running, for FLOPs
        budgets and equal-FLOPs comparisons."""
        raise NotImplementedError

    def flops_fraction(self, grid: Tuple[int, int],
                       mlp_ratio: float = 4.) -> float:
        """Block multiply-adds with this reducer over the dense ViT's
        (:func:`~cait_mm.core.flops_budget.block_flops_fraction`)."""
        return block_flops_fraction(
            self.token_counts(grid), grid, self.embed_dims, mlp_ratio)

    @classmethod
    def for_flops(cls, target: float, grid: Tuple[int, int],
                  num_layers: int, embed_dims: int, mlp_ratio: float = 4.,
                  knob: Optional[str] = None, **settings) -> Dict:
        """The config of this reducer, with ``settings`` fixed and ``knob``
        (one of :attr:`flops_knobs`, the first by default) chosen so that
        its block FLOPs are the closest to ``target`` (a fraction of the
        dense ViT's) on a ``grid`` input."""
        if not 0 < target < 1:
            raise ValueError(f'FLOPs target {target} must be in (0, 1)')
        if not cls.flops_knobs:
            raise NotImplementedError(f'{cls.__name__} has no FLOPs knob')
        name = knob or next(iter(cls.flops_knobs))
        if name not in cls.flops_knobs:
            raise ValueError(f'{cls.__name__} tunes {sorted(cls.flops_knobs)}'
                             f' for FLOPs, not {name!r}')
        kind, low, high = cls.flops_knobs[name]

        def fraction(value) -> float:
            return cls(num_layers=num_layers, embed_dims=embed_dims,
                       **settings,
                       **{name: value}).flops_fraction(grid, mlp_ratio)

        if kind == 'int':
            values = range(int(low), int(high or grid[0] * grid[1]) + 1)
            best = min(values, key=lambda v: (abs(fraction(v) - target), v))
            return dict(type=cls.type_name, **settings, **{name: best})
        # FLOPs change with the knob in steps, one way: bisect to a step's
        # edge, then take the closer side
        low, high = low + 1e-6, high
        rising = fraction(high) > fraction(low)
        for _ in range(40):
            mid = (low + high) / 2
            if (fraction(mid) < target) == rising:
                low = mid
            else:
                high = mid
        best = min((low, high), key=lambda v: abs(fraction(v) - target))
        # a short number with the same token counts: ``high`` starts its
        # step and ``low`` ends its own, so round away from the edge
        step = math.ceil if best == high else math.floor
        rounded = [step(best * 10**d) / 10**d for d in range(2, 7)]
        best = next((v for v in rounded if cls.flops_knobs[name][1] < v <=
                     cls.flops_knobs[name][2] and fraction(v) ==
                     fraction(best)), best)
        return dict(type=cls.type_name, **settings, **{name: best})

    def settings(self) -> Dict:
        """The keyword arguments that rebuild this reducer (without
        ``num_layers`` and ``embed_dims``), in plain Python types."""
        raise NotImplementedError

    def config(self) -> Dict:
        """The config that rebuilds this reducer with
        :func:`build_token_reducer`: ``dict(type=..., **settings())``."""
        return dict(type=self.type_name, **self.settings())

    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """Reduce the tokens of block ``block_index``.

        Args:
            block_index (int): A block in :attr:`blocks`.
            x (Tensor): Tokens ``(B, P + N, C)``, the ``P = num_prefix``
                prefix tokens (class token) first; they are never reduced.
                A reducer may write into ``x`` (ATME writes each merged
                pair's mean over its even token): pass a tensor that is not
                needed afterwards.
            attn (AttentionInfo): The block's queries/keys over all
                ``P + N`` tokens.
            state (TokenState): State of the ``N`` patch tokens.
            num_prefix (int): ``P``.

        Returns:
            tuple: tokens ``(B, P + N', C)`` and the new state.
        """
        raise NotImplementedError


def steady_counts(num_tokens: int, num_layers: int, blocks: Set[int],
                  merges: Callable[[int], int]) -> List[int]:
    """Patch tokens after each of ``num_layers`` blocks when each block of
    ``blocks`` takes ``merges(n)`` of the ``n`` tokens entering it (ToMe,
    ATMEAdaptive's steady rate)."""
    n, counts = num_tokens, []
    for block in range(num_layers):
        if block in blocks:
            n -= merges(n)
        counts.append(n)
    return counts


def class_attention(attn: AttentionInfo, state: TokenState,
                    num_prefix: int) -> Tensor:
    """The class token's attention to each patch token, ``(B, N)``,
    averaged over heads, with the bias the block's attention used (EViT's
    score; TPS's training-free one). Computed in fp32, without gradient.

    Args:
        attn (AttentionInfo): The block's queries and keys over all
            ``P + N`` tokens, the class token first.
        state (TokenState): State of the ``N`` patch tokens.
        num_prefix (int): ``P >= 1``.
    """
    with torch.no_grad():
        q_cls, k = attn.q[:, :, :1], attn.k
        if k.dtype != torch.float32:
            q_cls, k = q_cls.float(), k.float()
        # a product and a sum: a matmul would first copy the strided q and k
        logits = (q_cls * k).sum(-1)  # (B, h, P + N)
        bias = state.attn_bias(num_prefix, attn.q.dtype)
        if bias is None:
            logits = logits * attn.scale
        else:
            bias = bias.view(bias.shape[0], 1, -1)
            if bias.dtype != logits.dtype:
                bias = bias.float()
            logits = torch.add(bias, logits, alpha=attn.scale)
        probs = logits.softmax(dim=-1).mean(dim=1)
    return probs[:, num_prefix:]


TOKEN_REDUCERS: Dict[str, Type[TokenReducer]] = {}


def register_token_reducer(cls: Type[TokenReducer]) -> Type[TokenReducer]:
    """Class decorator: make ``cls`` buildable as ``dict(type=cls.__name__,
    ...)``."""
    if not issubclass(cls, TokenReducer):
        raise TypeError(f'{cls.__name__} is not a TokenReducer')
    name = cls.__name__
    if name in TOKEN_REDUCERS and TOKEN_REDUCERS[name] is not cls:
        raise KeyError(f'A token reducer named "{name}" is already '
                       'registered')
    cls.type_name = name
    TOKEN_REDUCERS[name] = cls
    return cls


def build_token_reducer(cfg: Dict, num_layers: int,
                        embed_dims: Optional[int] = None) -> TokenReducer:
    """Build ``cfg['type']`` (e.g. ``'ATME'``, ``'TPS'``) for a ViT of
    ``num_layers`` blocks of width ``embed_dims``.

    Raises:
        ValueError: for a config without a known ``type``, or one that sets
            what the ViT decides (``num_layers``, ``embed_dims``).
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'A token reducer config is a dict with a type, '
                         f'e.g. dict(type=\'ATME\', schedule=\'deit-s\'); got '
                         f'{cfg!r}')
    cfg = dict(cfg)
    name = cfg.pop('type')
    if name not in TOKEN_REDUCERS:
        raise ValueError(f'Unknown token reducer "{name}"; known: '
                         f'{sorted(TOKEN_REDUCERS)}')
    fixed = sorted({'num_layers', 'embed_dims'} & set(cfg))
    if fixed:
        raise ValueError(f'token reducer {name}: {fixed} come from the ViT; '
                         'drop them from the config')
    return TOKEN_REDUCERS[name](
        num_layers=num_layers, embed_dims=embed_dims, **cfg)


def saved_config(cfg: Dict) -> Dict:
    """A reducer config without its type's :attr:`~TokenReducer.
    runtime_options`: what a checkpoint records."""
    cls = TOKEN_REDUCERS.get(cfg.get('type'))
    skip = cls.runtime_options if cls is not None else ()
    return {k: v for k, v in cfg.items() if k not in skip}


@dataclass(frozen=True)
class FlopsMatch:
    """One reducer set for a block-FLOPs target: its config (ready for
    ``model.backbone.token_reducer``), the block FLOPs it reaches (a
    fraction of the dense ViT's) and its patch tokens after each block."""
    kind: str
    config: Dict
    fraction: float
    token_counts: List[int]


def match_flops(target: float, grid: Tuple[int, int], arch: Mapping,
                reducers: Sequence[str],
                settings: Optional[Mapping[str, Dict]] = None
                ) -> List[FlopsMatch]:
    """Each of ``reducers`` set for ``target`` block FLOPs on a ``grid``
    input: the one place where equal-FLOPs rows are chosen (the
    ``match_flops`` and ``benchmark --flops-target`` tools call it).

    Args:
        target: Fraction of the dense ViT's block FLOPs, in (0, 1).
        grid: ``(H0, W0)`` patches.
        arch: ``num_layers``, ``embed_dims`` and ``mlp_ratio``.
        reducers: Registered reducer types, e.g. ``['ATME', 'ToMe']``.
        settings: Per reducer type, more arguments of its ``for_flops``
            (e.g. ``{'ATME': dict(max_points=2)}``).
    """
    matches = []
    for kind in reducers:
        if kind not in TOKEN_REDUCERS:
            raise ValueError(f'Unknown token reducer "{kind}"; known: '
                             f'{sorted(TOKEN_REDUCERS)}')
        cfg = TOKEN_REDUCERS[kind].for_flops(
            target, grid, arch['num_layers'], arch['embed_dims'],
            arch['mlp_ratio'], **(settings or {}).get(kind, {}))
        reducer = build_token_reducer(cfg, arch['num_layers'],
                                      arch['embed_dims'])
        matches.append(FlopsMatch(
            kind, cfg, reducer.flops_fraction(grid, arch['mlp_ratio']),
            reducer.token_counts(grid)))
    return matches
