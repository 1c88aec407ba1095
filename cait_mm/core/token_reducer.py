"""The interface between a ViT and the methods that reduce its tokens."""
import inspect
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

    Args:
        num_layers (int): Number of blocks of the ViT it is built for; block
            indices are checked against it at build time.
    """

    def __init__(self, num_layers: int):
        super().__init__()
        self.num_layers = num_layers

    @property
    def blocks(self) -> Set[int]:
        """Indices of the blocks this reducer acts in."""
        raise NotImplementedError

    def config(self) -> Dict:
        """The keyword arguments that rebuild this reducer (without
        ``num_layers``), in plain Python types, for checkpoint metadata."""
        raise NotImplementedError

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
    """Class decorator: make ``cls`` buildable by name."""
    TOKEN_REDUCERS[cls.__name__] = cls
    return cls


def build_token_reducer(cfg: dict,
                        num_layers: int,
                        embed_dims: Optional[int] = None) -> TokenReducer:
    """Build ``cfg['type']`` (e.g. ``'ATME'``, ``'TPS'``) for a ViT of
    ``num_layers`` blocks; ``embed_dims`` reaches reducers that take it
    (e.g. TPS's learned scorer) unless the config sets it."""
    cfg = dict(cfg)
    name = cfg.pop('type')
    if name not in TOKEN_REDUCERS:
        raise ValueError(f'Unknown token reducer "{name}"; known: '
                         f'{sorted(TOKEN_REDUCERS)}')
    cls = TOKEN_REDUCERS[name]
    if embed_dims is not None and \
            'embed_dims' in inspect.signature(cls).parameters:
        cfg.setdefault('embed_dims', embed_dims)
    return cls(num_layers=num_layers, **cfg)
