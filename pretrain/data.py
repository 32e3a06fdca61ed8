"""Pretraining data: windows and their MFDE weights, read lazily through the preprocessing manifest.

A preprocessing output folder holds ``manifest.csv`` and one pickle per window, or HDF5 shards of
windows (:mod:`preprocess.segments`). :class:`PretrainDataset` reads a micro-batch at a time
(``__getitems__``, :meth:`preprocess.adapt.WindowAdapter.read_batch`: pickles with the restricted
unpickler, shards copied straight from their memory map), adapts it to the model family's input contract
(:class:`preprocess.adapt.WindowAdapter`: the official per-channel 95th-percentile scaling for
M4CEA, one division with the percentiles that shards store; 200 Hz and uV / 100 for LaBraM), and returns
float32 tensors of the whole micro-batch; :func:`build_pretrain_loader` wraps it in a
``DistributedSampler`` (also in a single process, so that one code path serves both) and a
``DataLoader`` with worker processes (:class:`runtime.batches.BatchLoader`: they reuse their shared batch
tensors). The windows of a micro-batch, their order and their values are
those of reading them one by one (``dataset[i]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from preprocess.adapt import adapter_for_windows
from preprocess.segments import read_manifest, window_name
from runtime.batches import BatchLoader, empty_batch
from runtime.config import UsageError

__all__ = ["PretrainDataset", "build_pretrain_loader"]


class PretrainDataset(Dataset):
    """Windows of a preprocessing output folder, adapted to the model's input contract, with their MFDE.

    Parameters
    ----------
    root : path-like
        Preprocessing output folder with ``manifest.csv``.
    contract : models.contract.InputContract
        The model's input contract (``models.get_input_contract(cfg["model"])``): rate, patching and
        scaling the windows are adapted to (:class:`preprocess.adapt.WindowAdapter`).
    n_chans : int
        Channels the model expects (16 for the double banana); the stored windows must have as many.
    n_times : int | None
        Samples per window the model expects after adaptation (4000 = 4 s at 1000 Hz for M4CEA), or None
        when any length the contract accepts works (LaBraM).
    n_tokens : int | None
        MFDE weights per window the model uses, ``n_chans * n_patches`` (M4CEA: 320). Stored weights
        (one per stored 200-sample patch) that are ``k`` times as many are summed in groups of ``k``
        consecutive patches of a channel (LaBraM's 1-s patch holds five 0.2-s patches of M4CEA). None:
        the stored weights as they are.

    Raises
    ------
    FileNotFoundError
        If ``root`` has no ``manifest.csv``, or the first listed pickle is missing.
    ValueError
        If the manifest lists no window, or its ``n_chans``/``n_times``/``sfreq`` columns or the first
        window disagree with the model (checked once, up front, before training starts).

    Notes
    -----
    ``__getitem__`` returns ``(x, weights)``: ``x`` float32 tensor (n_chans, adapted n_times): for M4CEA
    each channel divided by the 95th percentile of its absolute value + 1e-8 (dimensionless; official
    loader), for LaBraM resampled to 200 Hz and in uV / 100; ``weights`` float32 tensor (n_tokens,), the
    window's MFDE (sums to 1). Each item's stored shape is checked again when it is read (a cheap tuple
    comparison in the loader worker), and an inconsistent file raises a ``ValueError`` that names it.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        contract,
        n_chans: int,
        n_times: int | None = None,
        n_tokens: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Data folder not found: {self.root} (--data must be a preprocessing output folder)."
            )
        self.rows = read_manifest(self.root)
        if not self.rows:
            raise UsageError(f"The manifest {self.root / 'manifest.csv'} lists no window.")
        self.n_chans = int(n_chans)
        self.n_tokens = None if n_tokens is None else int(n_tokens)
        self.adapter = adapter_for_windows(contract, self.root, self.rows, self.n_chans, n_times)
        self.n_times = self.adapter.n_times
        self[0]  # read the first window: its shape and weights must fit the model

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, weights = self.__getitems__([index])
        return x[0], weights[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read and adapt the windows ``indices`` as one batch: ``x`` (batch, n_chans, n_times), weights."""
        rows = [self.rows[i] for i in indices]
        x = empty_batch((len(rows), self.n_chans, self.n_times))
        mfde = self.adapter.read_batch(self.root, rows, x.numpy())
        return x, torch.from_numpy(self._weights(rows, mfde))

    def _weights(self, rows: list[dict], mfde: list[np.ndarray]) -> np.ndarray:
        """The batch's MFDE weights as float32 (batch, n_tokens), checked together; a bad one is named."""
        sizes = [np.size(values) for values in mfde]
        n_tokens = self.n_tokens or sizes[0]
        group = sizes[0] // n_tokens if sizes[0] % n_tokens == 0 else 0
        if self.n_tokens is None and group != 1:  # the stored weights as they are: one size
            group = 0
        bad = np.array([size != n_tokens * group for size in sizes]) | (group == 0)
        if not bad.any():
            values = np.asarray(mfde, dtype=np.float32).reshape(len(rows), -1)
            bad = ~(np.isfinite(values).all(axis=-1) & (values >= 0).all(axis=-1))
        if bad.any():
            position = int(np.argmax(bad))
            raise UsageError(
                f"The MFDE weights of {self.root / window_name(rows[position])} must be {n_tokens} "
                "finite non-negative values (n_chans * n_patches, or a whole multiple of it), but got "
                f"shape {np.shape(mfde[position])}."
            )
        return values if group == 1 else values.reshape(len(rows), n_tokens, group).sum(axis=-1)


def build_pretrain_loader(
    dataset: Dataset,
    *,
    micro_batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> tuple[BatchLoader, DistributedSampler]:
    """Build the training loader: this rank's shuffled share of the windows, in micro-batches.

    Parameters
    ----------
    dataset : Dataset
        Usually a :class:`PretrainDataset`.
    micro_batch_size : int
        Windows per device step on this rank.
    rank, world_size : int
        This process's place in the run (1 process: 0, 1).
    seed : int
        Shuffling seed; the order of epoch ``e`` is a function of ``(seed, e)`` only, set with
        ``sampler.set_epoch(e)`` before each epoch.
    num_workers : int
        Loader worker processes (0 reads in the main process).
    pin_memory : bool
        Page-locked host memory for faster copies to the GPU (use on CUDA only).
    prefetch_factor : int
        Micro-batches loaded in advance per worker (ignored with ``num_workers=0``).

    Returns
    -------
    loader : runtime.batches.BatchLoader
        Yields ``(x, weights)`` of shapes (micro_batch_size, n_chans, n_times) and
        (micro_batch_size, n_tokens); incomplete micro-batches are dropped.
    sampler : DistributedSampler
        Call ``sampler.set_epoch(epoch)`` at the start of every epoch.

    Notes
    -----
    ``DistributedSampler`` shuffles all windows with one permutation shared by the ranks, drops the
    tail that does not divide evenly between ranks, and gives rank ``r`` the positions
    ``r, r + world_size, ...`` of the permutation. The training engine relies on this interleaving
    to give every window the same masking noise whatever the number of ranks and micro-batches.
    """
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    loader = BatchLoader(
        dataset,
        batch_size=micro_batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
    return loader, sampler
