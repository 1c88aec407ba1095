"""Test helper hook: what each rank saw and ended with, one json per rank."""
import hashlib
import json
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):

    def before_train(self, runner):
        self.images = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.images += [s.img_path for s in data_batch['data_samples']]

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        digest = hashlib.sha256()
        for name, param in sorted(model.named_parameters()):
            digest.update(name.encode())
            digest.update(param.detach().to(torch.float64).numpy().tobytes())
        record = dict(
            rank=get_rank(),
            world_size=runner.world_size,
            params=digest.hexdigest(),
            images=self.images,
            wrapper=type(runner.model).__name__)
        with open(osp.join(runner.work_dir, f'rank{get_rank()}.json'),
                  'w') as f:
            json.dump(record, f)
