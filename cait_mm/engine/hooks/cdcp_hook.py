"""CDCPHook: consistent dynamic channel pruning during training."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.hooks import Hook

from cait_mm.core import ChannelGroup, ramp_ratio
from cait_mm.registry import HOOKS

Ratio = Union[float, Sequence[float]]


@HOOKS.register_module()
class CDCPHook(Hook):
    """Select and pull down the least important channels, periodically.

    Needs a backbone built with compactors
    (``CAITViT(channel_prune=dict(groups=('qk', 'v', 'mlp')))``), a head
    built with them (``CAITUPerHead(channel_prune=dict(groups=('ppm',
    'lateral', 'fpn', 'fuse')))``: one group per conv or per set of summed
    convs), or both. Every
    ``interval`` iterations from ``begin`` on, the channels of every group
    are ranked by the L2 norm of their compactor rows (within each head for
    ``qk`` and ``v``), and the least important ones are selected, up to a
    target ratio that ramps linearly from 0 at ``begin`` to the final ratio
    at ``end``. Selected channels get no task gradient and, after every
    optimizer step, a group-lasso pull towards zero (the proximal step of
    ``lasso * ||row||``, which reaches exactly zero). Re-ranking releases
    channels that are no longer among the least important: they train
    again. The same number of channels is selected in every head, and the
    query and key dims of a head share one selection.

    The selection lives in the model's buffers, so it is saved with the
    weights; the hook's own step is saved under ``meta['cdcp']``, and
    ``--resume`` continues exactly. The fraction of channels selected per
    group is logged as ``cdcp/<group>_sparsity``.

    Args:
        ratios (dict): Final fraction of channels to prune per group, e.g.
            ``dict(qk=0.5, v=0.5, mlp=0.5)``, plus ``ppm``, ``lateral``,
            ``fpn`` and ``fuse`` for a pruned UperNet head; a value is one
            float for every block (or conv) or a list with one float per
            block (conv). Every group with compactors needs an entry.
        interval (int): Iterations between two re-rankings.
        begin (int): First iteration with pruning.
        end (int): Iteration at which the targets reach ``ratios``.
        lasso (float): Group-lasso step: how much the norm of a selected
            channel's compactor rows shrinks per iteration. Identity rows
            have norm 1 (``sqrt(2)`` for a QK channel, whose q and k rows
            count together), so about ``1 / lasso`` iterations remove a
            channel entirely.
    """
    priority = 'NORMAL'

    def __init__(self,
                 ratios: Dict[str, Ratio],
                 interval: int = 100,
                 begin: int = 0,
                 end: int = 1000,
                 lasso: float = 1e-3):
        if not isinstance(ratios, dict) or not ratios:
            raise ValueError('CDCPHook: ratios must be a non-empty dict such '
                             'as dict(qk=0.5, v=0.5, mlp=0.5)')
        if interval < 1 or begin < 0 or end < begin:
            raise ValueError(f'CDCPHook: needs interval >= 1 and 0 <= begin '
                             f'<= end, got interval={interval}, '
                             f'begin={begin}, end={end}')
        if lasso < 0:
            raise ValueError(f'CDCPHook: lasso must be >= 0, got {lasso}')
        self.ratios = dict(ratios)
        self.interval = interval
        self.begin = begin
        self.end = end
        self.lasso = lasso
        self.groups: Dict[str, List[Tuple[int, ChannelGroup]]] = {}
        #: Iteration of the last re-ranking (-1: none yet).
        self.last_selection = -1

    # ------------------------------------------------------------ set-up
    def before_train(self, runner) -> None:
        self.groups = self._find_groups(runner.model)
        missing = sorted(set(self.groups) - set(self.ratios))
        unknown = sorted(set(self.ratios) - set(self.groups))
        if missing or unknown:
            raise ValueError(
                f'CDCPHook: ratios name the groups {sorted(self.ratios)}, '
                f'the model has compactors for {sorted(self.groups)}' +
                (f'; no ratio for {missing}' if missing else '') +
                (f'; no compactors for {unknown} (add them to the '
                 'channel_prune.groups of model.backbone or of '
                 'model.decode_head)' if unknown else ''))
        for kind, entries in self.groups.items():
            for index, group in entries:
                try:
                    group.num_to_prune(self._final(kind, index))
                except ValueError as error:
                    raise ValueError(
                        f'CDCPHook: {kind} group {index}: {error}') from None

    @staticmethod
    def _find_groups(model) -> Dict[str, List[Tuple[int, ChannelGroup]]]:
        found: Dict[str, List[Tuple[int, ChannelGroup]]] = {}
        for module in model.modules():
            get = getattr(module, 'channel_groups', None)
            if callable(get) and not isinstance(module, ChannelGroup):
                for kind, entries in get().items():
                    found.setdefault(kind, []).extend(entries)
        if not found:
            raise RuntimeError(
                'CDCPHook found no compactors: build the backbone with '
                "channel_prune=dict(groups=('qk', 'v', 'mlp'))")
        return found

    def _final(self, kind: str, index: int) -> float:
        ratio = self.ratios[kind]
        if isinstance(ratio, (list, tuple)):
            count = len(self.groups[kind])
            if len(ratio) != count:
                raise ValueError(f'CDCPHook: ratios[{kind!r}] has '
                                 f'{len(ratio)} entries for {count} blocks')
            return float(ratio[[i for i, _ in self.groups[kind]].index(
                index)])
        return float(ratio)

    # ---------------------------------------------------------- training
    def target(self, kind: str, index: int, iteration: int) -> float:
        """The pruning ratio of group ``kind`` in block ``index`` at
        ``iteration``."""
        return ramp_ratio(
            self._final(kind, index), iteration, self.begin, self.end)

    def select(self, iteration: int) -> None:
        """Re-rank every group at its target for ``iteration``."""
        for kind, entries in self.groups.items():
            for index, group in entries:
                group.select(self.target(kind, index, iteration))
        self.last_selection = iteration

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        iteration = runner.iter
        if iteration >= self.begin and \
                (iteration - self.begin) % self.interval == 0:
            self.select(iteration)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        for kind, entries in self.groups.items():
            selected = total = 0
            for _, group in entries:
                group.shrink_pruned(self.lasso)
                selected += int(group.pruned.sum())
                total += group.pruned.numel()
            runner.message_hub.update_scalar(f'train/cdcp/{kind}_sparsity',
                                             selected / total)

    # -------------------------------------------------------- checkpoint
    def state_dict(self) -> Dict:
        return dict(last_selection=self.last_selection)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['cdcp'] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get('cdcp')
        if state is not None:
            self.last_selection = int(state['last_selection'])
