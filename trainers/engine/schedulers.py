"""Dassl's learning-rate schedules, constructible on every torch from 2.1 to 2.14.

Dassl's warmup wrappers pass ``verbose`` positionally to ``LRScheduler.__init__`` (a TypeError on
current torch) and keep the wrapped scheduler as an attribute, so their ``state_dict`` pickles a whole
scheduler object and cannot be read back with ``torch.load(weights_only=True)``. These classes keep
Dassl's semantics exactly (per-epoch stepping, constant/linear warmup, ``WARMUP_RECOUNT``) and store
plain state only.

Semantics, with W = WARMUP_EPOCH and epochs counted from 0:
- constant: epochs 0..W-1 run at WARMUP_CONS_LR; linear: epoch 0 at WARMUP_MIN_LR, epoch e at base*e/W.
- epoch W runs at the base LR; epoch W+k at the successor's k-th value (recount), e.g. cosine
  base*(1+cos(pi*k/MAX_EPOCH))/2. Without recount the successor starts at k=W.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR

from ..errors import ConfigError

SCHEDULERS = ("single_step", "multi_step", "cosine")


class WarmupScheduler(LRScheduler):
    """Runs ``warmup_lr(epoch)`` for ``warmup_epoch`` epochs, then hands over to ``successor``."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch=-1)

    def warmup_lr(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.warmup_lr(base, self.last_epoch) for base in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step()
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step()

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.successor.load_state_dict(state.pop("successor"))
        self.__dict__.update(state)


class ConstantWarmupScheduler(WarmupScheduler):
    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch)

    def warmup_lr(self, base_lr: float, epoch: int) -> float:
        return self.cons_lr


class LinearWarmupScheduler(WarmupScheduler):
    def __init__(self, optimizer, successor, warmup_epoch: int, min_lr: float):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch)

    def warmup_lr(self, base_lr: float, epoch: int) -> float:
        return self.min_lr if epoch == 0 else base_lr * epoch / self.warmup_epoch


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> LRScheduler:
    """Drop-in replacement for ``dassl.optim.build_lr_scheduler`` (same config keys)."""
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise ConfigError(f"OPTIM.STEPSIZE must be an integer for single_step, got {stepsize!r}")
        scheduler: LRScheduler = StepLR(optimizer, step_size=stepsize if stepsize > 0 else optim_cfg.MAX_EPOCH,
                                        gamma=optim_cfg.GAMMA)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise ConfigError(f"OPTIM.STEPSIZE must be a list for multi_step, got {stepsize!r}")
        scheduler = MultiStepLR(optimizer, milestones=list(stepsize), gamma=optim_cfg.GAMMA)
    elif name == "cosine":
        scheduler = CosineAnnealingLR(optimizer, float(optim_cfg.MAX_EPOCH))
    else:
        raise ConfigError(f"OPTIM.LR_SCHEDULER must be one of {SCHEDULERS}, got {name!r}")

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise ConfigError(f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', got {optim_cfg.WARMUP_TYPE!r}")
    return scheduler
