"""Batch tensors of the data loaders (pretraining and fine-tuning)."""

from __future__ import annotations

import math

import torch
from torch.utils.data import get_worker_info


def empty_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 batch tensor; in a loader worker, in shared memory from the start.

    A worker sends its batch to the training process through shared memory: writing the windows there
    directly saves the copy that sending an ordinary tensor makes (``default_collate`` does the same).

    Parameters
    ----------
    shape : tuple of int
        E.g. ``(n_windows, n_chans, n_times)``.

    Returns
    -------
    torch.Tensor
        float32, of ``shape``, on the CPU; its values are undefined until written.
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    elem = torch.empty(0, dtype=torch.float32)
    storage = elem._typed_storage()._new_shared(math.prod(shape), device="cpu")
    return elem.new(storage).resize_(*shape)
