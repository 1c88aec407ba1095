"""TPS: joint token pruning and squeezing (Wei et al., CVPR 2023).

At a few blocks the patch tokens are split into a *kept* set (the highest
scores) and a *pruned* set. Instead of being dropped, every pruned token is
squeezed into its most similar kept token (its *host*), so the information it
carries survives in fewer tokens. The source map of :class:`TokenState` is
updated so that every original patch points at the token that now holds it,
which is what restores the full grid for dense prediction.
"""
import math
import warnings
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from torch import Tensor, nn

from .batch_rows import flat_index, prefix_rows, row_start, shape_cached
from .token_reducer import (TokenReducer, class_attention,
                            register_token_reducer)
from .token_state import TokenState
from .vit_layers import AttentionInfo

# Float noise in a product of ratios (0.1 * 0.1 * 100 = 1.0000000000000002 or
# 0.7 ** 3 * 1000 = 342.99999999999994) must not move a count across an
# integer.
_COUNT_EPS = 1e-6


def squeeze_tokens(x: Tensor,
                   keep_index: Tensor,
                   prune_index: Tensor,
                   keep_weight: Optional[Tensor] = None,
                   prune_weight: Optional[Tensor] = None,
                   num_prefix: int = 0) -> Tuple[Tensor, Tensor]:
    """Squeeze pruned tokens into their most similar kept tokens.

    Each pruned token ``i`` finds the kept token ``j`` (its host) with the
    largest cosine similarity ``s_ij`` of L2-normalised features. Matching is
    one-way: pruned tokens only look at kept tokens, so kept tokens are never
    matched among themselves. Host ``j`` absorbs its matched set ``P_j``::

        x_j <- (e * x_j + sum_{i in P_j} exp(s_ij) x_i)
               / (e + sum_{i in P_j} exp(s_ij))

    (``e = exp(s_jj)``: the host's similarity to itself is 1.)

    Args:
        x (Tensor): Tokens ``(B, P + N, C)``, ``P = num_prefix`` prefix
            tokens first.
        keep_index (Tensor): ``(B, K)`` long, the kept patch tokens (``0``
            is the first token after the prefix).
        prune_index (Tensor): ``(B, N - K)`` long, the pruned ones.
        keep_weight (Tensor, optional): ``(B, K)``, multiplies each host's
            result; ``prune_weight (B, N - K)`` multiplies each pruned token's
            ``exp(s_ij)``. Both are 1 in value; they carry the
            straight-through gradients of learned scores.
        num_prefix (int): ``P``; the prefix tokens are passed through.

    Returns:
        tuple: ``(B, P + K, C)``, the prefix then the squeezed kept tokens,
        and ``host (B, N - K)`` long, the position in the kept set that
        absorbed each pruned token.
    """
    B, T, C = x.shape
    K = keep_index.shape[1]
    P = num_prefix
    rows = keep_index + row_start(B, T, P, x.device)
    if P:
        rows = torch.cat([prefix_rows(B, T, P, x.device), rows], 1)
    # one selection builds the output (prefix included); merged in place
    flat = x.reshape(B * T, C)
    out = flat.index_select(0, rows.view(-1)).view(B, P + K, C)
    pruned = flat.index_select(0, flat_index(prune_index, T, P)).view(
        B, -1, C)
    kept = out[:, P:]
    # backward needs the kept tokens as they were before the merge below
    before = kept.clone() if torch.is_grad_enabled() and x.requires_grad \
        else kept
    sim = torch.bmm(_normalize(pruned), _normalize(before).transpose(1, 2))
    best, host = sim.max(dim=-1)
    weight = (best - 1).exp()
    if prune_weight is not None:
        weight = weight * prune_weight
    if weight.dtype != x.dtype:
        weight = weight.to(x.dtype)
    den = weight.new_ones(B, K).scatter_add_(1, host, weight)
    # x_j + sum_i w_i (x_i - x_j) / den_j, added in place: a host that
    # absorbs only copies of itself stays bit-identical
    host_rows = flat_index(host, P + K, P)
    flat_out = out.view(B * (P + K), C)
    delta = (pruned.view(-1, C) - flat_out.index_select(0, host_rows)) * (
        weight / den.gather(1, host)).view(-1, 1)
    flat_out.index_add_(0, host_rows, delta)
    if keep_weight is not None:  # training: out of place, for autograd
        out = torch.cat(
            [out[:, :P], kept * keep_weight[..., None].to(out.dtype)], 1)
    return out, host


def _normalize(x: Tensor) -> Tensor:
    """``x / ||x||`` along the last axis (``F.normalize``'s eps, one op
    fewer)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class KeepScorePredictor(nn.Module):
    """Learned keep score of each patch token (DynamicViT's predictor).

    A per-token feature is joined with the image's mean feature (so the
    score is relative to the rest of the image), then an MLP gives one keep
    logit per token. This is DynamicViT's two-way keep/drop log-softmax
    written as the single logit ``log p_keep - log p_drop``.

    Args:
        embed_dims (int): Token width ``C``.
        hidden (int): Hidden width (even: half local, half global).
    """

    def __init__(self, embed_dims: int, hidden: int):
        super().__init__()
        self.in_proj = nn.Sequential(
            nn.LayerNorm(embed_dims), nn.Linear(embed_dims, hidden),
            nn.GELU())
        self.out_proj = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.GELU(),
            nn.Linear(hidden // 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(B, N, C)`` -> keep logits ``(B, N)``."""
        feat = self.in_proj(x)
        local, glob = feat.chunk(2, dim=-1)
        glob = glob.mean(dim=1, keepdim=True).expand_as(glob)
        return self.out_proj(torch.cat([local, glob], dim=-1)).squeeze(-1)


@register_token_reducer
class TPS(TokenReducer):
    """Token pruning and squeezing at chosen blocks.

    At block ``blocks[s]`` the patch tokens are cut to
    ``floor(N0 * keep_ratio[0] * ... * keep_ratio[s])`` (at least 1), where
    ``N0 = H0 * W0`` is the initial patch count (the ratios compound:
    ``0.7`` gives 0.7, 0.49, 0.343 of ``N0``; 196 patches -> 137, 96, 67,
    the counts of the official TPS/DynamicViT code). A small tolerance keeps
    float noise in the product from changing a count. If the tokens are
    already fewer (another reducer acted before), all are kept.

    Kept tokens stay in their previous order; the prefix (class) token is
    never touched. After TPS the tokens no longer form a grid
    (``state.shape = None``); ``state.source`` maps every original patch to
    the token that holds it, so ``state.to_map`` restores ``(B, C, H0, W0)``.

    Args:
        num_layers (int): Number of blocks of the ViT.
        blocks (Sequence[int]): Strictly increasing 0-based block indices.
            Default ``(3, 6, 9)``: after the attention of the 4th, 7th and 10th
            of 12 blocks, as EViT and TPS.
        keep_ratio (float | Sequence[float]): Per-stage keep ratio in
            ``(0, 1]``, relative to the tokens entering that stage; one float
            is used at every stage.
        score (str): ``'attn'``: training-free class-token attention averaged
            over heads (EViT; eTPS in the paper), needs a class token.
            ``'learned'``: a :class:`KeepScorePredictor` per stage (dTPS).
        embed_dims (int, optional): Token width; required by ``'learned'``.
        predictor_hidden (int, optional): Predictor hidden width, even.
            Defaults to ``embed_dims`` (DynamicViT's size).
        tau (float): Temperature of the Gumbel-softmax (binary concrete)
            relaxation used by ``'learned'`` in training.
        ratio_loss_weight (float): Weight of the keep-ratio loss of
            ``'learned'`` (DynamicViT's 2.0).
        prop_attn (bool): Track token sizes (patches per token) so the
            backbone adds ``log(size)`` to attention logits. The paper does
            not, hence ``False``: sizes then stay ``None`` unless an earlier
            reducer already tracks them, in which case they are kept right.
    """
    SCORES = ('attn', 'learned')
    flops_knobs = dict(keep_ratio=('float', 0., 1.))

    def __init__(self,
                 num_layers: int,
                 blocks: Sequence[int] = (3, 6, 9),
                 keep_ratio: Union[float, Sequence[float]] = 0.7,
                 score: str = 'attn',
                 embed_dims: Optional[int] = None,
                 predictor_hidden: Optional[int] = None,
                 tau: float = 1.0,
                 ratio_loss_weight: float = 2.0,
                 prop_attn: bool = False):
        super().__init__(num_layers, embed_dims)
        self.stage_blocks = self._check_blocks(blocks, num_layers)
        self.keep_ratios = self._check_ratios(keep_ratio, self.stage_blocks)
        cumulative, product = [], 1.0
        for ratio in self.keep_ratios:
            product *= ratio
            cumulative.append(product)
        #: Fraction of the initial patch count kept after each stage.
        self.cumulative_ratios = tuple(cumulative)
        if score not in self.SCORES:
            raise ValueError(f'TPS: unknown score "{score}"; valid scores: '
                             f'{list(self.SCORES)}')
        self.score = score
        if not tau > 0:
            raise ValueError(f'TPS: tau must be > 0, got {tau}')
        if not ratio_loss_weight >= 0:
            raise ValueError('TPS: ratio_loss_weight must be >= 0, got '
                             f'{ratio_loss_weight}')
        self.tau = float(tau)
        self.ratio_loss_weight = float(ratio_loss_weight)
        self.prop_attn = prop_attn
        self._ratio_losses: Dict[int, Tensor] = {}
        # a training forward's ratio loss that no model has taken yet
        self._loss_untaken = False
        self.predictors = None
        if score == 'learned':
            if embed_dims is None:
                raise ValueError("TPS: score='learned' needs embed_dims (the "
                                 'token width) to build its predictors')
            hidden = predictor_hidden or embed_dims
            if hidden < 2 or hidden % 2:
                raise ValueError('TPS: predictor_hidden must be an even '
                                 f'number >= 2, got {hidden}')
            self.predictors = nn.ModuleDict({
                str(b): KeepScorePredictor(embed_dims, hidden)
                for b in self.stage_blocks
            })

    # ------------------------------------------------------------ building
    @staticmethod
    def _check_blocks(blocks, num_layers: int) -> Tuple[int, ...]:
        blocks = tuple(blocks)
        if not blocks:
            raise ValueError('TPS: blocks is empty')
        for i, b in enumerate(blocks):
            if isinstance(b, bool) or not isinstance(b, int):
                raise TypeError(f'TPS: blocks[{i}]={b!r} is not an int')
            if not 0 <= b < num_layers:
                raise ValueError(f'TPS: blocks[{i}]={b} is out of range for '
                                 f'{num_layers} blocks (0..{num_layers - 1})')
        for i in range(1, len(blocks)):
            if blocks[i] in blocks[:i]:
                raise ValueError(f'TPS: blocks[{i}]={blocks[i]} is a '
                                 f'duplicate in {list(blocks)}')
            if blocks[i] < blocks[i - 1]:
                raise ValueError(f'TPS: blocks must be increasing (the keep '
                                 f'ratios follow their order), got '
                                 f'{list(blocks)}')
        return blocks

    @staticmethod
    def _check_ratios(keep_ratio, blocks) -> Tuple[float, ...]:
        if isinstance(keep_ratio, (int, float)) and \
                not isinstance(keep_ratio, bool):
            ratios = (float(keep_ratio), ) * len(blocks)
            names = ['keep_ratio'] * len(blocks)
        elif isinstance(keep_ratio, (list, tuple)):
            ratios = tuple(keep_ratio)
            if len(ratios) != len(blocks):
                raise ValueError(f'TPS: keep_ratio has {len(ratios)} entries '
                                 f'but blocks has {len(blocks)} '
                                 f'({list(blocks)})')
            names = [f'keep_ratio[{i}]' for i in range(len(ratios))]
        else:
            raise ValueError(f'TPS: keep_ratio={keep_ratio!r} must be a '
                             'number in (0, 1] or a list of them')
        for name, ratio, b in zip(names, ratios, blocks):
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
                    or not 0 < ratio <= 1:
                where = '' if name == 'keep_ratio' else f' (block {b})'
                raise ValueError(f'TPS: {name}={ratio!r}{where} is outside '
                                 '(0, 1]')
        return tuple(float(r) for r in ratios)

    @property
    def blocks(self) -> Set[int]:
        return set(self.stage_blocks)

    def settings(self) -> Dict:
        hidden = None
        if self.predictors is not None:
            first = next(iter(self.predictors.values()))
            hidden = first.in_proj[1].out_features
        return dict(
            blocks=list(self.stage_blocks),
            keep_ratio=list(self.keep_ratios),
            score=self.score,
            predictor_hidden=hidden,
            tau=self.tau,
            ratio_loss_weight=self.ratio_loss_weight,
            prop_attn=self.prop_attn)

    @property
    def needs_class_token(self) -> bool:
        """``score='attn'`` ranks tokens by the class token's attention."""
        return self.score == 'attn'

    def token_counts(self, grid: Tuple[int, int]) -> List[int]:
        n0 = grid[0] * grid[1]
        kept = dict(zip(self.stage_blocks, self.num_kept(n0)))
        n, counts = n0, []
        for block in range(self.num_layers):
            n = min(n, kept.get(block, n))
            counts.append(n)
        return counts

    def num_kept(self, num_patches: int) -> List[int]:
        """Patch tokens left after each stage for ``num_patches`` initial
        ones, e.g. ``[137, 96, 67]`` for 196 at ratio 0.7."""
        return [
            max(1, math.floor(num_patches * r + _COUNT_EPS))
            for r in self.cumulative_ratios
        ]

    # -------------------------------------------------------------- losses
    def losses(self) -> Dict[str, Tensor]:
        """The keep-ratio loss of the last forward, for a classifier to add
        to its losses: ``{'loss_tps_ratio': ...}`` with ``score='learned'``
        (after a forward), ``{}`` otherwise.

        Per stage ``s`` the predictor's mean keep probability
        ``sigmoid(logit)`` over an image's tokens is pulled to the fraction
        the stage keeps, ``(mean_i p_i - K_s / N_s) ** 2``, averaged over the
        batch, summed over stages and times ``ratio_loss_weight``. The number
        kept is fixed by top-k, so this loss calibrates the probabilities
        whose straight-through gradients train the predictor.
        """
        self._loss_untaken = False
        if not self._ratio_losses:
            return {}
        total = sum(self._ratio_losses.values())
        return dict(loss_tps_ratio=self.ratio_loss_weight * total)

    # ------------------------------------------------------------- forward
    def forward(self, block_index: int, x: Tensor, attn: AttentionInfo,
                state: TokenState,
                num_prefix: int) -> Tuple[Tensor, TokenState]:
        """Prune and squeeze the patch tokens of block ``block_index``.

        Args:
            block_index (int): One of :attr:`blocks`.
            x (Tensor): Tokens ``(B, P + N, C)``, prefix tokens first.
            attn (AttentionInfo): This block's ``q, k (B, h, P + N, d)``
                and scale (used by ``score='attn'``).
            state (TokenState): State of the ``N`` patch tokens.
            num_prefix (int): ``P``.

        Returns:
            tuple: tokens ``(B, P + K, C)`` and the new state (no grid;
            ``source`` updated; sizes updated when tracked).
        """
        if block_index not in self.blocks:
            raise ValueError(f'TPS acts in blocks {list(self.stage_blocks)},'
                             f' not in block {block_index}')
        if state.valid_shape is not None:
            raise NotImplementedError(
                'TPS does not support padded batches (state.valid_shape is '
                'set): its token counts are per batch, not per image. Feed '
                'images of one size, or use ATME for padded detection inputs')
        stage = self.stage_blocks.index(block_index)
        if stage == 0:
            if self.training and self._loss_untaken:
                warnings.warn(
                    "TPS (score='learned'): the keep-ratio loss of the last "
                    'training forward was not added to the losses; use a '
                    'model that adds it (cait_mm.TokenReducerEncoderDecoder, '
                    'cait_mm.PadAwareMaskRCNN, cait_mm.DistillImageClassifier)'
                    ' or call token_reducer.losses() in yours')
            self._ratio_losses = {}
        P = num_prefix
        N = x.shape[1] - P
        H0, W0 = state.grid_size
        if state.source is None and N != H0 * W0:
            raise ValueError(f'TPS: {N} patch tokens but the state has an '
                             f'identity source map over {H0}x{W0} patches')
        num_keep = min(self.num_kept(H0 * W0)[stage], N)

        learned = self.score == 'learned'
        train_learned = learned and self.training
        if num_keep == N and not train_learned:
            return x, state
        if learned:
            logits = self.predictors[str(block_index)](x[:, P:]).float()
            rank = logits
            if self.training:
                u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
                # logistic noise = difference of two Gumbels: the two-way
                # keep/drop Gumbel-softmax becomes sigmoid((logit + noise)/tau)
                rank = logits + u.log() - (-u).log1p()
            if self.training:
                self._loss_untaken = True
            self._ratio_losses[block_index] = (
                (logits.sigmoid().mean(dim=1) - num_keep / N)**2).mean()
        else:
            if P < 1:
                raise ValueError("TPS: score='attn' ranks tokens by the class "
                                 "token's attention, but the ViT has no "
                                 "prefix token; use score='learned'")
            rank = class_attention(attn, state, P)

        # stable: equal scores break by position, the same in any batch
        order = rank.argsort(dim=1, descending=True, stable=True)
        keep_index = order[:, :num_keep].sort(dim=1).values
        prune_index = order[:, num_keep:]
        keep_weight = prune_weight = None
        if train_learned:
            soft = (rank / self.tau).sigmoid()
            hard = torch.zeros_like(soft).scatter_(1, keep_index, 1.)
            # straight-through: 1 for kept, 0 for pruned in value, the
            # Gumbel-softmax's gradient in the backward pass
            mask = hard + soft - soft.detach()
            keep_weight = mask.gather(1, keep_index)
            prune_weight = 1 - mask.gather(1, prune_index)
        x, host = squeeze_tokens(x, keep_index, prune_index, keep_weight,
                                 prune_weight, P)
        return x, self._update_state(state, keep_index, prune_index, host, N)

    def _update_state(self, state: TokenState, keep_index: Tensor,
                      prune_index: Tensor, host: Tensor,
                      num_tokens: int) -> TokenState:
        """Compose the source map with this stage's old -> new token map
        and move the pruned tokens' sizes to their hosts."""
        B, K = keep_index.shape
        device = keep_index.device
        new_of_old = keep_index.new_empty(B, num_tokens)
        new_of_old.scatter_(1, keep_index, shape_cached(
            ('positions', B, K, device),
            lambda: torch.arange(K, device=device).expand(B, K)))
        new_of_old.scatter_(1, prune_index, host)
        source = new_of_old if state.source is None else \
            new_of_old.gather(1, state.source)
        size = state.size
        if size is None and self.prop_attn:
            size = keep_index.new_ones(B, num_tokens, dtype=torch.float32)
        if size is not None:
            size = size.gather(1, keep_index).scatter_add(
                1, host, size.gather(1, prune_index))
        return replace(state, shape=None, size=size, source=source)
