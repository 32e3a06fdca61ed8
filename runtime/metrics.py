"""Training metrics of one epoch summed on the device and read once per logging interval.

:class:`IntervalLog` is the logging loop shared by the pretraining and fine-tuning engines
(:func:`pretrain.engine.train_one_epoch`, :func:`finetune.engine.train_one_epoch`). Every optimiser
step adds its metrics to a device tensor without a host synchronisation; every ``log_every`` steps
(and at the end of the epoch) the window is summed over ranks and read with one ``.tolist()``, the
loss is checked for NaN and infinity, and the means go to the progress bar and to tensorboardX.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from runtime.distributed import all_reduce_sum

__all__ = ["IntervalLog"]


class IntervalLog:
    """Per-step training metrics of one epoch, read every ``log_every`` optimiser steps.

    Parameters
    ----------
    names : sequence of str
        Names of the metrics, in the order of the values given to :meth:`update`; must include
        ``"loss"`` (checked for NaN and infinity).
    device : torch.device
        Where the sums are kept.
    log_every : int
        Optimiser steps between reads.
    world_size : int
        Number of ranks (the means are over ranks).
    global_batch : int
        Windows per optimiser step over all ranks, for ``samples_per_s``.
    progress : tqdm.tqdm
        Progress bar of the epoch: advanced by every step, its postfix set at every read, closed by
        :meth:`finish`.
    log_writer : tensorboardX.SummaryWriter | None
        Receives ``train/<name>`` of every metric, ``train/lr`` and ``train/samples_per_s`` at every
        read (None: no scalars).
    nonfinite_message : callable
        ``nonfinite_message(values, step) -> str``: the message of the :class:`FloatingPointError`
        raised when the mean loss of a window is not finite; ``values`` maps the names to the means
        of the window, ``step`` is the optimiser steps done.
    show_speed : bool
        Whether the progress bar's postfix shows ``sps`` (samples per second) besides the loss and lr.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        device: torch.device,
        log_every: int,
        world_size: int,
        global_batch: int,
        progress,
        log_writer=None,
        nonfinite_message: Callable[[dict, int], str],
        show_speed: bool = False,
    ) -> None:
        self.names = tuple(names)
        self.log_every = log_every
        self.world_size = world_size
        self.global_batch = global_batch
        self.progress = progress
        self.log_writer = log_writer
        self.nonfinite_message = nonfinite_message
        self.show_speed = show_speed
        self._window = torch.zeros(len(self.names), device=device)  # sums since the last read
        self._total = torch.zeros(len(self.names), device=device)  # sums over the epoch
        self._window_steps = 0
        self.n_steps = 0
        self.step = 0
        self.lr = math.nan
        self._epoch_start = self._window_start = time.perf_counter()

    def update(self, values: torch.Tensor, *, step: int, lr: float) -> None:
        """Add one optimiser step's metrics; read the window (one host sync) every ``log_every`` steps.

        Parameters
        ----------
        values : Tensor, shape (len(names),)
            This rank's metrics of the step, on the device (not read here).
        step : int
            Optimiser steps done, this one included (the x axis of the scalars).
        lr : float
            Learning rate of the step.

        Raises
        ------
        FloatingPointError
            If this step ends a window whose mean loss is NaN or infinite.
        """
        self._window += values
        self._window_steps += 1
        self.n_steps += 1
        self.step, self.lr = step, lr
        self.progress.update(1)
        if self._window_steps == self.log_every:
            self._read_window()

    def _read_window(self) -> None:
        steps = self._window_steps
        self._total += self._window
        means = (all_reduce_sum(self._window.clone()) / (steps * self.world_size)).tolist()  # one host sync
        now = time.perf_counter()
        samples_per_s = steps * self.global_batch / (now - self._window_start)
        values = dict(zip(self.names, means, strict=True))
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(self.nonfinite_message(values, self.step))
        postfix = {"loss": f"{values['loss']:.4f}", "lr": f"{self.lr:.2e}"}
        if self.show_speed:
            postfix["sps"] = f"{samples_per_s:.0f}"
        self.progress.set_postfix(**postfix)
        if self.log_writer is not None:
            for name, value in values.items():
                self.log_writer.add_scalar(f"train/{name}", value, self.step)
            self.log_writer.add_scalar("train/lr", self.lr, self.step)
            self.log_writer.add_scalar("train/samples_per_s", samples_per_s, self.step)
        self._window.zero_()
        self._window_steps = 0
        self._window_start = now

    def finish(self) -> dict:
        """Read the last window (if not empty), close the progress bar and return the epoch's metrics.

        Returns
        -------
        metrics : dict
            Each metric's mean over the epoch's steps and over ranks, then ``lr`` (of the last step),
            ``samples_per_s`` (over the epoch), ``n_steps`` (steps updated) and ``step`` (of the last
            step).

        Raises
        ------
        FloatingPointError
            If the mean loss of the last window is NaN or infinite.
        """
        if self._window_steps:
            self._read_window()
        self.progress.close()
        means = (all_reduce_sum(self._total) / (self.n_steps * self.world_size)).tolist()
        metrics = dict(zip(self.names, means, strict=True))
        metrics.update(
            lr=self.lr,
            samples_per_s=self.n_steps * self.global_batch / (time.perf_counter() - self._epoch_start),
            n_steps=self.n_steps,
            step=self.step,
        )
        return metrics
