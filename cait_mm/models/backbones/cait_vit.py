"""CAITViT: a plain DeiT backbone for dense prediction, built to be
compressed (a token reducer, channel pruning)."""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from timm.layers import PatchEmbed
from torch import Tensor, nn

from cait_mm.core import (Block, CompressionSpec, TokenState, attention_dtype,
                          block_widths, channel_groups, compact_block,
                          content_cells, parse_channel_prune)
from cait_mm.core.vit_layers import dropout
from cait_mm.registry import MODELS
from .compressed_checkpoint import CompressedCheckpoint, load_vit_checkpoint
from .vit_checkpoint import resize_pos_embed


@MODELS.register_module()
class CAITViT(BaseModule):
    """DeiT-T/S/B backbone that returns mmseg-style feature maps.

    With no compression it is a plain DeiT (timm's weights and numerics) and
    returns what mmseg's ``VisionTransformer`` returns: a tuple with one
    ``(B, C, H/16, W/16)`` map per entry of ``out_indices``. What it is made
    of (architecture, channel widths, token reducer) is a
    :class:`~cait_mm.core.spec.CompressionSpec`, built from these arguments
    or read from a compressed checkpoint.

    Args:
        arch (str | dict, optional): ``'deit-t'``, ``'deit-s'``,
            ``'deit-b'``, or a dict with ``embed_dims``, ``num_layers``,
            ``num_heads``, ``mlp_ratio``. Default: the ``compressed`` file's,
            else ``'deit-s'``.
        img_size (int | tuple): Input size the position embeddings are stored
            for; other sizes are served by resampling them on the fly.
        patch_size (int, optional): Patch size (default 16, or the file's).
        in_channels (int): Image channels.
        out_indices (int | Sequence[int]): Blocks whose output is returned;
            negative values count from the end.
        qkv_bias (bool, optional): Bias in the ``qkv`` projections (default
            True, or the file's).
        drop_rate (float): Dropout after position embedding and projections.
        attn_drop_rate (float): Dropout on attention probabilities.
        drop_path_rate (float): Stochastic depth, linearly increasing.
        with_cls_token (bool, optional): Keep the class token in the sequence
            (default True, or the file's).
        output_cls_token (bool): Return ``(map, cls_token)`` per output
            instead of the map alone (needs the class token).
        out_type (str): ``'featmap'``: the restored maps (dense tasks);
            ``'cls_token'``: only the class token ``(B, C)`` per output, as
            mmpretrain's ViT returns for its classification heads (no map is
            restored; needs the class token).
        final_norm (bool): Apply the final LayerNorm to the last block's
            output (mmseg's default for DeiT UperNet is ``False``).
        pad_to_patch (bool): Pad the bottom/right of inputs whose size is not
            a multiple of ``patch_size`` (as mmseg's ViT does with
            ``padding='corner'``); when ``False`` such inputs raise.
        interpolate_mode (str): Mode for resampling position embeddings.
        attn_bias_mode (str): How the attention bias of a reduced (or
            padded) sequence enters attention: ``'mask'``, as SDPA's
            ``attn_mask``; ``'fold'``, folded into an extra head channel
            (:func:`~cait_mm.core.vit_layers.fold_bias`) so that
            FlashAttention, which takes no mask, still runs; ``'auto'``:
            fold on CUDA, mask elsewhere (CPU kernels take the mask at no
            cost). Equal up to float rounding.
        token_reducer (dict, optional): The token reducer, by the core's
            registry name: ``dict(type='ATME', schedule='deit-s')`` (token
            merging, :class:`cait_mm.core.atme.ATME`) or ``dict(type='TPS',
            blocks=(3, 6, 9), keep_ratio=0.7)`` (pruning and squeezing,
            :class:`cait_mm.core.tps.TPS`). Reduced tokens are restored to
            the full grid at every ``out_indices`` block. A reducer without
            weights also applies, training-free, to a dense checkpoint.
        channel_prune (dict, optional): CDCP channel pruning,
            ``dict(groups=('qk', 'v', 'mlp'))``: identity-initialised
            compactors in every block for those channel groups. The
            ``cait_mm.CDCPHook`` selects the channels to prune during
            training; in eval mode the selected channels are masked, and
            ``tools/deployment/export_compressed.py`` removes them.
        channel_widths (Sequence[dict] | dict, optional): Per block, the
            widths of a channel-pruned model, ``dict(qk_dim=, v_dim=,
            mlp_hidden=)``; usually read from ``compressed``. A single
            ``dict(qk=, v=, mlp=)`` of pruning ratios prunes every block
            alike, e.g. to time a pruned model before training one.
        compressed (str, optional): An exported compressed checkpoint
            (``tools/deployment/export_compressed.py``). Its spec decides the
            architecture and widths (settings given here must agree) and the
            token reducer (unless ``token_reducer`` is set here: the config
            wins); its weights are loaded by ``init_weights``.
        pretrained (str, optional): Shortcut for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg (dict | list, optional): MMEngine initialisation config.
            ``type='Pretrained'`` accepts official DeiT/timm files and
            OpenMMLab checkpoints (with ``prefix='backbone.'``).
    """
    num_prefix_tokens = 1  # rows of pos_embed before the patches
    OUT_TYPES = ('featmap', 'cls_token')
    ATTN_BIAS_MODES = ('auto', 'fold', 'mask')

    def __init__(self,
                 arch: Union[None, str, Dict] = None,
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: Optional[int] = None,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 qkv_bias: Optional[bool] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 with_cls_token: Optional[bool] = None,
                 output_cls_token: bool = False,
                 out_type: str = 'featmap',
                 final_norm: bool = False,
                 pad_to_patch: bool = True,
                 interpolate_mode: str = 'bicubic',
                 attn_bias_mode: str = 'auto',
                 token_reducer: Optional[Dict] = None,
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Union[None, Dict, Sequence[Dict]] = None,
                 compressed: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[Dict, list]] = None):
        if sum(x is not None
               for x in (pretrained, init_cfg, compressed)) > 1:
            raise ValueError('Set one of `compressed`, `pretrained` and '
                             '`init_cfg`, not several')
        file = None if compressed is None else \
            CompressedCheckpoint.read(compressed)
        spec = CompressionSpec.from_config(
            arch=arch, channel_widths=channel_widths,
            token_reducer=token_reducer,
            patch_size=patch_size, qkv_bias=qkv_bias,
            with_cls_token=with_cls_token,
            saved=None if file is None else file.meta.spec)
        if pretrained is not None:
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if file is not None:
            init_cfg = dict(type='Pretrained', checkpoint=compressed,
                            prefix=file.meta.prefix)
        if init_cfg is None:
            init_cfg = [
                dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
            ]
        super().__init__(init_cfg=init_cfg)
        # read at build time, loaded (once) by init_weights
        self._compressed_file = file
        if attn_bias_mode not in self.ATTN_BIAS_MODES:
            raise ValueError(f'attn_bias_mode must be one of '
                             f'{self.ATTN_BIAS_MODES}, got {attn_bias_mode!r}')
        self.attn_bias_mode = attn_bias_mode
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got '
                             f'{out_type!r}')
        for asked, name in ((output_cls_token, 'output_cls_token=True'),
                            (out_type == 'cls_token', "out_type='cls_token'")):
            if asked and not spec.with_cls_token:
                raise ValueError(f'{name} needs with_cls_token=True')
        self.arch_settings = dict(spec.arch)
        self.embed_dims = embed_dims = spec.arch['embed_dims']
        self.num_layers = num_layers = spec.arch['num_layers']
        self.patch_size = spec.patch_size
        self.with_cls_token = spec.with_cls_token
        self.output_cls_token = output_cls_token
        self.out_type = out_type
        self.final_norm = final_norm
        self.pad_to_patch = pad_to_patch
        self.interpolate_mode = interpolate_mode
        self.out_indices = self._parse_out_indices(out_indices, num_layers)

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=spec.patch_size,
            in_chans=in_channels,
            embed_dim=embed_dims,
            output_fmt='NHWC',
            strict_img_size=False,
            dynamic_img_pad=pad_to_patch)
        self.pos_grid = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_prefix_tokens + self.pos_grid[0] *
                        self.pos_grid[1], embed_dims))
        self.pos_drop = dropout(drop_rate)
        self._pos_cache: Dict[Tuple[int, int], tuple] = {}

        dpr = torch.linspace(0, drop_path_rate, num_layers).tolist()
        groups = parse_channel_prune(channel_prune)
        self.blocks = nn.ModuleList([
            Block(
                embed_dims,
                spec.arch['num_heads'],
                qkv_bias=spec.qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                channel_groups=groups,
                **spec.channel_widths[i]) for i in range(num_layers)
        ])
        if final_norm:
            self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.token_reducer = spec.build_token_reducer()

    @staticmethod
    def _parse_out_indices(out_indices, num_layers: int) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not -num_layers <= index < num_layers:
                raise IndexError(f'out_indices entry {index} is out of range '
                                 f'for {num_layers} blocks')
            parsed.append(index % num_layers)
        return tuple(parsed)

    # ------------------------------------------------------------- weights
    def init_weights(self) -> None:
        file, self._compressed_file = self._compressed_file, None
        if file is not None:
            load_vit_checkpoint(self, file.checkpoint, file.source,
                                file.meta.prefix)
        elif isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            filename = self.init_cfg['checkpoint']
            load_vit_checkpoint(
                self,
                CheckpointLoader.load_checkpoint(filename, map_location='cpu'),
                f'Checkpoint "{filename}"', self.init_cfg.get('prefix'))
        else:
            super().init_weights()
            nn.init.trunc_normal_(self.pos_embed, std=.02)
            nn.init.trunc_normal_(self.cls_token, std=.02)
            return
        self._is_init = True

    # --------------------------------------------------- channel pruning
    @property
    def channel_widths(self) -> List[Dict[str, int]]:
        """Per block, ``dict(qk_dim=, v_dim=, mlp_hidden=)`` as built."""
        return [block_widths(block) for block in self.blocks]

    def channel_groups(self) -> Dict:
        """CDCP channel groups by kind (``'qk'``, ``'v'``, ``'mlp'``), as
        ``(block index, ChannelGroup)`` lists; empty without compactors."""
        return channel_groups(self.blocks)

    def compact(self) -> 'CAITViT':
        """Fold the compactors and remove the pruned channels, in place:
        afterwards the blocks are physically smaller and have no compactors.
        In eval mode the output is unchanged (up to float rounding)."""
        self.blocks = nn.ModuleList(
            compact_block(block) for block in self.blocks)
        return self

    def compression_spec(self) -> CompressionSpec:
        """The spec of this backbone as it is now (what a compressed
        checkpoint stores to rebuild it)."""
        if self.channel_groups():
            raise RuntimeError('compression_spec() describes a compact '
                               'backbone: call compact() first')
        reducer = self.token_reducer
        return CompressionSpec(
            arch=self.arch_settings,
            channel_widths=self.channel_widths,
            token_reducer=None if reducer is None else reducer.config(),
            patch_size=self.patch_size,
            qkv_bias=self.blocks[0].attn.qkv.bias is not None,
            with_cls_token=self.with_cls_token)

    # ------------------------------------------------------------- forward
    @property
    def num_prefix(self) -> int:
        """Tokens ahead of the patch tokens in the sequence: the class
        token, if kept."""
        return self.num_prefix_tokens if self.with_cls_token else 0

    def _patch_pos_embed(self, grid: Tuple[int, int],
                         cells: Optional[List[Tuple[int, int]]]) -> Tensor:
        """Position embeddings of the patch tokens, ``(1 or B, h*w, C)``.

        Without padding they are resampled to the whole grid. In a padded
        batch each image gets them resampled to its own content grid (zeros
        on padding), so an image's tokens do not depend on what it is
        batched with.
        """
        P = self.num_prefix_tokens

        def resized(size):
            if tuple(size) == self.pos_grid:
                return self.pos_embed[:, P:]
            return self._resized_pos_embed(tuple(size))[:, P:]

        if cells is None:
            return resized(grid)
        C = self.embed_dims
        pos = self.pos_embed.new_zeros(len(cells), grid[0], grid[1], C)
        sizes = {size: resized(size).view(size[0], size[1], C)
                 for size in sorted(set(cells))}
        # one slice write per image: an index list would be copied to the
        # device in every forward
        for b, (h, w) in enumerate(cells):
            pos[b, :h, :w] = sizes[(h, w)]
        return pos.flatten(1, 2)

    def _resized_pos_embed(self, grid: Tuple[int, int]) -> Tensor:
        """``pos_embed`` resampled to ``grid``; kept per grid while the
        weights do not change and no gradient is needed (inference at a
        size other than ``img_size``: no resampling in every forward)."""
        pos = self.pos_embed
        if (torch.is_grad_enabled() and pos.requires_grad) \
                or torch.compiler.is_compiling():
            return resize_pos_embed(pos, grid, self.num_prefix_tokens,
                                    self.interpolate_mode,
                                    old_grid=self.pos_grid)
        # the version counts in-place updates (optimizer steps, loading)
        key = (grid, self.interpolate_mode, pos.device, pos.dtype,
               pos.data_ptr(), pos._version)
        cached = self._pos_cache.get(grid)
        if cached is None or cached[0] != key:
            if len(self._pos_cache) >= 16:
                self._pos_cache.clear()
            cached = self._pos_cache[grid] = (key, resize_pos_embed(
                pos, grid, self.num_prefix_tokens, self.interpolate_mode,
                old_grid=self.pos_grid))
        return cached[1]

    def embed(self, x: Tensor, valid_sizes=None) -> Tuple[Tensor, TokenState]:
        """Images ``(B, 3, H, W)`` -> tokens ``(B, P + h*w, C)`` and the
        state of the unreduced grid (with each image's content grid when
        ``valid_sizes`` pads it)."""
        H, W = x.shape[-2:]
        if not self.pad_to_patch and (H % self.patch_size
                                      or W % self.patch_size):
            raise ValueError(
                f'Input size {H}x{W} is not a multiple of the patch size '
                f'{self.patch_size}: pad the inputs (e.g. size_divisor='
                f'{self.patch_size} in the data preprocessor) or build '
                'CAITViT with pad_to_patch=True')
        x = self.patch_embed(x)
        grid = tuple(x.shape[1:3])
        cells = content_cells(valid_sizes, self.patch_size, grid)
        x = x.flatten(1, 2) + self._patch_pos_embed(grid, cells)
        if self.with_cls_token:
            cls = self.cls_token + self.pos_embed[:, :self.num_prefix_tokens]
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x), TokenState.from_grid(grid, cells, x.device)

    def run_blocks(self, x: Tensor, state: TokenState
                   ) -> Iterator[Tuple[int, Tensor, TokenState]]:
        """Run the blocks on embedded tokens (:meth:`embed`), the token
        reducer included.

        The one place that runs the blocks: :meth:`forward` builds its
        outputs from it, and tools that look inside (e.g.
        ``tools/analysis_tools/visualize_merge.py``) read the token states from
        it.

        Yields:
            tuple: ``(i, tokens (B, P + N, C), state)`` after block ``i``.
        """
        prefix = self.num_prefix
        dtype = attention_dtype(x)
        fold = self.attn_bias_mode == 'fold' or (
            self.attn_bias_mode == 'auto' and x.is_cuda)
        # a mask CUDA's kernels take without copying it in every block
        aligned = x.is_cuda and not fold
        attn_bias = state.attn_bias(prefix, dtype, aligned)
        reducer = self.token_reducer
        reduce_at = reducer.blocks if reducer is not None else ()
        for i, block in enumerate(self.blocks):
            if i in reduce_at:
                x, attn = block.forward_attn(x, attn_bias, fold)
                x, state = reducer(i, x, attn, state, prefix)
                attn_bias = state.attn_bias(prefix, dtype, aligned)
                x = block.forward_mlp(x)
            else:
                x = block(x, attn_bias, fold)
            if self.final_norm and i == self.num_layers - 1:
                x = self.norm(x)
            yield i, x, state

    def forward(self, x: Tensor, valid_sizes=None) -> Tuple:
        """
        Args:
            x (Tensor): Images ``(B, in_channels, H, W)``.
            valid_sizes (Sequence[tuple], optional): Per image, the ``(h, w)``
                of its content in a batch padded at the bottom/right (e.g.
                mmdet's ``img_shape``). Padding is then ignored by attention
                and zeroed in the outputs, so each image gets the features it
                would get alone.

        Returns:
            tuple: per ``out_indices`` entry, a map ``(B, C, ceil(H/16),
            ceil(W/16))`` (or ``(map, cls_token (B, C))`` pairs with
            ``output_cls_token``); with ``out_type='cls_token'`` the class
            tokens ``(B, C)`` instead.
        """
        x, state = self.embed(x, valid_sizes)
        pad = state.padding_mask()
        keep = None if pad is None else (~pad).to(x.dtype).view(
            x.shape[0], 1, *state.grid_size)
        outs = []
        for i, x, state in self.run_blocks(x, state):
            if i not in self.out_indices:
                continue
            if self.out_type == 'cls_token':
                outs.append(x[:, 0])
                continue
            feat = state.to_map(x, self.num_prefix)
            if keep is not None:
                feat = feat * keep
            outs.append((feat, x[:, 0]) if self.output_cls_token else feat)
        return tuple(outs)
