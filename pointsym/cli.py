"""The ``pointsym`` command line.

Each sub-command lives in its own module, which exposes ``register(subparsers)``; that
function adds an ``argparse`` sub-parser and sets ``func(args) -> int``. Add a module to
:data:`COMMAND_MODULES` to add a sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import pointsym
from pointsym.core import PointsymError
from pointsym.experiments.common.cli import PointsymArgumentParser, apply_common_arguments

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "pointsym.experiments.demo.cli",
    "pointsym.experiments.data.cli",
    "pointsym.experiments.soap.cli",
    "pointsym.experiments.csnn.shapes",
    "pointsym.experiments.pixel_soap.cli",
    "pointsym.experiments.nesf.cli",
    "pointsym.experiments.pet.cli",
    "pointsym.experiments.dos.cli",
    "pointsym.experiments.csnn_dos.cli",
)


def build_parser() -> argparse.ArgumentParser:
    # PointsymArgumentParser: every sub-command's --help states each option's default.
    parser = PointsymArgumentParser(
        prog="pointsym",
        description="Rotation-aware learning on 3D point clouds: SOAP descriptors, concentric spherical "
        "networks, exact symmetrization (ECSE/PET) and neural structure fields.",
    )
    parser.add_argument("--version", action="version", version=f"pointsym {pointsym.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        apply_common_arguments(args)
        return int(args.func(args) or 0)
    except (PointsymError, ValueError, TypeError, OSError) as exc:
        # User errors and the project's own errors (a diverged training, a bad checkpoint), and
        # files that cannot be read or written (missing, permissions, disk full): one clear
        # line, no traceback (POINTSYM_DEBUG=1 shows it).
        import os

        if os.environ.get("POINTSYM_DEBUG"):
            raise
        print(f"pointsym {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
