"""What tests/test_reference_outputs.py rebuilds: the cases of
tests/data/reference/make_reference.py and how their weights are set."""
import torch

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.)
MERGE = [(1, 'h', 0.5), (2, 'v', 0.5)]
BACKBONE = dict(arch=TINY, img_size=64, out_indices=(1, 3))
# (name, extra CAITViT settings, valid_sizes)
CASES = [
    ('dense', {}, None),
    ('dense_cls_final_norm', dict(output_cls_token=True, final_norm=True),
     None),
    ('atme_token', dict(token_merge=dict(schedule=MERGE)), None),
    ('atme_line', dict(token_merge=dict(schedule=MERGE, granularity='line')),
     None),
    ('atme_no_cls', dict(with_cls_token=False,
                         token_merge=dict(schedule=MERGE)), None),
    ('atme_cls_token_out', dict(out_type='cls_token', final_norm=True,
                                token_merge=dict(schedule=MERGE)), None),
    ('tps_attn', dict(token_prune=dict(blocks=(1, 2), keep_ratio=0.7)), None),
    ('tps_learned', dict(token_prune=dict(blocks=(1, 2), keep_ratio=0.6,
                                          score='learned', prop_attn=True)),
     None),
    ('dense_padded', {}, [(64, 80), (40, 56)]),
    ('atme_padded', dict(token_merge=dict(schedule=MERGE)),
     [(64, 80), (40, 56)]),
    ('atme_line_padded', dict(token_merge=dict(schedule=MERGE,
                                               granularity='line')),
     [(50, 80), (64, 41)]),
]


@torch.no_grad()
def fill_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Set every float weight and buffer of ``model`` from its name and
    shape alone: for each key in sorted order, values drawn from one seeded
    generator, scaled like an initialisation (``1 / sqrt(fan_in)`` for
    matrices and kernels, ``1 +- 0.1`` for norm weights, positive running
    variances, ``0.1`` for the rest). Compactors get the identity plus
    noise, so that their row norms rank channels."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for name in sorted(state):
        t = state[name]
        # the data preprocessor's mean and std are not the model's weights
        if not t.is_floating_point() or name.startswith('data_preprocessor'):
            continue
        noise = torch.randn(t.shape, generator=g, dtype=torch.float64)
        if name.endswith('running_var'):
            value = 0.5 + noise.abs()
        elif 'compactor' in name:
            value = torch.eye(t.shape[-1], dtype=torch.float64) + 0.2 * noise
        elif t.dim() >= 2:
            value = noise / (t[0].numel()**0.5)
        elif name.endswith('weight'):
            value = 1 + 0.1 * noise
        else:
            value = 0.1 * noise
        t.copy_(value.to(t.dtype))
