"""Training progress lines that never leave a slow first epoch silent.

Dassl prints a batch line every ``TRAIN.PRINT_FREQ`` batches, which on a slow machine can mean minutes of
silence. These lines come on top: the first batch's cost with an estimate of the epoch and the run, then
one line per epoch (validation and checkpointing included) with its time, mean losses and the ETA of the
training that remains.
"""
from __future__ import annotations

import datetime
import time
from typing import Callable, Mapping


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class EpochProgress:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._batch_started = 0.0
        self._epoch_started: float | None = None
        self._first_batch_seen = False
        self._epoch_seconds: list[float] = []
        self._sums: dict[str, float] = {}
        self._batches = 0

    def start_batch(self) -> None:
        self._batch_started = self.clock()
        if self._epoch_started is None:
            self._epoch_started = self._batch_started

    def end_batch(self, epoch: int, num_batches: int, max_epoch: int, summary: Mapping[str, float]) -> str | None:
        """After each batch: the first batch's line once per run, else nothing (``epoch`` is 0-based)."""
        self._batches += 1
        for name, value in summary.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        if self._first_batch_seen or num_batches == 1:
            self._first_batch_seen = True
            return None
        self._first_batch_seen = True
        seconds = self.clock() - self._batch_started
        epoch_estimate = seconds * num_batches
        epochs_ahead = max_epoch - epoch
        return (f"=> first batch took {seconds:.1f} s: about {_duration(epoch_estimate)} per epoch of {num_batches} "
                f"batches, {_duration(epoch_estimate * epochs_ahead)} for the {epochs_ahead} epoch(s) ahead")

    def end_epoch(self, epoch: int, max_epoch: int) -> str:
        """After each epoch: its time, the mean of each logged loss, and the ETA of the remaining epochs."""
        seconds = self.clock() - (self._epoch_started if self._epoch_started is not None else self.clock())
        self._epoch_seconds.append(seconds)
        batches = max(self._batches, 1)
        means = "; mean " + ", ".join(f"{name} {total / batches:.4f}" for name, total in self._sums.items()) \
            if self._sums else ""
        left = max_epoch - epoch - 1
        per_epoch = sum(self._epoch_seconds) / len(self._epoch_seconds)
        eta = f"ETA {_duration(per_epoch * left)} for {left} more epoch(s)" if left else "training done"
        line = (f"=> epoch {epoch + 1}/{max_epoch} done in {_duration(seconds)} ({self._batches} batches, "
                f"{seconds / batches:.2f} s/batch){means}; {eta}")
        self._epoch_started, self._sums, self._batches = None, {}, 0
        return line
