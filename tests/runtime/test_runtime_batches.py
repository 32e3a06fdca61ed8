"""runtime.batches: loader workers reuse their shared batch tensors, never one still in use."""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from runtime.batches import BatchLoader, empty_batch

N_WINDOWS, BATCH = 40, 2


class _Items(Dataset):
    """Window i is filled with the value i + 1."""

    def __len__(self):
        return N_WINDOWS

    def __getitem__(self, index):
        return torch.full((3, 500), index + 1.0)


class _Windows(_Items):
    """Read a batch at a time, as our datasets; a batch also returns what its tensor held before (0: new)."""

    def __getitems__(self, indices):
        x = empty_batch((len(indices), 3, 500))
        before = x[:, 0, 0].clone()  # fresh shared memory is zeros; a reused tensor holds an earlier batch
        x.numpy()[...] = np.asarray(indices, np.float32)[:, None, None] + 1.0
        return x, before


def _expected(k):
    return np.arange(k * BATCH + 1, (k + 1) * BATCH + 1, dtype=np.float32)[:, None, None] * np.ones((3, 500))


def test_workers_write_their_batches_into_few_reused_tensors():
    loader = BatchLoader(
        _Windows(), batch_size=BATCH, num_workers=2, prefetch_factor=2, persistent_workers=True
    )
    earlier = []
    for _ in range(2):
        for k, (x, before) in enumerate(loader):
            np.testing.assert_array_equal(x.numpy(), _expected(k))
            earlier.append(before.numpy())
    assert len(earlier) == 2 * N_WINDOWS // BATCH
    # Fresh shared memory per batch (before the pool) held zeros each time; now only the slots of each
    # worker start so, and every other batch is written over one the training process had let go of.
    new = [k for k, values in enumerate(earlier) if not values.any()]
    assert len(new) <= 2 * loader.slots_per_worker
    for values in earlier:
        assert not values.any() or (values[1] == values[0] + 1 and values[0] % BATCH == 1)
    del x, before  # the last batch
    assert loader.pool.free.all()  # every batch was let go: every slot is free again


def test_batches_kept_by_the_training_process_are_never_overwritten():
    loader = BatchLoader(_Windows(), batch_size=BATCH, num_workers=1, prefetch_factor=2)
    kept = list(loader)  # every batch held at once: the worker must not write into any of them again
    views = [x[1:] for x, _ in kept]  # a view keeps the memory in use too
    for k, (x, before) in enumerate(kept):
        np.testing.assert_array_equal(x.numpy(), _expected(k))
        assert not before.any()  # each written into new memory: none was free
    del kept
    assert not loader.pool.free.all()  # the views still hold their batches
    for k, (x, _) in enumerate(loader):  # another epoch, the views still held
        np.testing.assert_array_equal(x.numpy(), _expected(k))
    for k, view in enumerate(views):
        np.testing.assert_array_equal(view.numpy(), _expected(k)[1:])
    del views, x
    assert loader.pool.free.all()


def test_epochs_left_early_do_not_leave_slots_busy():
    """Pretraining leaves an epoch before its end (incomplete accumulation): its batches in flight are
    dropped unread by DataLoader, without reaching the training process that frees their slots."""
    loader = BatchLoader(
        _Windows(), batch_size=BATCH, num_workers=1, prefetch_factor=2, persistent_workers=True
    )
    for _ in range(3):
        for k, _batch in enumerate(loader):
            if k == 1:
                break
    del _batch  # the last batch taken
    earlier = [before.numpy() for _, before in loader]  # a whole epoch
    # With the dropped batches' slots left busy, all were by now, and each of the 20 batches was new.
    assert sum(not values.any() for values in earlier) <= loader.slots_per_worker
    # At most prefetch_factor slots of batches the worker started after the epoch was left, until the next.
    assert (loader.pool.free == 0).sum() <= 2


def test_datasets_without_batch_reads_load_as_with_a_data_loader():
    ours = list(BatchLoader(_Items(), batch_size=4, num_workers=1))  # items, stacked by default_collate
    theirs = list(DataLoader(_Items(), batch_size=4, num_workers=1))
    assert len(ours) == len(theirs) == N_WINDOWS // 4
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
