"""runtime.distributed: single-process context and wrappers (torchrun is tested in tests/pretrain)."""

from __future__ import annotations

import pytest
import torch

from runtime.distributed import (
    DistributedContext,
    all_gather_object,
    all_reduce_sum,
    init_distributed,
    unwrap_model,
)


def test_single_process_context(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistributedContext(
        rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None
    )
    assert ctx.is_main and not ctx.is_distributed
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert all_gather_object({"a": 1}) == [{"a": 1}]


def test_invalid_device():
    with pytest.raises(ValueError, match="'device'.*'auto', 'cuda', 'cpu'.*'tpu'"):
        init_distributed("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_requested_without_cuda():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        init_distributed("cuda")


def test_unwrap_model():
    inner = torch.nn.Linear(2, 2)

    class Compiled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

    assert unwrap_model(inner) is inner
    assert unwrap_model(Compiled(inner)) is inner


def test_no_sync_defers_ddp_reduction_except_on_the_last_micro_step():
    import contextlib

    from runtime.distributed import no_sync

    entered = []

    class FakeDDP(torch.nn.Module):
        @contextlib.contextmanager
        def no_sync(self):
            entered.append(True)
            yield

    with no_sync(FakeDDP(), sync=False):
        pass
    assert entered == [True]
    with no_sync(FakeDDP(), sync=True):  # the last micro-step: gradients are all-reduced
        pass
    assert entered == [True]
    assert isinstance(no_sync(torch.nn.Linear(1, 1), sync=False), contextlib.nullcontext)


def test_unwrap_name_strips_ddp_and_compile_prefixes_in_any_order():
    from runtime.distributed import unwrap_name

    assert unwrap_name("module._orig_mod.blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight"
    assert unwrap_name("_orig_mod.module.head.bias") == "head.bias"
    assert unwrap_name("model.module.norm.weight", ("module.", "model.")) == "norm.weight"
    assert unwrap_name("modules.x") == "modules.x"  # a prefix ends at its dot
