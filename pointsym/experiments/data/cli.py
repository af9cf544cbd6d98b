"""``pointsym data``: show the data root and which data sets are present."""

from __future__ import annotations

import argparse
from typing import Any

from pointsym.datasets import ATOMISTIC_SETS, CRYSTAL_SETS, resolve_data_root
from pointsym.experiments.common.cli import add_data_arguments

__all__ = ["register"]

_FILES = {
    "mnist": ["mnist/mnist.npz"],
    "modelnet10": ["modelnet10_voxel/modelnet10_vox32_surface_points1024.npz"],
    **{f"crystals:{n}/{s}": [p] for n, sp in CRYSTAL_SETS.items() for s, p in sp.items()},
    **{f"atomistic:{n}/{s}": [p] for n, sp in ATOMISTIC_SETS.items() for s, p in sp.items()},
}


def _main(args: argparse.Namespace) -> int:
    root = resolve_data_root(args.data_dir)
    print(f"data root: {root if root is not None else '(none: pass --data-dir or set POINTSYM_DATA)'}")
    for name, files in _FILES.items():
        present = root is not None and all((root / f).is_file() for f in files)
        print(f"  {'ok     ' if present else 'missing'}  {name:28s} {files[0]}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="show the data root and which data sets are present")
    add_data_arguments(p)
    p.set_defaults(func=_main)
