"""Learning rate per epoch equals Dassl's documented semantics, and scheduler state survives weights_only."""
from __future__ import annotations

import io
import math

import pytest
import torch
from yacs.config import CfgNode as CN

from trainers.engine.schedulers import build_lr_scheduler


def optim_cfg(**overrides) -> CN:
    cfg = CN(dict(LR_SCHEDULER="cosine", STEPSIZE=(-1,), GAMMA=0.1, MAX_EPOCH=10, WARMUP_EPOCH=2,
                  WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5, WARMUP_MIN_LR=1e-5, WARMUP_RECOUNT=True))
    cfg.merge_from_other_cfg(CN(overrides)) if overrides else None
    return cfg


def lrs_per_epoch(cfg: CN, base_lr: float = 0.01, epochs: int | None = None) -> list[float]:
    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = build_lr_scheduler(optim, cfg)
    out = []
    for _ in range(epochs or cfg.MAX_EPOCH):
        out.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()  # Dassl steps once per epoch, after the last batch
    return out


def cosine(base: float, k: int, t_max: int) -> float:
    return base * (1 + math.cos(math.pi * k / t_max)) / 2


def test_constant_warmup_then_cosine_with_recount():
    lrs = lrs_per_epoch(optim_cfg())
    assert lrs[:2] == pytest.approx([1e-5, 1e-5])
    assert lrs[2] == pytest.approx(0.01)
    assert lrs[2:] == pytest.approx([cosine(0.01, k, 10) for k in range(8)])


def test_linear_warmup():
    lrs = lrs_per_epoch(optim_cfg(WARMUP_TYPE="linear", WARMUP_EPOCH=4), epochs=6)
    assert lrs == pytest.approx([1e-5, 0.0025, 0.005, 0.0075, 0.01, cosine(0.01, 1, 10)])


def test_without_recount_successor_continues_from_warmup_epoch():
    lrs = lrs_per_epoch(optim_cfg(WARMUP_RECOUNT=False))
    assert lrs[:3] == pytest.approx([1e-5, 1e-5, 0.01])
    # torch's cosine steps recursively, lr_e = lr_{e-1} (1+cos(pi e/T)) / (1+cos(pi (e-1)/T)), and here starts
    # from the base LR at e = W: the schedule keeps the cosine's shape, shifted by W epochs (Dassl's behaviour).
    expected, lr = [], 0.01
    for e in range(3, 10):
        lr *= (1 + math.cos(math.pi * e / 10)) / (1 + math.cos(math.pi * (e - 1) / 10))
        expected.append(lr)
    assert lrs[3:] == pytest.approx(expected)


def test_no_warmup_cosine_and_steps():
    assert lrs_per_epoch(optim_cfg(WARMUP_EPOCH=0)) == pytest.approx([cosine(0.01, k, 10) for k in range(10)])
    assert lrs_per_epoch(optim_cfg(WARMUP_EPOCH=0, LR_SCHEDULER="single_step", STEPSIZE=(3,)), epochs=7) == \
        pytest.approx([0.01] * 3 + [0.001] * 3 + [0.0001])
    assert lrs_per_epoch(optim_cfg(WARMUP_EPOCH=0, LR_SCHEDULER="multi_step", STEPSIZE=[2, 5]), epochs=6) == \
        pytest.approx([0.01, 0.01, 0.001, 0.001, 0.001, 0.0001])


def test_invalid_names_are_reported():
    with pytest.raises(ValueError, match="LR_SCHEDULER"):
        lrs_per_epoch(optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        lrs_per_epoch(optim_cfg(WARMUP_TYPE="exp"))


def test_state_round_trips_through_weights_only_load():
    cfg = optim_cfg()
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=0.01)
    sched = build_lr_scheduler(optim, cfg)
    for _ in range(4):
        optim.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    optim2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched2 = build_lr_scheduler(optim2, cfg)
    sched2.load_state_dict(state)
    optim2.param_groups[0]["lr"] = optim.param_groups[0]["lr"]
    for _ in range(3):
        optim.step(); sched.step()
        optim2.step(); sched2.step()
        assert optim2.param_groups[0]["lr"] == pytest.approx(optim.param_groups[0]["lr"])
