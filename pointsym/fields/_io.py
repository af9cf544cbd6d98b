"""Saving and loading trained NeSF models (slim exports and Trainer checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pointsym.fields._model import NeSF
from pointsym.training import load_checkpoint

__all__ = ["load_nesf", "save_nesf"]

_FORMAT_VERSION = 1


def save_nesf(model: NeSF, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> Path:
    """Write a model-only checkpoint (weights in float32 + constructor config + ``meta``).

    The file is a pointsym checkpoint (``format_version``), readable by :func:`load_nesf`
    and :func:`pointsym.training.load_checkpoint`; it has no optimizer state.
    """
    if not isinstance(model, NeSF):
        raise TypeError(f"Expected a NeSF model (got {type(model).__name__}).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"format_version": _FORMAT_VERSION, "kind": "nesf", "model": state,
               "config": {"extra": {"nesf": model.config()}}, "meta": dict(meta or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_nesf(path: str | os.PathLike[str], *, device: Any = "cpu") -> tuple[NeSF, dict[str, Any]]:
    """Load a NeSF model from :func:`save_nesf` output or a ``pointsym nesf-train`` Trainer checkpoint.

    Returns:
        ``(model in eval mode, info)``; ``info`` holds ``meta`` of a slim export or the
        epoch/history summary of a Trainer checkpoint.
    """
    ckpt = load_checkpoint(path, map_location=device)
    cfg = ckpt.get("config", {}).get("extra", {}).get("nesf")
    if cfg is None:
        raise ValueError(f"{str(path)!r} is a pointsym checkpoint but not of a NeSF model (no config.extra.nesf).")
    model = NeSF(**cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    info = dict(ckpt.get("meta", {}))
    if "epoch" in ckpt:
        info.setdefault("epoch", int(ckpt["epoch"]) + 1)
        info.setdefault("best_epoch", ckpt.get("best_epoch"))
    return model, info
