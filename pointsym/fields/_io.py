"""Saving and loading trained NeSF models (thin wrappers of the model contract).

:func:`save_nesf` writes a pointsym model file (``NeSF.save``, weights cast to float32);
:func:`load_nesf` reads it, the older NeSF exports (``{"format_version": 1, "kind": "nesf",
...}``, e.g. the committed ``results/nesf/nesf_lim_l6.pt``) and ``pointsym nesf-train``
Trainer checkpoints.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from pointsym.core import read_torch_file
from pointsym.core.checkpoints import is_model_payload
from pointsym.fields._model import NeSF

__all__ = ["load_nesf", "save_nesf"]


def save_nesf(model: NeSF, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> Path:
    """Write a model-only file (weights in float32 + hypers + ``meta``), atomically.

    The file is a pointsym model file readable by :func:`load_nesf` and
    ``NeSF.from_checkpoint``; it has no optimizer state.
    """
    if not isinstance(model, NeSF):
        raise TypeError(f"Expected a NeSF model (got {type(model).__name__}).")
    return copy.deepcopy(model).float().save(path, meta=meta)


def load_nesf(path: str | os.PathLike[str], *, device: Any = "cpu") -> tuple[NeSF, dict[str, Any]]:
    """Load a NeSF model from :func:`save_nesf` / ``NeSF.save`` output, an older NeSF export or a
    ``pointsym nesf-train`` Trainer checkpoint.

    Returns:
        ``(model in eval mode, info)``; ``info`` holds ``meta`` of a model file or an older
        export, or the epoch/history summary of a Trainer checkpoint.
    """
    raw = read_torch_file(path, map_location=device)
    model = NeSF.from_loaded(raw, path, map_location=device)
    info = dict(raw.get("meta") or {}) if isinstance(raw, dict) else {}
    if not is_model_payload(raw) and "epoch" in raw:
        info.setdefault("epoch", int(raw["epoch"]) + 1)
        info.setdefault("best_epoch", raw.get("best_epoch"))
    return model, info
