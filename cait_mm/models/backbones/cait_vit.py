"""CAITViT: a plain DeiT backbone for dense prediction, built to be
compressed (token merging or pruning, channel pruning)."""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from timm.layers import PatchEmbed
from torch import Tensor, nn

from cait_mm.core import (Block, TokenState, block_widths,
                          build_token_reducer, channel_groups, compact_block)
from cait_mm.core.compactor import num_to_prune
from cait_mm.core.vit_layers import check_channel_groups
from cait_mm.registry import MODELS
from .compressed_checkpoint import compression_info, read_compression_meta
from .vit_checkpoint import (convert_timm_vit, load_strict, resize_pos_embed,
                             unwrap_state_dict)

WIDTH_KEYS = ('qk_dim', 'v_dim', 'mlp_hidden')


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
        out_type (str): ``'featmap'``: the restored maps (dense tasks);
            ``'cls_token'``: only the class token ``(B, C)`` per output, as
            mmpretrain's ViT returns for its classification heads (no map is
            restored). Needs ``with_cls_token``.
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
        channel_prune (dict, optional): CDCP channel pruning,
            ``dict(groups=('qk', 'v', 'mlp'))``: identity-initialised
            compactors in every block for those channel groups. The
            ``cait_mm.CDCPHook`` selects the channels to prune during
            training; in eval mode the selected channels are masked, and
            ``tools/export_compressed.py`` removes them.
        channel_widths (Sequence[dict] | dict, optional): Per block, the
            widths of a channel-pruned model, ``dict(qk_dim=, v_dim=,
            mlp_hidden=)`` (per-head query/key and value widths, MLP hidden
            units); usually read from a compressed checkpoint
            (``compressed``), not written. A single ``dict(qk=, v=, mlp=)``
            of pruning ratios instead prunes every block alike (rounded as
            ``CDCPHook`` rounds), e.g. to time a pruned model before
            training one.
        compressed (str, optional): An exported compressed checkpoint
            (``tools/export_compressed.py``). The compact architecture is
            read from its metadata at build time (channel widths, and the
            token merging/pruning it was trained with, unless
            ``token_merge``/``token_prune`` are set here: the config wins),
            and its weights are loaded by ``init_weights``. ``arch`` and
            ``channel_widths`` given here must agree with the file.
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
    OUT_TYPES = ('featmap', 'cls_token')

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
                 out_type: str = 'featmap',
                 final_norm: bool = False,
                 pad_to_patch: bool = True,
                 interpolate_mode: str = 'bicubic',
                 token_merge: Optional[Dict] = None,
                 token_prune: Optional[Dict] = None,
                 channel_prune: Optional[Dict] = None,
                 channel_widths: Optional[Sequence[Dict]] = None,
                 compressed: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[Dict, list]] = None):
        if sum(x is not None
               for x in (pretrained, init_cfg, compressed)) > 1:
            raise ValueError('Set one of `compressed`, `pretrained` and '
                             '`init_cfg`, not several')
        if pretrained is not None:
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if compressed is not None:
            info = read_compression_meta(compressed)
            channel_widths, token_merge, token_prune = self._from_compressed(
                info['backbone'], compressed, arch, patch_size, qkv_bias,
                with_cls_token, channel_widths, token_merge, token_prune)
            init_cfg = dict(
                type='Pretrained', checkpoint=compressed,
                prefix=info.get('prefix'))
        if init_cfg is None:
            init_cfg = [
                dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
            ]
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        if output_cls_token and not with_cls_token:
            raise ValueError('output_cls_token=True needs with_cls_token=True')
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type must be one of {self.OUT_TYPES}, got '
                             f'{out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        self.out_type = out_type
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
        widths = self._parse_widths(channel_widths)
        groups = self._parse_channel_prune(channel_prune)
        self.blocks = nn.ModuleList([
            Block(
                embed_dims,
                self.arch_settings['num_heads'],
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                channel_groups=groups,
                **widths[i]) for i in range(num_layers)
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
                                 'embed_dims, num_layers, num_heads, '
                                 'mlp_ratio')
            return dict(cls.arch_zoo[arch])
        required = {'embed_dims', 'num_layers', 'num_heads', 'mlp_ratio'}
        if not isinstance(arch, dict) or set(arch) != required:
            raise ValueError(f'A custom arch must be a dict with exactly the '
                             f'keys {sorted(required)}, got {arch!r}')
        return dict(arch)

    def _parse_widths(self, channel_widths) -> List[Dict[str, int]]:
        """Per-block ``qk_dim``, ``v_dim``, ``mlp_hidden``: the arch's unless
        ``channel_widths`` (a channel-pruned model) gives them."""
        num_heads = self.arch_settings['num_heads']
        dense = dict(
            qk_dim=self.embed_dims // num_heads,
            v_dim=self.embed_dims // num_heads,
            mlp_hidden=int(self.embed_dims * self.arch_settings['mlp_ratio']))
        if channel_widths is None:
            return [dict(dense) for _ in range(self.num_layers)]
        if isinstance(channel_widths, dict):
            channel_widths = [self._widths_from_ratios(channel_widths, dense)
                              ] * self.num_layers
        if len(channel_widths) != self.num_layers:
            raise ValueError(f'channel_widths has {len(channel_widths)} '
                             f'entries for {self.num_layers} blocks')
        parsed = []
        for i, entry in enumerate(channel_widths):
            entry = dict(entry)
            if set(entry) != set(WIDTH_KEYS) or not all(
                    isinstance(entry[k], int) and 0 < entry[k] <= dense[k]
                    for k in WIDTH_KEYS):
                raise ValueError(
                    f'channel_widths[{i}] = {entry}: needs the keys '
                    f'{list(WIDTH_KEYS)} with positive ints no larger than '
                    f'the unpruned {dense}')
            parsed.append(entry)
        return parsed

    @staticmethod
    def _widths_from_ratios(ratios: Dict, dense: Dict) -> Dict[str, int]:
        keys = dict(qk='qk_dim', v='v_dim', mlp='mlp_hidden')
        unknown = set(ratios) - set(keys)
        if unknown:
            raise ValueError(f'channel_widths as ratios takes the keys '
                             f'{sorted(keys)}, got {sorted(ratios)}')
        widths = dict(dense)
        for group, ratio in ratios.items():
            full = dense[keys[group]]
            widths[keys[group]] = full - num_to_prune(ratio, full, group)
        return widths

    @staticmethod
    def _parse_channel_prune(channel_prune: Optional[Dict]) -> Tuple:
        if channel_prune is None:
            return ()
        unknown = set(channel_prune) - {'groups'}
        if unknown:
            raise ValueError(f'channel_prune: unknown keys {sorted(unknown)};'
                             " it takes groups=('qk', 'v', 'mlp') (the "
                             'ratios and schedule belong to CDCPHook)')
        return check_channel_groups(
            channel_prune.get('groups', ('qk', 'v', 'mlp')))

    def _from_compressed(self, saved: Dict, filename: str, arch, patch_size,
                         qkv_bias, with_cls_token, channel_widths,
                         token_merge, token_prune):
        """Check the config against a compressed checkpoint's architecture;
        return the widths and token reducers to build."""
        mine = self._parse_arch(arch)
        theirs = {k: saved['arch'][k] for k in mine}
        mismatch = [
            f'{name}: config {ours!r}, checkpoint {saved_value!r}'
            for name, ours, saved_value in (
                ('arch', mine, theirs), ('patch_size', patch_size,
                                         saved['patch_size']),
                ('qkv_bias', qkv_bias, saved['qkv_bias']),
                ('with_cls_token', with_cls_token, saved['with_cls_token']),
                ('channel_widths', channel_widths, saved['channel_widths']))
            if ours is not None and ours != saved_value
        ]
        if mismatch:
            raise ValueError(
                f'compressed checkpoint "{filename}" does not fit this '
                'CAITViT config: ' + '; '.join(mismatch) +
                '. Drop these settings from the config (the checkpoint '
                'defines them) or use the matching checkpoint.')
        if token_merge is None and token_prune is None:
            token_merge = saved.get('token_merge')
            token_prune = saved.get('token_prune')
        return saved['channel_widths'], token_merge, token_prune

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
        """Load DeiT/timm, OpenMMLab or compressed weights, resizing
        position embeddings."""
        checkpoint = CheckpointLoader.load_checkpoint(
            filename, map_location='cpu')
        source = f'Checkpoint "{filename}"'
        info = compression_info(checkpoint, source)
        if info is not None:
            if prefix is None:
                prefix = info.get('prefix')
            saved = info['backbone']['channel_widths']
            if saved != self.channel_widths:
                raise RuntimeError(
                    f'{source} is channel-pruned; its widths do not fit this '
                    f'CAITViT (first differing block: '
                    f'{self._first_difference(saved)}). Build the backbone '
                    f'from it with compressed="{filename}" instead.')
        state = unwrap_state_dict(checkpoint, prefix)
        state = convert_timm_vit(state, keep_final_norm=self.final_norm)
        if 'pos_embed' in state:
            state['pos_embed'] = resize_pos_embed(
                state['pos_embed'], self.pos_grid, self.num_prefix_tokens,
                self.interpolate_mode)
        # A pretrained ViT has no token scorer and no compactors: they keep
        # their initialisation (compactors start as the identity).
        load_strict(self, state, source,
                    may_be_missing=('token_reducer.', ) +
                    self._compactor_keys())

    def _first_difference(self, saved: List[Dict]) -> str:
        for i, (theirs, ours) in enumerate(zip(saved, self.channel_widths)):
            if theirs != ours:
                return f'{i}: checkpoint {theirs}, model {ours}'
        return f'{len(saved)} blocks in the checkpoint, {self.num_layers} here'

    def _compactor_keys(self) -> Tuple[str, ...]:
        return tuple(
            f'blocks.{i}.{path}.' for i, block in enumerate(self.blocks)
            for path, module in (('attn.qk_compactor',
                                  block.attn.qk_compactor),
                                 ('attn.v_compactor', block.attn.v_compactor),
                                 ('mlp.compactor', block.mlp.compactor))
            if module is not None)

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

    def compression_info(self, prefix: str = 'backbone.') -> Dict:
        """What a compressed checkpoint needs to rebuild this backbone
        (see :mod:`.compressed_checkpoint`), in plain Python types."""
        if self.channel_groups():
            raise RuntimeError('compression_info() describes a compact '
                               'backbone: call compact() first')
        reducer = self.token_reducer
        backbone = dict(
            arch={k: self.arch_settings[k] for k in sorted(
                self.arch_settings)},
            patch_size=self.patch_size,
            pos_grid=list(self.pos_grid),
            qkv_bias=self.blocks[0].attn.qkv.bias is not None,
            with_cls_token=self.with_cls_token,
            channel_widths=self.channel_widths)
        if reducer is not None:
            backbone['token_merge' if type(reducer).__name__ == 'ATME' else
                     'token_prune'] = reducer.config()
        return dict(prefix=prefix, backbone=backbone)

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
            ``output_cls_token``); with ``out_type='cls_token'`` the class
            tokens ``(B, C)`` instead.
        """
        outs, keep = [], None
        for i, x, state in self.run_blocks(x, valid_sizes):
            if i < 0:
                pad = state.padding_mask()
                if pad is not None:
                    keep = (~pad).to(x.dtype).view(x.shape[0], 1,
                                                   *state.grid_size)
            elif i in self.out_indices and self.out_type == 'cls_token':
                outs.append(x[:, 0])
            elif i in self.out_indices:
                feat = state.to_map(x[:, self._prefix:])
                if keep is not None:
                    feat = feat * keep
                outs.append((feat, x[:, 0]) if self.output_cls_token else feat)
        return tuple(outs)
