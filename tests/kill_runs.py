"""Start train.py runs and SIGKILL each at a chosen point: ``python tests/kill_runs.py SPEC.json``.

SPEC is a list of {"argv": [...], "kill": "step" | "save", "epoch": E, "threads": N}. The imports happen
once in this process, which runs no torch op itself; each run is a forked child (a real process, killed
for real), so the driver costs one interpreter start for all runs. Kill points, in epoch E (1-based):
- "step": inside the second training step, after the forward/backward of the first one;
- "save": right after the first file of epoch E's checkpoint is written (between two module saves, or
  between a module and the commit record).
Prints one JSON line: the signal each child died of (9 = SIGKILL).
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def arm(kill: str, epoch: int) -> None:
    import trainers.engine.trainer as engine

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if kill == "step":
        original = engine.CLIPTrainer.forward_backward

        def forward_backward(self, batch):
            if self.epoch + 1 == epoch and self.batch_idx == 1:
                die()
            return original(self, batch)

        engine.CLIPTrainer.forward_backward = forward_backward
    elif kill == "save":
        save = engine.atomic_torch_save

        def atomic_torch_save(obj, path):
            save(obj, path)
            if Path(path).name == f"model.pth.tar-{epoch}":
                die()

        engine.atomic_torch_save = atomic_torch_save
    else:
        raise ValueError(kill)


def main(spec_path: str) -> None:
    import torch

    import datasets  # noqa: F401
    import train
    import trainers  # noqa: F401

    from trainers.bpe import clip_bpe

    # Once here rather than in every child: Dassl's env report (it runs pip) and the BPE vocabulary (pure
    # Python; this process must run no torch op, so that the forked children may use OpenMP threads).
    train.collect_env_info()
    clip_bpe()
    signals = []
    for run in json.loads(Path(spec_path).read_text()):
        pid = os.fork()
        if pid == 0:
            torch.set_num_threads(run["threads"])
            arm(run["kill"], run["epoch"])
            train.run(run["argv"])
            os._exit(0)  # not killed: the kill point was never reached
        _, status = os.waitpid(pid, 0)
        signals.append(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status))
    print(json.dumps(signals))


if __name__ == "__main__":
    main(sys.argv[1])
