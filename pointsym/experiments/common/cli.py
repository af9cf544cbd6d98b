"""Command-line plumbing shared by every sub-command."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import TypeVar

from pointsym.core import resolve_device

__all__ = ["add_common_arguments", "apply_common_arguments", "progress", "resolve_device"]

T = TypeVar("T")


def add_common_arguments(parser: argparse.ArgumentParser, *, results: str | None = None) -> None:
    """Add ``--data-dir``, ``--seed``, ``--device``, ``--threads``, ``--quiet`` (and ``--out``)."""
    parser.add_argument("--data-dir", default=None,
                        help="data root (default: $POINTSYM_DATA, else ../shared/data next to the project)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if results is not None:
        parser.add_argument("--out", default=results, help=f"results directory (default: {results})")


def apply_common_arguments(args: argparse.Namespace) -> None:
    """Apply thread count and validate the device early with a clear message."""
    import torch

    if getattr(args, "threads", None):
        if args.threads < 1:
            raise ValueError(f"Expected '--threads' >= 1 (got {args.threads}).")
        torch.set_num_threads(args.threads)
    resolve_device(getattr(args, "device", "cpu"))


def progress(iterable: Iterable[T], *, quiet: bool = False, desc: str = "", total: int | None = None) -> Iterable[T]:
    """tqdm progress bar, disabled by ``quiet`` or ``$POINTSYM_QUIET``."""
    from tqdm.auto import tqdm

    disable = quiet or bool(os.environ.get("POINTSYM_QUIET"))
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False)
