"""Fine-tuning data: labelled windows read lazily through the manifest, and their loaders.

:class:`FinetuneDataset` serves the windows of one split (manifest rows), a micro-batch at a time
(``__getitems__``): read from pickles (restricted unpickler) or HDF5 shards
(:meth:`preprocess.adapt.WindowAdapter.read_batch`), adapted to the model family's input contract
(:class:`preprocess.adapt.WindowAdapter`: M4CEA's official per-channel scaling, one division with the
percentiles that shards store; LaBraM's 200 Hz and uV / 100), and returned with their class indices
(:func:`tasks.encode_labels`) and their positions in the split, so that predictions gathered
from any number of ranks map back to manifest rows. A micro-batch holds the values of its windows read
one by one (``dataset[i]``).

Loaders: :func:`build_train_loader` shuffles with a ``DistributedSampler`` (one code path for one
process and for DDP) or draws classes equally often with :class:`BalancedSampler`; both are seeded
and re-drawn per epoch by ``sampler.set_epoch(epoch)``. :func:`build_eval_loader` reads every window
once, in order, sharded over ranks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler, WeightedRandomSampler

from models import get_input_contract
from preprocess.adapt import WindowAdapter, adapter_for_windows
from runtime.batches import BatchLoader, empty_batch
from runtime.checks import check_choice
from runtime.config import UsageError
from runtime.seeding import derive_seed
from tasks import Task, encode_label_probs, encode_labels

__all__ = [
    "SAMPLERS",
    "BalancedSampler",
    "FinetuneDataset",
    "balanced_window_weights",
    "build_eval_loader",
    "build_train_loader",
    "check_window_shapes",
]

#: Allowed values of ``data.sampler``.
SAMPLERS = ("shuffle", "balanced")


def check_window_shapes(
    root: str | os.PathLike, rows: Sequence[Mapping], n_chans: int, n_times: int | None, contract=None
) -> WindowAdapter:
    """Check that the manifest's windows fit the model, before any training; return their adapter.

    Reads the ``n_chans``, ``n_times`` and ``sfreq`` columns of every row and the first window
    (:func:`preprocess.adapt.adapter_for_windows`).

    Parameters
    ----------
    root : path-like
        Preprocessing output folder (the rows' ``path`` is relative to it).
    rows : sequence of dict
        Manifest rows.
    n_chans : int
        Channels the model takes (16 for the double banana).
    n_times : int | None
        Samples the model takes after adaptation (4000 for M4CEA), None for any length the contract
        accepts (LaBraM).
    contract : models.contract.InputContract | None
        The model's input contract (``models.get_input_contract(cfg["model"])``); None: M4CEA's
        (per-channel scaling of exactly ``n_times`` samples at 1000 Hz).

    Returns
    -------
    adapter : preprocess.adapt.WindowAdapter

    Raises
    ------
    ValueError
        If a row or the first window does not fit; the message names a file, the shapes found and the
        model's.
    FileNotFoundError
        If the first window's file is missing.
    """
    if contract is None:
        contract = get_input_contract({"name": "m4cea_base", "n_patches": 1, "patch_samples": n_times})
    return adapter_for_windows(contract, root, rows, n_chans, n_times)


class FinetuneDataset(Dataset):
    """The labelled windows of one split, adapted to the model, with class indices and positions.

    Parameters
    ----------
    root : path-like
        Preprocessing output folder with ``manifest.csv`` and the pickles.
    rows : sequence of dict
        The split's manifest rows (:func:`preprocess.segments.read_manifest`, then
        :meth:`finetune.splits.Split.rows`).
    task : Task
        Gives the classes: ``label`` -> index.
    n_chans : int
        Channels the model takes.
    n_times : int | None
        Samples the model takes after adaptation (M4CEA: 4000), None for any length the contract accepts
        (LaBraM); checked up front (:func:`check_window_shapes`) and per item.
    contract : models.contract.InputContract | None
        The model's input contract (``models.get_input_contract(cfg["model"])``); None: M4CEA's.
    adapter : preprocess.adapt.WindowAdapter | None
        A ready adapter (a braindecode model's, :mod:`models.zoo`), used instead of one built from
        ``contract``; ``n_times`` is then the stored length.

    Attributes
    ----------
    rows : list of dict
    labels : ndarray of int64, shape (n_windows,)
        Class index of each window.
    label_probs : ndarray of float32, shape (n_windows, n_classes) | None
        The true class distribution of each window (:func:`tasks.encode_label_probs`) when a row of the
        split carries a soft label (``label_probs``, e.g. HMS expert votes), else None.
    adapter : preprocess.adapt.WindowAdapter
        Resamples and scales every window (:mod:`preprocess.adapt`).
    label_probs : ndarray of float32, shape (n_windows, n_classes) | None
        The true class distribution of each window (:func:`tasks.encode_label_probs`) when a row of the
        split carries a soft label (``label_probs``, e.g. HMS expert votes), else None.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder or the first window is missing.
    ValueError
        If ``rows`` is empty, a label is missing or not one of ``task.classes`` (the message names the
        allowed values), or the windows do not fit the model.

    Notes
    -----
    ``dataset[i]`` returns ``(x, label, i)``: ``x`` float32 tensor (n_chans, n_times), each channel
    divided by the 95th percentile of its absolute value + 1e-8 (dimensionless; official loader);
    ``label`` int64 tensor () (float32 tensor (n_classes,), the distribution, when :attr:`label_probs`
    is set: the engine then trains with the KL divergence); ``i`` int64 tensor (), the position in ``rows``.
    ``dataset[i]`` returns ``(x, label, i)``: ``x`` float32 tensor (n_chans, adapted n_times): M4CEA:
    each channel divided by the 95th percentile of its absolute value + 1e-8 (dimensionless; official
    loader); LaBraM: resampled to 200 Hz, in uV / 100. ``label`` int64 tensor () (float32 tensor
    (n_classes,), the distribution, when :attr:`label_probs` is set: the engine then trains with the KL
    divergence); ``i`` int64 tensor (), the position in ``rows``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        rows: Sequence[Mapping],
        task: Task,
        n_chans: int,
        n_times: int | None,
        contract=None,
        *,
        adapter: WindowAdapter | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Data folder not found: {self.root} (--data must be a labelled preprocessing output folder)."
            )
        self.rows = list(rows)
        if not self.rows:
            raise UsageError(f"Invalid value for the 'rows' parameter: no window of {self.root} to read.")
        self.task = task
        self.labels = encode_labels(self.rows, task)
        soft = any(row.get("label_probs") for row in self.rows)
        self.label_probs = encode_label_probs(self.rows, task).astype(np.float32) if soft else None
        self.n_chans = int(n_chans)
        if adapter is None:
            self.adapter = check_window_shapes(self.root, self.rows, self.n_chans, n_times, contract)
        else:  # a braindecode model's adapter (models.zoo), checked when built; each item is checked below
            self.adapter = adapter
        self.n_times = self.adapter.n_times

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, target, position = self.__getitems__([index])
        return x[0], target[0], position[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read and adapt the windows ``indices`` as one batch (the loaders' micro-batch).

        Returns ``(x, targets, positions)`` of shapes (batch, n_chans, n_times), (batch,) or
        (batch, n_classes), (batch,): the items of ``dataset[i]`` stacked, with the same values.
        """
        rows = [self.rows[i] for i in indices]
        x = empty_batch((len(rows), self.n_chans, self.n_times))
        self.adapter.read_batch(self.root, rows, x.numpy())
        positions = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if self.label_probs is not None:
            target = torch.from_numpy(self.label_probs[positions.numpy()])
        else:
            target = torch.from_numpy(self.labels[positions.numpy()].astype(np.int64))
        return x, target, positions


def balanced_window_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Sampling weight of each window so that every present class is drawn equally often.

    Parameters
    ----------
    labels : ndarray of int, shape (n_windows,)
    n_classes : int

    Returns
    -------
    weights : ndarray of float64, shape (n_windows,)
        ``1 / (number of windows of the window's class)``; they sum to the number of classes present.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    return 1.0 / counts[labels]


class BalancedSampler(Sampler):
    """Windows drawn with replacement, each class equally often in expectation, sharded over ranks.

    Every epoch draws ``total = ceil(n_windows / world_size) * world_size`` windows with
    :class:`torch.utils.data.WeightedRandomSampler` (weights :func:`balanced_window_weights`) from a
    generator seeded by ``(seed, epoch)``; rank ``r`` takes positions ``r, r + world_size, ...``. The
    draw is the same on every rank, so the ranks share one epoch's sample.

    Parameters
    ----------
    labels : ndarray of int, shape (n_windows,)
    n_classes : int
    rank, world_size : int
    seed : int
        With the epoch (:meth:`set_epoch`), determines the draw.
    """

    def __init__(
        self, labels: np.ndarray, n_classes: int, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        self.weights = torch.as_tensor(balanced_window_weights(labels, n_classes), dtype=torch.float64)
        self.rank, self.world_size, self.seed = int(rank), int(world_size), int(seed)
        self.total = math.ceil(len(self.weights) / self.world_size) * self.world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw another sample for ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "balanced", self.epoch))
        drawn = list(WeightedRandomSampler(self.weights, self.total, replacement=True, generator=generator))
        return iter(drawn[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.total // self.world_size


def _loader(
    dataset, sampler, batch_size, drop_last, seed, num_workers, pin_memory, prefetch_factor, persistent
):
    return BatchLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=persistent and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        # Worker seeds from their own generator: the global RNG (drop-path) does not depend on num_workers.
        generator=torch.Generator().manual_seed(derive_seed(seed, "loader")),
    )


def build_train_loader(
    dataset: FinetuneDataset,
    *,
    micro_batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    sampler: str = "shuffle",
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> tuple[BatchLoader, Sampler]:
    """This rank's training micro-batches, shuffled (or class-balanced), incomplete ones dropped.

    Parameters
    ----------
    dataset : FinetuneDataset
        The training split.
    micro_batch_size : int
        Windows per device step on this rank.
    rank, world_size : int
        This process's place in the run (one process: 0, 1).
    seed : int
        Training seed; epoch ``e``'s order is a function of ``(seed, e)`` only.
    sampler : {"shuffle", "balanced"}
        ``"shuffle"``: every window once per epoch (``DistributedSampler``, ``drop_last=True``: the
        windows that do not divide evenly between ranks are left out, a different few each epoch).
        ``"balanced"``: :class:`BalancedSampler`.
    num_workers, pin_memory, prefetch_factor
        As for :class:`torch.utils.data.DataLoader` (``prefetch_factor`` only with workers).

    Returns
    -------
    loader : runtime.batches.BatchLoader
        Yields ``(x, labels, positions)`` of shapes (micro_batch_size, n_chans, n_times),
        (micro_batch_size,), (micro_batch_size,).
    sampler : DistributedSampler | BalancedSampler
        Call ``sampler.set_epoch(epoch)`` before every epoch.

    Raises
    ------
    ValueError
        If ``sampler`` is not allowed.
    """
    check_choice("data.sampler", sampler, SAMPLERS)
    if sampler == "balanced":
        chosen = BalancedSampler(dataset.labels, dataset.task.n_classes, rank, world_size, seed)
    else:
        chosen = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
    loader = _loader(
        dataset,
        chosen,
        micro_batch_size,
        True,
        seed,
        num_workers,
        pin_memory,
        prefetch_factor,
        persistent=True,
    )
    return loader, chosen


def build_eval_loader(
    dataset: FinetuneDataset,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
    persistent: bool = False,
) -> BatchLoader:
    """Every window of a split once, in order, sharded over ranks (for validation and test).

    ``DistributedSampler(shuffle=False, drop_last=False)`` pads the last ranks with repeated windows so
    that every rank has as many; :func:`finetune.engine.evaluate` removes the repeats by position.

    Returns
    -------
    loader : runtime.batches.BatchLoader
        Yields ``(x, labels, positions)``; the last batch may be smaller.
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
    return _loader(
        dataset, sampler, batch_size, False, 0, num_workers, pin_memory, prefetch_factor, persistent
    )
