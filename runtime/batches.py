"""Batch tensors of the data loaders (pretraining and fine-tuning) and the loader that reuses them.

A loader worker hands each batch to the training process through shared memory. Our datasets read a whole
micro-batch at once (``__getitems__``) straight into a shared-memory tensor (:func:`empty_batch`), so the
batch is never copied on its way. A fresh shared-memory tensor per batch is still expensive: creating the
shared file and the kernel's zeroing of its new pages took 15 of the 18 ms of writing a batch of 64 windows
of 16 x 4000 float32 (16 MB) here, more than reading them from HDF5 shards. :class:`BatchLoader` therefore
gives each worker a few shared tensors (:class:`BatchPool`) that it writes batch after batch, each once
the training process has let go of the previous batch in it.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate, get_worker_info

__all__ = ["BatchLoader", "BatchPool", "collate_batches", "empty_batch"]

_POOL: BatchPool | None = None  # in a worker process of a BatchLoader: its loader's pool


def _new_shared(shape: tuple[int, ...]) -> torch.Tensor:
    elem = torch.empty(0, dtype=torch.float32)
    storage = elem._typed_storage()._new_shared(math.prod(shape), device="cpu")
    return elem.new(storage).resize_(*shape)


def empty_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 batch tensor; in a loader worker, in shared memory from the start.

    A worker sends its batch to the training process through shared memory: writing the windows there
    directly saves the copy that sending an ordinary tensor makes (``default_collate`` does the same). In
    a worker of a :class:`BatchLoader`, the tensor is one of the worker's reusable shared tensors when one
    is free (:meth:`BatchPool.empty`).

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
    if _POOL is not None:
        return _POOL.empty(shape)
    return _new_shared(shape)


def collate_batches(batch):
    """The loaders' ``collate_fn``: a batch read whole (a tuple from ``__getitems__``) as it is, else stacked.

    ``DataLoader`` hands ``collate_fn`` what the dataset's ``__getitems__`` returned (our datasets: a tuple
    of batch tensors) or, for datasets without it, a list of items (``default_collate``). In a worker of a
    :class:`BatchLoader` it returns ``(batch, slot)``, the pool slot of the batch's first tensor (-1:
    none), which the loader takes off again in the training process (:meth:`BatchLoader.__iter__`).
    """
    if not isinstance(batch, tuple):
        return default_collate(batch) if _POOL is None else (default_collate(batch), -1)
    return batch if _POOL is None else (batch, _POOL.slot_of(batch[0]))


class BatchPool:
    """Reusable shared-memory batch tensors of a loader's worker processes.

    Each worker owns ``slots_per_worker`` slots. :meth:`empty` (in the worker) returns the tensor of a free
    slot, marks it busy and remembers it; the batch then carries its slot to the training process, which
    frees the slot when the last tensor viewing the batch's memory is freed there (:meth:`release_when_freed`:
    ``weakref.finalize`` on the storage) or at once if the batch was copied on its way (``pin_memory``). The
    flags live in a shared-memory array made before the workers start. When no slot is free (the training
    process keeps its batches, e.g. ``list(loader)``), :meth:`empty` returns a fresh shared tensor, as
    without a pool: a batch is never written while the training process can still see it.

    Parameters
    ----------
    num_workers : int
        The loader's worker processes.
    slots_per_worker : int
        Reusable tensors per worker: the batches a worker may have in flight (the loader's
        ``prefetch_factor``), plus the one the training process works on, plus one, plus those a left epoch
        may hold until the next (:meth:`free_unheld`).
    """

    def __init__(self, num_workers: int, slots_per_worker: int) -> None:
        self.slots_per_worker = int(slots_per_worker)
        self.free = torch.ones(int(num_workers) * self.slots_per_worker, dtype=torch.uint8).share_memory_()
        self._tensors: dict[int, torch.Tensor] = {}  # in a worker: its slots' tensors
        self._handed: dict[int, int] = {}  # in a worker: data pointer of a handed-out tensor -> its slot
        self._held: set[int] = set()  # in the training process: slots of the batches it still uses

    def install(self, worker_id: int) -> None:
        """``worker_init_fn`` of the loader: :func:`empty_batch` in this worker draws from this pool."""
        global _POOL
        _POOL = self

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 shared tensor of ``shape``: a free slot's of this worker, else a fresh one."""
        free = self.free.numpy()
        first = get_worker_info().id * self.slots_per_worker
        for slot in range(first, first + self.slots_per_worker):
            if free[slot]:
                tensor = self._tensors.get(slot)
                if tensor is None or tuple(tensor.shape) != tuple(shape):
                    tensor = self._tensors[slot] = _new_shared(tuple(shape))
                free[slot] = 0
                self._handed[tensor.data_ptr()] = slot
                return tensor
        return _new_shared(tuple(shape))

    def slot_of(self, tensor: torch.Tensor) -> int:
        """The slot :meth:`empty` handed ``tensor`` out from (forgotten then), or -1."""
        return self._handed.pop(tensor.data_ptr(), -1)

    def release_when_freed(self, tensor: torch.Tensor, slot: int) -> None:
        """In the training process: free ``slot`` (>= 0) once no tensor uses the memory of ``tensor``."""
        if not tensor.is_shared():  # copied on its way (pin_memory): the worker's tensor is unused already
            self.free[slot] = 1
        else:
            self._held.add(slot)
            weakref.finalize(tensor.untyped_storage(), self._release, slot)

    def free_unheld(self) -> None:
        """In the training process: free the busy slots of batches it never received.

        For persistent workers, between epochs, before the loader's reset: a batch in flight then is one of
        the last epoch, which ``DataLoader`` drops unread when the next epoch starts (an epoch left early,
        e.g. the incomplete gradient accumulation at its end); its slot would otherwise stay busy. A worker
        may still start one of those batches after this call (at most ``prefetch_factor``, dropped too):
        their slots stay busy until the next call, hence the loader's ``2 * prefetch_factor + 2`` slots.
        """
        free = self.free.numpy()
        for slot in np.flatnonzero(free == 0).tolist():
            if slot not in self._held:
                free[slot] = 1

    def _release(self, slot: int) -> None:
        self._held.discard(slot)
        self.free[slot] = 1


class BatchLoader(DataLoader):
    """``torch.utils.data.DataLoader`` whose worker processes reuse their shared batch tensors.

    The same arguments, values and order as ``DataLoader`` with :func:`collate_batches`; with
    ``num_workers > 0`` the workers write their batches into the tensors of a :class:`BatchPool`
    (``2 * prefetch_factor + 2`` per worker; a new pool with each new set of workers) instead of fresh shared
    memory per batch. Measured with
    ``scripts/bench_loader.py`` (docs/performance.md).

    Parameters
    ----------
    dataset : Dataset
        Best one whose ``__getitems__`` writes its batch into :func:`empty_batch` (our datasets:
        :class:`pretrain.data.PretrainDataset`, :class:`finetune.data.FinetuneDataset`); others work unpooled.
    num_workers : int
        Worker processes (0: read in this process, no pool).
    prefetch_factor : int | None
        Batches loaded in advance per worker (None with ``num_workers=0``).
    **kwargs
        Further ``DataLoader`` arguments (``batch_size``, ``sampler``, ``pin_memory``, ...); not
        ``collate_fn`` or ``worker_init_fn``, which the loader sets.
    """

    def __init__(
        self, dataset, *, num_workers: int = 0, prefetch_factor: int | None = None, **kwargs
    ) -> None:
        super().__init__(
            dataset,
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            collate_fn=collate_batches,
            **kwargs,
        )
        self.slots_per_worker = 2 * (prefetch_factor or 2) + 2
        self.pool: BatchPool | None = None  # made with the workers, by the first iteration

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        if self.pool is None or not self.persistent_workers:  # new workers: a new pool
            self.pool = BatchPool(self.num_workers, self.slots_per_worker)
            self.worker_init_fn = self.pool.install
        else:  # the same workers: what the last epoch left unread, DataLoader drops on its reset
            self.pool.free_unheld()
        return self._released(super().__iter__(), self.pool)

    @staticmethod
    def _released(batches, pool: BatchPool):
        for batch, slot in batches:
            if slot >= 0:
                pool.release_when_freed(batch[0], slot)
            yield batch
