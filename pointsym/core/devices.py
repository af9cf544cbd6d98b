"""Device resolution shared by every model, descriptor and command."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]


def resolve_device(device: Any) -> Any:
    """Return a ``torch.device``; a CUDA device on a machine without CUDA is a clear error.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` or ``None`` (= CPU).

    Raises:
        ValueError: an unparsable device string, or CUDA requested where torch has none.
    """
    import torch

    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Expected 'device' like 'cpu' or 'cuda:0' (got {device!r}).") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available; use device='cpu' "
                         "or install a CUDA build of torch (see README).")
    return dev
