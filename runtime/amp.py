"""Mixed precision: the one table of the ``amp`` config values and their autocast dtypes."""

from __future__ import annotations

import torch

__all__ = ["AMP_DTYPES", "amp_dtype"]

#: ``runtime.amp`` / ``amp`` config value -> autocast dtype (None: no autocast, float32).
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` config value (``"bf16"``, ``"fp16"``, ``"fp32"`` -> None).

    Raises
    ------
    ValueError
        If ``amp`` is not a key of :data:`AMP_DTYPES`.
    """
    if amp not in AMP_DTYPES:
        raise ValueError(
            f"Invalid value for the 'amp' parameter. Allowed values are {list(AMP_DTYPES)}, "
            f"but got {amp!r} instead."
        )
    return AMP_DTYPES[amp]
