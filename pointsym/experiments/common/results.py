"""Writing experiment results: JSON with parameters, metrics, wall time and the exact command."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["command_line", "save_results", "to_jsonable"]


def command_line() -> str:
    """The command that started this process, as a shell-quoted string.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the launcher and the number of processes come
    first, e.g. ``torchrun --nproc_per_node=2 -m pointsym pet-train ...``.
    """
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("pointsym", "__main__.py", "cli.py"):
        argv[0] = "pointsym"
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        local = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        launcher = ["torchrun", f"--nproc_per_node={local}"]
        nodes = world // max(int(local), 1)
        if nodes > 1:
            launcher.append(f"--nnodes={nodes}")
        argv = launcher + (["-m", "pointsym"] + argv[1:] if argv and argv[0] == "pointsym" else argv)
    return shlex.join(argv)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy/torch scalars and arrays, Paths and tuples to JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def save_results(path: str | os.PathLike[str], payload: dict[str, Any], *, command: str | None = None) -> Path:
    """Write ``payload`` plus provenance (command, versions, date, threads) to JSON.

    Returns the path written. Parent directories are created.
    """
    import torch

    import pointsym

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **to_jsonable(payload),
        "command": command or command_line(),
        "provenance": {
            "pointsym": pointsym.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
            "world_size": int(os.environ.get("WORLD_SIZE", "1") or 1),
            "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
