"""Input checks with messages that name the parameter and echo the value (MNE's wording)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.config import UsageError

__all__ = ["check_choice", "check_positive"]


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``.

    Raises
    ------
    ValueError
        "Invalid value for the 'name' parameter. Allowed values are ..., but got ... instead."
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise UsageError(
            f"Invalid value for the '{name}' parameter. Allowed values are "
            f"{', '.join(repr(a) for a in allowed)}, but got {value!r} instead."
        )
    return value


def check_positive(name: str, value: Any, strict: bool = True) -> Any:
    """Return ``value`` if it is a number > 0 (``strict``) or >= 0.

    Raises
    ------
    ValueError
        Naming the parameter and the value.
    """
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value > 0 if strict else value >= 0)
    )
    if not ok:
        raise UsageError(
            f"Invalid value for the '{name}' parameter: it must be {'>' if strict else '>='} 0, "
            f"but got {value!r} instead."
        )
    return value
