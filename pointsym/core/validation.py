"""Shared input checks that raise clear ``ValueError``/``TypeError`` messages.

Every message names the argument, the value received and what to do instead, so that a
user never sees a NaN or a stack trace from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "check_choice",
    "check_finite_array",
    "check_int",
    "check_positive",
    "check_points",
    "to_numpy",
]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(
            f"Expected '{name}' to be one of {choices} (got {_short(value)})."
        )
    return value


def check_int(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as ``int`` after checking type and bounds.

    Raises:
        TypeError: ``value`` is not an integer (bools are rejected too).
        ValueError: ``value`` is outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected '{name}' to be an integer (got {_short(value)} of type {type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"Expected '{name}' {bound} (got {value}).")
    if maximum is not None and value > maximum:
        bound = f"<= {maximum}" if minimum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"Expected '{name}' {bound} (got {value}).")
    return value


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as ``float`` after checking it is a finite number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Expected '{name}' to be a number (got {_short(value)} of type {type(value).__name__}).")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Expected '{name}' to be a finite number {rel} (got {value}).")
    return value


def to_numpy(name: str, value: Any, dtype: Any = None) -> np.ndarray:
    """Convert arrays, lists and torch tensors (detached, moved to CPU) to numpy."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Could not convert '{name}' to a numeric array ({exc}).") from exc
    if arr.dtype == object:
        raise TypeError(f"Expected '{name}' to be a numeric array (got an object array; ragged input?).")
    return arr


def check_finite_array(name: str, arr: np.ndarray) -> np.ndarray:
    """Raise ``ValueError`` naming ``name`` and the first bad index if ``arr`` has NaN/inf."""
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"'{name}' contains NaN or infinite values (first at index {tuple(int(i) for i in bad)}); "
            "remove or fix those entries before calling."
        )
    return arr


def check_points(name: str, value: Any, *, allow_empty: bool = False, batched: bool | None = False) -> np.ndarray:
    """Validate a point array of shape ``(n, 3)`` (or ``(b, n, 3)`` when ``batched``).

    ``batched=None`` accepts either. Returns a float64 numpy array.
    """
    arr = to_numpy(name, value, dtype=np.float64)
    ok_ndims = {False: (2,), True: (3,), None: (2, 3)}[batched]
    if arr.ndim not in ok_ndims or arr.shape[-1] != 3:
        want = {False: "(n, 3)", True: "(batch, n, 3)", None: "(n, 3) or (batch, n, 3)"}[batched]
        raise ValueError(f"Expected '{name}' of shape {want} (got shape {arr.shape}).")
    if not allow_empty and arr.shape[-2] == 0:
        raise ValueError(f"'{name}' is empty (shape {arr.shape}); pass at least one point.")
    return check_finite_array(name, arr)
