"""CAITViT: a plain DeiT backbone for dense prediction, ready for compression."""
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from timm.layers import PatchEmbed
from torch import Tensor, nn

from cait_mm.core import Block, TokenState, build_token_reducer
from cait_mm.registry import MODELS
from .vit_checkpoint import (convert_timm_vit, load_strict, resize_pos_embed,
                             unwrap_state_dict)


@MODELS.register_module()
class CAITViT(BaseModule):
    """DeiT-T/S/B backbone that returns mmseg-style feature maps.

    With no compression it is a plain DeiT (timm's weights and numerics) and
    returns what mmseg's ``VisionTransformer`` returns: a tuple with one
    ``(B, C, H/16, W/16)`` map per entry of ``out_indices``.

    Args:
        arch (str | dict): ``'deit-t'``, ``'deit-s'``, ``'deit-b'``, or a dict
            with ``embed_dims``, ``num_layers``, ``num_heads``, ``mlp_ratio``.
        img_size (int | tuple): Input size the position embeddings are stored
            for; other sizes are served by resampling them on the fly.
        patch_size (int): Patch size.
        in_channels (int): Image channels.
        out_indices (int | Sequence[int]): Blocks whose output is returned;
            negative values count from the end.
        qkv_bias (bool): Bias in the ``qkv`` projections.
        drop_rate (float): Dropout after position embedding and projections.
        attn_drop_rate (float): Dropout on attention probabilities.
        drop_path_rate (float): Stochastic depth, linearly increasing.
        with_cls_token (bool): Keep the class token in the sequence.
        output_cls_token (bool): Return ``(map, cls_token)`` per output
            instead of the map alone (needs ``with_cls_token``).
        final_norm (bool): Apply the final LayerNorm to the last block's
            output (mmseg's default for DeiT UperNet is ``False``).
        pad_to_patch (bool): Pad the bottom/right of inputs whose size is not
            a multiple of ``patch_size`` (as mmseg's ViT does with
            ``padding='corner'``); when ``False`` such inputs raise.
        interpolate_mode (str): Mode for resampling position embeddings.
        token_merge (dict, optional): ATME token merging, e.g.
            ``dict(schedule='deit-s', granularity='token')``; see
            :class:`cait_mm.core.atme.ATME`. Merged tokens are restored to
            the full grid at every ``out_indices`` block. It has no weights,
            so it also applies, training-free, to a dense checkpoint.
        token_prune (dict, optional): TPS token pruning and squeezing, e.g.
            ``dict(blocks=(3, 6, 9), keep_ratio=0.7, score='attn')``; see
            :class:`cait_mm.core.tps.TPS`. Pruned tokens live on in their
            hosts, and outputs are restored to the full grid through them.
            Set at most one of ``token_merge`` and ``token_prune``.
        pretrained (str, optional): Shortcut for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg (dict | list, optional): MMEngine initialisation config.
            ``type='Pretrained'`` accepts official DeiT/timm files and
            OpenMMLab checkpoints (with ``prefix='backbone.'``).
    """
    arch_zoo = {
        'deit-t':
        dict(embed_dims=192, num_layers=12, num_heads=3, mlp_ratio=4.),
        'deit-s':
        dict(embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4.),
        'deit-b':
        dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.),
    }
    num_prefix_tokens = 1

    def __init__(self,
                 arch: Union[str, Dict] = 'deit-s',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 with_cls_token: bool = True,
                 output_cls_token: bool = False,
                 final_norm: bool = False,
                 pad_to_patch: bool = True,
                 interpolate_mode: str = 'bicubic',
                 token_merge: Optional[Dict] = None,
                 token_prune: Optional[Dict] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[Dict, list]] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError(
                    'Set either `pretrained` or `init_cfg`, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [
                dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
            ]
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        if output_cls_token and not with_cls_token:
            raise ValueError('output_cls_token=True needs with_cls_token=True')
        embed_dims = self.arch_settings['embed_dims']
        num_layers = self.arch_settings['num_layers']
        self.embed_dims = embed_dims
        self.num_layers = num_layers
        self.patch_size = patch_size
        self.with_cls_token = with_cls_token
        self.output_cls_token = output_cls_token
        self.final_norm = final_norm
        self.pad_to_patch = pad_to_patch
        self.interpolate_mode = interpolate_mode
        self.out_indices = self._parse_out_indices(out_indices, num_layers)

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
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
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, num_layers).tolist()
        mlp_hidden = int(embed_dims * self.arch_settings['mlp_ratio'])
        self.blocks = nn.ModuleList([
            Block(
                embed_dims,
                self.arch_settings['num_heads'],
                mlp_hidden,
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i]) for i in range(num_layers)
        ])
        if final_norm:
            self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.token_reducer = self._build_reducer(token_merge, token_prune)

    # ------------------------------------------------------------ building
    @classmethod
    def _parse_arch(cls, arch: Union[str, Dict]) -> Dict:
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ValueError(f'Unknown arch "{arch}"; valid archs: '
                               f'{sorted(cls.arch_zoo)}, or a dict with '
                               'embed_dims, num_layers, num_heads, mlp_ratio')
            return dict(cls.arch_zoo[arch])
        required = {'embed_dims', 'num_layers', 'num_heads', 'mlp_ratio'}
        if not isinstance(arch, dict) or set(arch) != required:
            raise ValueError(f'A custom arch must be a dict with exactly the '
                           f'keys {sorted(required)}, got {arch!r}')
        return dict(arch)

    def _build_reducer(self, token_merge: Optional[Dict],
                       token_prune: Optional[Dict]):
        if token_merge is not None and token_prune is not None:
            raise ValueError('Set token_merge (ATME) or token_prune (TPS), '
                             'not both')
        if token_merge is None and token_prune is None:
            return None
        cfg = dict(type='ATME', **token_merge) if token_merge is not None \
            else dict(type='TPS', **token_prune)
        reducer = build_token_reducer(cfg, self.num_layers, self.embed_dims)
        if getattr(reducer, 'needs_class_token', False) and \
                not self.with_cls_token:
            raise ValueError(f'{cfg} scores tokens by the class token\'s '
                             'attention: it needs with_cls_token=True')
        return reducer

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
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            self._load_pretrained(self.init_cfg['checkpoint'],
                                  self.init_cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.trunc_normal_(self.cls_token, std=.02)

    def _load_pretrained(self, filename: str, prefix: Optional[str]) -> None:
        """Load DeiT/timm or OpenMMLab weights, resizing position embeddings.
        """
        checkpoint = CheckpointLoader.load_checkpoint(
            filename, map_location='cpu')
        state = unwrap_state_dict(checkpoint, prefix)
        state = convert_timm_vit(state, keep_final_norm=self.final_norm)
        if 'pos_embed' in state:
            state['pos_embed'] = resize_pos_embed(
                state['pos_embed'], self.pos_grid, self.num_prefix_tokens,
                self.interpolate_mode)
        # a pretrained ViT has no token scorer: it keeps its initialisation
        load_strict(self, state, f'Checkpoint "{filename}"',
                    may_be_missing=('token_reducer.', ))

    # ------------------------------------------------------------- forward
    def _patch_pos_embed(self, grid: Tuple[int, int],
                         valid_shape: Optional[Tensor]) -> Tensor:
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
            return resize_pos_embed(self.pos_embed, size, P,
                                    self.interpolate_mode,
                                    old_grid=self.pos_grid)[:, P:]

        if valid_shape is None:
            return resized(grid)
        B, C = valid_shape.shape[0], self.embed_dims
        pos = self.pos_embed.new_zeros(B, grid[0], grid[1], C)
        for size in torch.unique(valid_shape, dim=0).tolist():
            images = (valid_shape == valid_shape.new_tensor(size)).all(1)
            pos[images, :size[0], :size[1]] = resized(size).view(
                1, size[0], size[1], C)
        return pos.flatten(1, 2)

    def _valid_shape(self, valid_sizes, grid,
                     device) -> Optional[Tensor]:
        """Per-image content grid ``(B, 2)`` in tokens, or ``None``."""
        if valid_sizes is None:
            return None
        p = self.patch_size
        shape = torch.tensor([[-(-int(h) // p), -(-int(w) // p)]
                              for h, w in valid_sizes],
                             device=device)
        if (shape > shape.new_tensor(grid)).any():
            raise ValueError(f'valid_sizes {list(valid_sizes)} exceed the '
                             f'input grid {grid} of {p}-pixel patches')
        if (shape == shape.new_tensor(grid)).all():
            return None
        return shape

    def _embed(self, x: Tensor,
               valid_sizes) -> Tuple[Tensor, TokenState]:
        """Images ``(B, 3, H, W)`` -> tokens ``(B, P + h*w, C)``, state."""
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
        valid_shape = self._valid_shape(valid_sizes, grid, x.device)
        x = x.flatten(1, 2) + self._patch_pos_embed(grid, valid_shape)
        if self.with_cls_token:
            cls = self.cls_token + self.pos_embed[:, :self.num_prefix_tokens]
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x), TokenState.from_grid(grid, valid_shape)

    @property
    def _prefix(self) -> int:
        """Prefix tokens in the sequence: the class token, if kept."""
        return self.num_prefix_tokens if self.with_cls_token else 0

    def run_blocks(self, x: Tensor, valid_sizes=None
                   ) -> Iterator[Tuple[int, Tensor, TokenState]]:
        """Embed the images and run the blocks, token reducers included.

        The one place that runs the blocks: :meth:`forward` builds its
        outputs from it, and tools that look inside (e.g.
        ``tools/visualize_merge.py``) read the token states from it.

        Yields:
            tuple: ``(i, tokens (B, P + N, C), state)`` after block ``i``,
            and first ``(-1, ...)`` after the patch embedding.
        """
        x, state = self._embed(x, valid_sizes)
        yield -1, x, state
        prefix = self._prefix
        attn_bias = state.attn_bias(prefix)
        reducer = self.token_reducer
        reduce_at = reducer.blocks if reducer is not None else ()
        for i, block in enumerate(self.blocks):
            if i in reduce_at:
                x, attn = block.forward_attn(x, attn_bias)
                x, state = reducer(i, x, attn, state, prefix)
                attn_bias = state.attn_bias(prefix)
                x = block.forward_mlp(x)
            else:
                x = block(x, attn_bias)
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
            ``output_cls_token``).
        """
        outs, keep = [], None
        for i, x, state in self.run_blocks(x, valid_sizes):
            if i < 0:
                pad = state.padding_mask()
                if pad is not None:
                    keep = (~pad).to(x.dtype).view(x.shape[0], 1,
                                                   *state.grid_size)
            elif i in self.out_indices:
                feat = state.to_map(x[:, self._prefix:])
                if keep is not None:
                    feat = feat * keep
                outs.append((feat, x[:, 0]) if self.output_cls_token else feat)
        return tuple(outs)
