"""``pointsym demo``: run every pipeline on the embedded data and write an HTML report.

A stage is a function ``stage(ctx: DemoContext) -> Section``; list it in :data:`STAGES`
as ``(key, "module:function")``. Stages run in order; a failing stage is recorded in the
report and makes the command exit with status 1 after the others have run.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pointsym.experiments.common.cli import add_common_arguments
from pointsym.experiments.common.report import Section, write_report
from pointsym.experiments.common.results import command_line

__all__ = ["DemoContext", "STAGES", "register", "run_demo"]

STAGES: list[tuple[str, str]] = [
    ("data", "pointsym.experiments.data.demo:stage"),
    ("soap", "pointsym.experiments.soap.demo:stage"),
    ("csnn", "pointsym.experiments.csnn.demo:stage"),
    ("csnn_dos", "pointsym.experiments.csnn_dos.demo:stage"),
    ("pixel_soap", "pointsym.experiments.pixel_soap.demo:stage"),
    ("nesf", "pointsym.experiments.nesf.demo:stage"),
    ("pet", "pointsym.experiments.pet.demo:stage"),
]


@dataclass
class DemoContext:
    """What a demo stage gets: where to write, and the user's run options."""

    out_dir: Path
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False
    data_dir: str | None = None

    def path(self, name: str) -> Path:
        """Path of an output file (e.g. a PNG) inside the report directory."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name


def run_demo(ctx: DemoContext, only: list[str] | None = None) -> tuple[list[Section], bool]:
    """Run the selected stages; returns the sections and whether all succeeded."""
    keys = [k for k, _ in STAGES]
    if only:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ValueError(f"Unknown demo stage(s) {unknown}; choose from {keys}.")
    sections, ok = [], True
    for key, target in STAGES:
        if only and key not in only:
            continue
        module, func = target.split(":")
        if not ctx.quiet:
            print(f"[demo] stage '{key}' ...", flush=True)
        t0 = time.perf_counter()
        try:
            section = getattr(importlib.import_module(module), func)(ctx)
        except Exception as exc:  # noqa: BLE001 - a failed stage is reported, others still run
            ok = False
            section = Section(title=key, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        section.seconds = time.perf_counter() - t0
        if not ctx.quiet:
            status = "FAILED" if section.error else "done"
            print(f"[demo] stage '{key}' {status} in {section.seconds:.1f} s", flush=True)
        sections.append(section)
    return sections, ok


def _main(args: argparse.Namespace) -> int:
    ctx = DemoContext(out_dir=Path(args.out), seed=args.seed, device=args.device, quiet=args.quiet,
                      data_dir=args.data_dir)
    only = [s.strip() for s in args.stages.split(",")] if args.stages else None
    sections, ok = run_demo(ctx, only)
    path = write_report(sections, ctx.out_dir, command=command_line())
    print(f"report: {path}")
    for s in sections:
        if s.error:
            print(f"stage '{s.title}' failed:\n{s.error}")
    return 0 if ok else 1


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run every pipeline on the small embedded data; writes results/demo/report.html",
                       description=__doc__.split("\n\n")[0])
    add_common_arguments(p, results="results/demo")
    p.add_argument("--stages", default=None,
                   help="comma-separated subset of stages to run: " + ", ".join(k for k, _ in STAGES))
    p.set_defaults(func=_main)
