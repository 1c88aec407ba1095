"""The token-reducer slot: the interface between a ViT and the methods that
reduce its tokens, and the registry that builds them by name.

A ViT holds at most one reducer, built from a config such as
``dict(type='ATME', schedule='deit-s')`` or ``dict(type='TPS',
keep_ratio=0.7)``. It asks every reducer the same questions (where it acts,
whether it needs the class token, what losses it adds, how to rebuild it)
and never looks at its class, so a new reducer is one registered class.
"""
from typing import Dict, Optional, Set, Tuple, Type

from torch import Tensor, nn

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
            attn (AttentionInfo): The block's queries/keys over all
                ``P + N`` tokens.
            state (TokenState): State of the ``N`` patch tokens.
            num_prefix (int): ``P``.

        Returns:
            tuple: tokens ``(B, P + N', C)`` and the new state.
        """
        raise NotImplementedError


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
