"""Data-root resolution and the error raised for missing data sets.

Order: explicit ``data_dir`` (the CLI's ``--data-dir``) > ``$POINTSYM_DATA`` >
``../shared/data`` next to the project checkout (or next to the current directory) when it
exists. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DataNotFoundError", "EMBEDDED_DIR", "check_source", "data_file", "embedded_file", "resolve_data_root"]

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("full", "embedded")


class DataNotFoundError(FileNotFoundError):
    """A data file is missing; the message says which file and where to put it."""


def resolve_data_root(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the data root, or ``None`` when none is configured or present.

    Raises:
        DataNotFoundError: ``data_dir`` or ``$POINTSYM_DATA`` names a missing directory.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(f"data_dir={str(root)!r} is not a directory.")
        return root
    env = os.environ.get("POINTSYM_DATA")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(f"$POINTSYM_DATA={env!r} is not a directory; fix or unset it.")
        return root
    for candidate in (_PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"Expected 'source' to be one of {list(SOURCES)} (got {source!r}).")
    return source


def data_file(relpath: str, data_dir: str | os.PathLike[str] | None = None, *, what: str = "") -> Path:
    """Path of ``relpath`` under the data root, or a :class:`DataNotFoundError` explaining the fix."""
    root = resolve_data_root(data_dir)
    if root is not None and (root / relpath).is_file():
        return root / relpath
    where = f"under the data root {str(root)!r}" if root is not None else "(no data root found)"
    raise DataNotFoundError(
        f"{what or 'Data file'} not found: expected {relpath!r} {where}. Put the file there, or point "
        "pointsym at a data root with --data-dir DIR or the POINTSYM_DATA environment variable "
        "(default: ../shared/data next to the project). For the small subset shipped with pointsym "
        "pass source='embedded' (on the command line: --source embedded)."
    )


def embedded_file(name: str) -> Path:
    path = EMBEDDED_DIR / name
    if not path.is_file():  # pragma: no cover - packaging error
        raise DataNotFoundError(
            f"Embedded data file {name!r} is missing from the installed package; reinstall pointsym."
        )
    return path
