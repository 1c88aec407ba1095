"""SafeCheckpointHook: MMEngine's CheckpointHook, safe against a run that
dies while it saves."""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

from cait_mm.registry import HOOKS
from cait_mm.utils.atomic_write import PARTIAL, atomic_output, write_text


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints are complete or absent.

    MMEngine's hook deletes the oldest kept checkpoint (and the previous
    best one) before it writes the new one, writes the new one in place and
    then points ``last_checkpoint`` at it: a run killed while saving (a
    pre-empted job, a full disk, an out-of-memory kill) can leave a
    truncated ``iter_N.pth`` or ``best_*.pth`` under a normal name and, with
    ``max_keep_ckpts=1``, no valid checkpoint at all, while
    ``last_checkpoint`` names a deleted file. This hook writes every
    checkpoint through :func:`~cait_mm.utils.atomic_write.atomic_output`
    (``iter_N.pth.<pid>.partial`` in the same folder, flushed to disk,
    renamed); only then does ``last_checkpoint`` (itself replaced by a
    rename) name it, and only then are outdated and former best checkpoints
    removed. A kill at any point leaves the previous checkpoints complete and
    ``last_checkpoint`` naming a complete file; ``tools/train.py --resume``
    continues from it. A save that fails (a full disk) removes its partial
    file and fails naming the checkpoint; a killed run's leftover
    ``*.partial`` files are removed when training starts again.

    It takes MMEngine's arguments (``interval``, ``by_epoch``,
    ``max_keep_ckpts``, ...). Checkpoints on other storage backends (e.g.
    object stores, where a rename is not atomic) are saved as MMEngine
    saves them.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not self._local or not is_main_process() or \
                not osp.isdir(self.out_dir):
            return
        for name in os.listdir(self.out_dir):
            if name.endswith(PARTIAL):
                os.remove(osp.join(self.out_dir, name))

    @property
    def _local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._local:
            return super()._save_checkpoint_with_step(runner, step, meta)
        # The list of kept steps goes into the checkpoint (the message hub),
        # so it is updated first; the files it drops are removed last.
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if not is_main_process():
            return
        self._save(runner, self.last_ckpt, meta,
                   save_optimizer=self.save_optimizer,
                   save_param_scheduler=self.save_param_scheduler,
                   by_epoch=self.by_epoch, **self.args)
        write_text(osp.join(runner.work_dir, 'last_checkpoint'),
                   self.last_ckpt)
        for old in outdated:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)

    def _save(self, runner, path: str, meta: dict, **kwargs) -> None:
        """``runner.save_checkpoint`` to ``path``, complete or not at all
        (main process only: MMEngine saves nothing on the others)."""
        with atomic_output(path) as tmp_path:
            runner.save_checkpoint(
                self.out_dir,
                osp.basename(tmp_path),
                self.file_client_args,
                meta=meta,
                backend_args=self.backend_args,
                **kwargs)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """MMEngine's, but the new best checkpoint is complete before the
        previous best one is removed."""
        if not self.save_best or not self._local:
            return super()._save_best_checkpoint(runner, metrics)
        step = runner.epoch if self.by_epoch else runner.iter
        meta = dict(epoch=runner.epoch, iter=runner.iter)
        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [list(metrics.keys())[0]])
        single = len(self.key_indicators) == 1
        updated = False
        for key, rule in zip(self.key_indicators, self.rules):
            score_key = 'best_score' if single else f'best_score_{key}'
            if score_key in runner.message_hub.runtime_info:
                best_score = runner.message_hub.get_info(score_key)
            else:
                best_score = self.init_value_map[rule]
            score = metrics[key]
            if score is None or not self.is_better_than[key](score,
                                                             best_score):
                continue
            updated = True
            runner.message_hub.update_info(score_key, score)
            previous = self.best_ckpt_path if single else \
                self.best_ckpt_path_dict.get(key)
            name = f'best_{key}_{self.filename_tmpl.format(step)}'
            path = osp.join(self.out_dir, name.replace('/', '_'))
            if single:
                self.best_ckpt_path = path
            else:
                self.best_ckpt_path_dict[key] = path
            runner.message_hub.update_info(
                'best_ckpt' if single else f'best_ckpt_{key}', path)
            if not is_main_process():
                continue
            self._save(runner, path, meta, save_optimizer=False,
                       save_param_scheduler=False, by_epoch=False)
            runner.logger.info(
                f'The best checkpoint with {score:0.4f} {key} at {step} '
                f'{"epoch" if self.by_epoch else "iter"} is saved to '
                f'{osp.basename(path)}.')
            if previous and previous != path and osp.isfile(previous):
                os.remove(previous)
                runner.logger.info(
                    f'The previous best checkpoint {previous} is removed')
        # the step's checkpoint again, with the new best in its message hub
        # (as MMEngine does, so that a resumed run knows its best file)
        if updated and self.last_ckpt is not None:
            self._save_checkpoint_with_step(runner, step, meta)
