"""SafeCheckpointHook: MMEngine's CheckpointHook, safe against a run that
dies while it saves."""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

from cait_mm.registry import HOOKS
from cait_mm.utils.checkpoint_files import publish, write_atomic

PARTIAL = '.partial'


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints are complete or absent.

    MMEngine's hook deletes the oldest kept checkpoint before it writes the
    new one, writes the new one in place and then points
    ``last_checkpoint`` at it: a run killed while saving (a pre-empted job,
    a full disk, an out-of-memory kill) can leave a truncated ``iter_N.pth``
    under a normal name and, with ``max_keep_ckpts=1``, no valid checkpoint
    at all, while ``last_checkpoint`` names a deleted file. This hook writes
    ``iter_N.pth.partial`` in the same folder, flushes it to disk and renames
    it; only then does ``last_checkpoint`` (itself replaced by a rename)
    name it, and only then are outdated checkpoints removed. A kill at any
    point leaves the previous checkpoint complete and ``last_checkpoint``
    naming a complete file; ``tools/train.py --resume`` continues from it.
    A killed run's leftover ``*.partial`` files are removed when training
    starts again.

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
        runner.save_checkpoint(
            self.out_dir,
            filename + PARTIAL,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        publish(self.last_ckpt + PARTIAL, self.last_ckpt)
        write_atomic(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in outdated:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)
