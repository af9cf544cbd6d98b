"""``pointsym dos-data``: the carbon-allotrope DOS data set generator (see :mod:`.generate`)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from pointsym.experiments.common.cli import add_dataclass_arguments, argument_group, validate_options
from pointsym.experiments.dos.generate import DOSDataConfig, generate

__all__ = ["register"]

DEFAULT_OUT = "data/carbon_dos"


def _main(args: argparse.Namespace) -> int:
    cfg = validate_options(args, DOSDataConfig)
    # tblite and GPAW's BLAS use OpenMP; --threads (default 1) pins them, as torch's threads are.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads or 1))
    manifest = generate(cfg, args.out, quiet=args.quiet)
    if not args.quiet:
        print(json.dumps({k: manifest[k] for k in ("file", "n_structures", "missing", "counts")}, indent=1))
        print(f"wrote {os.path.join(args.out, manifest['file'])}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dos-data",
        help="generate the carbon-allotrope DOS data set (MD snapshots + GFN1-xTB / PBE eigenvalues)",
        description=__doc__.splitlines()[0] + " Resumable: cached snapshots are not recomputed. Needs the "
        "dosdata extra (pip install 'pointsym[dosdata]': tblite, matscipy, passagemath-buckygen); "
        "--method gpaw needs GPAW (see README).",
    )
    add_dataclass_arguments(p, DOSDataConfig, group="data set")
    g = argument_group(p, "run")
    g.add_argument("--threads", type=int, default=1, help="OpenMP threads of the electronic-structure code "
                   "(default: 1)")
    g.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    argument_group(p, "output").add_argument("--out", default=DEFAULT_OUT,
                                             help=f"output directory (default: {DEFAULT_OUT})")
    p.set_defaults(func=_main)
