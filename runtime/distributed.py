"""One distributed-setup helper: a ``torchrun`` environment or a single process, same code path.

Under ``torchrun`` (``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set, one node or several) the
process group is initialised from the environment, NCCL on GPUs and gloo on CPU, and each process
takes the GPU ``cuda:LOCAL_RANK``. Without those variables the run is a single process (rank 0 of
1) and no process group is created; the collective helpers below then return their input.
Nothing here reads or sets ``CUDA_VISIBLE_DEVICES``.

After nanoGPT's ``train.py`` (Karpathy, github.com/karpathy/nanoGPT).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from runtime.config import UsageError

__all__ = [
    "DistributedContext",
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "no_sync",
    "unwrap_model",
    "unwrap_name",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run.

    Attributes
    ----------
    rank : int
        Global rank, 0 in a single process.
    local_rank : int
        Rank on this node (selects the GPU).
    world_size : int
        Number of processes, 1 in a single process.
    device : torch.device
        ``cuda:LOCAL_RANK`` or ``cpu``.
    backend : str | None
        ``"nccl"``, ``"gloo"``, or None without a process group.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_distributed(self) -> bool:
        """True when a process group is in use."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files and logs."""
        return self.rank == 0


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise UsageError(
            f"Invalid value for the environment variable {name}: expected an integer, but got {value!r}."
        ) from None


def init_distributed(device: str = "auto") -> DistributedContext:
    """Initialise the process group when launched by ``torchrun``, else describe a single process.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cuda"`` or ``"cpu"``.

    Returns
    -------
    ctx : DistributedContext

    Raises
    ------
    ValueError
        If ``device`` is not one of the allowed values, or the torchrun variables are not integers.
    RuntimeError
        If ``device="cuda"`` but CUDA is not available, or a process's ``LOCAL_RANK`` has no GPU.
    """
    if device not in ("auto", "cuda", "cpu"):
        raise UsageError(
            "Invalid value for the 'device' parameter. Allowed values are 'auto', 'cuda', 'cpu', "
            f"but got {device!r} instead."
        )
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but CUDA is not available on this machine.")

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext(device=torch.device("cuda") if use_cuda else torch.device("cpu"))

    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: "
                "start at most one process per GPU (torchrun --nproc_per_node)."
            )
        run_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(run_device)
        backend = "nccl"
    else:
        run_device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        init_kwargs = {"backend": backend, "rank": rank, "world_size": world_size}
        if use_cuda:
            init_kwargs["device_id"] = run_device
        dist.init_process_group(**init_kwargs)
    return DistributedContext(
        rank=rank, local_rank=local_rank, world_size=world_size, device=run_device, backend=backend
    )


def cleanup_distributed() -> None:
    """Destroy the process group if one was created (call once at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it; the identity in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list:
    """Gather one picklable object from every rank, in rank order (``[obj]`` in a single process)."""
    if dist.is_available() and dist.is_initialized():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def no_sync(model: torch.nn.Module, sync: bool):
    """DDP's ``no_sync()`` context while gradients must not be all-reduced yet, else a no-op context.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model, possibly in ``DistributedDataParallel`` (the only wrapper with ``no_sync``).
    sync : bool
        True on the last micro-step of a gradient accumulation: its backward all-reduces the gradients.

    Returns
    -------
    context : contextlib.AbstractContextManager
        ``model.no_sync()`` when ``sync`` is False and the model has it, else ``contextlib.nullcontext()``.

    References
    ----------
    nanoGPT's ``train.py`` (Karpathy): gradients are synchronised on the last micro-step only.
    """
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Return the plain module inside ``DistributedDataParallel`` and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


#: Name prefixes of the wrappers :func:`unwrap_model` removes: ``DistributedDataParallel``, ``torch.compile``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_name(name: str, prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> str:
    """A parameter or state-dict name without the wrapper prefixes it starts with (any order, repeated).

    Parameters
    ----------
    name : str
        E.g. ``"module._orig_mod.blocks.0.attn.qkv.weight"``.
    prefixes : tuple of str
        The prefixes to strip, each ending with its first dot (default: DDP's ``module.`` and
        ``torch.compile``'s ``_orig_mod.``).

    Returns
    -------
    name : str
        E.g. ``"blocks.0.attn.qkv.weight"``.
    """
    while name.startswith(prefixes):
        name = name.split(".", 1)[1]
    return name
