"""Per-stage profile of pointsym's SOAP ``create`` on the benchmark settings (1 thread).

Both code paths: the compiled forward kernel (default for ``create`` on the CPU with numba) and
the torch engine (the kernel switched off, as used for autograd and CUDA). Stages
are read from cProfile (function totals, median over ``--repeats`` calls); "other" is the
rest of the wall time (Python bookkeeping, array copies, output assembly).

Usage::

    python benchmarks/soap_profile.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

# (label, function name as in pstats, "tot" or "cum")
FAST_STAGES = [
    ("neighbour list (vesin / all pairs)", "_fast_pairs", "cum"),
    ("radial (spline) + harmonics + contraction kernel", "coefficients", "cum"),
    ("power spectrum + gather", "power_spectrum", "cum"),
]
ENGINE_STAGES = [
    ("neighbour list + pair bookkeeping", "build_batch", "cum"),
    ("padding layout", "_pad_layout", "cum"),
    ("padding copies", "_padded_chunk", "cum"),
    ("harmonics", "unit_harmonics|generate", "cum"),
    ("radial + contraction + Löwdin (coefficients - harmonics)", "coefficients", "cum"),
    ("power spectrum + gather", "power_spectrum", "cum"),
]


def _stage_times(stats: pstats.Stats, stages: list[tuple[str, str, str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    table = stats.stats  # type: ignore[attr-defined]
    for label, names, kind in stages:
        total = 0.0
        for name in names.split("|"):
            for (_, _, func), (_, _, tt, ct, _) in table.items():
                if func == name:
                    total += tt if kind == "tot" else ct
        out[label] = total
    return out


def profile(soap, systems, stages, repeats: int) -> dict[str, float]:
    soap.create(systems)  # warm-up / JIT
    rows = []
    for _ in range(repeats):
        pr = cProfile.Profile()
        t0 = time.perf_counter()
        pr.enable()
        soap.create(systems)
        pr.disable()
        wall = time.perf_counter() - t0
        row = _stage_times(pstats.Stats(pr), stages)
        if "harmonics" in row:  # nested inside coefficients
            key = "radial + contraction + Löwdin (coefficients - harmonics)"
            row[key] -= row["harmonics"]
        row["other (Python, copies, output)"] = wall - sum(row.values())
        row["total"] = wall
        rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import soap_vs_dscribe as bench
    import torch

    from pointsym.descriptors import SOAP, _fast

    torch.set_num_threads(1)
    sizes = {"mnist_paper000": 10, "si_diamond_4x4x4": 4, "perovskite_3x3x3": 8}
    for name, cfg in bench.SETTINGS.items():
        params = dict(cfg["params"])
        if params["species"] is None:
            params["species"] = bench._perovskite_species()
        systems = cfg["systems"](sizes[name])
        n_centres = sum(len(s) for s in systems)
        soap = SOAP(**params)
        fast = profile(soap, systems, FAST_STAGES, args.repeats)
        have = _fast.HAVE_NUMBA
        _fast.HAVE_NUMBA = False
        try:
            engine = profile(soap, systems, ENGINE_STAGES, args.repeats)
        finally:
            _fast.HAVE_NUMBA = have
        print(f"\n{name}: {n_centres} centres, 1 thread (ms, median of {args.repeats})")
        print(f"  compiled path: {1e3 * fast['total']:.1f} ms total ({n_centres / fast['total']:.0f} centres/s)")
        for k, v in fast.items():
            if k != "total":
                print(f"    {k:58s} {1e3 * v:7.1f}  {100 * v / fast['total']:4.0f} %")
        print(f"  torch engine:  {1e3 * engine['total']:.1f} ms total ({n_centres / engine['total']:.0f} centres/s)")
        for k, v in engine.items():
            if k != "total":
                print(f"    {k:58s} {1e3 * v:7.1f}  {100 * v / engine['total']:4.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
