"""pointsym SOAP vs DScribe 2.1 SOAP and featomic: throughput (centres/s), ratios and peak memory.

Settings (issue 3 and its follow-up):

(a) paper 000: lifted MNIST digits, 150 points per cloud (the 150 brightest pixels of every
    embedded training digit that has at least 150 pixels with floor(I/10) > 0; ties broken
    row-major; points listed in row-major order), r_cut 63, n_max 7, l_max 10, sigma 3, every
    point a centre.
(b) rattled 4x4x4 diamond Si (512 atoms, cubic cell, a = 5.43 Å, rattle 0.05 Å, seeded),
    r_cut 5, n_max 8, l_max 6, sigma 0.5, periodic; several frames (different seeds) so that
    DScribe's process parallelism (n_jobs) has work to share.
(c) perovskite: the first embedded perov_5 structure (``load_crystals("perov_5", "val",
    source="embedded")[0]``, CdCuN3, 5 atoms, 3 species) as a rattled 3x3x3 supercell (135
    atoms, rattle 0.05 Å, seeded), several frames, r_cut 6, n_max 8, l_max 6, sigma 0.5, periodic.

All codes run in one process per thread count with the same thread budget:
torch.set_num_threads(t) for pointsym, n_jobs=t for DScribe (its C++ core is single-threaded;
n_jobs > 1 forks joblib worker processes), RAYON_NUM_THREADS=t for featomic (fixed at process
start, hence one worker process per thread count). Rounds alternate the codes (the order
rotates every round) so that all see the same machine load; the reported ratios are medians
over rounds of (other time / pointsym time) measured in the same round. featomic computes
its own GTO basis (radius = r_cut with a 0.5 Å shifted-cosine smoothing, max_radial =
n_max - 1, max_angular = l_max, Gaussian density of width sigma): the same feature count
per species pair, not the same numbers. Peak memory is the peak resident-set growth of the
worker process during a call (DScribe's joblib workers at n_jobs > 1 are not included), sampled
every 2 ms in two extra calls per code after the timed rounds (sampling during the timed calls
slowed them).

Usage::

    python benchmarks/soap_vs_dscribe.py            # threads 1 and 2 -> results/soap/benchmark.json + .png
    python benchmarks/soap_vs_dscribe.py --threads 1 --rounds 3 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# On a machine shared with other jobs, OpenMP's default spin-waiting makes torch's multi-threaded
# kernels stall whenever a core is taken by another process (measured: 8x slower at 2 threads);
# passive waiting avoids that. Must be set before torch starts its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


class PeakRSS:
    """Peak resident-set size of this process while the context is active (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        self.base = self.current()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def mnist_clouds(n_clouds: int) -> list:
    from ase import Atoms

    from pointsym.datasets import load_mnist
    from pointsym.descriptors import image_to_points

    images, _ = load_mnist("train", source="embedded")
    clouds = []
    for img in images:
        if np.count_nonzero(img >= 10) >= 150:
            pts = image_to_points(img, n_points=150)
            clouds.append(Atoms(numbers=np.ones(150, dtype=int), positions=pts))
        if len(clouds) == n_clouds:
            break
    return clouds


def silicon_frames(n_frames: int) -> list:
    from ase.build import bulk

    frames = []
    for seed in range(n_frames):
        si = bulk("Si", "diamond", a=5.43, cubic=True).repeat(4)
        si.rattle(0.05, seed=seed)
        frames.append(si)
    return frames


def perovskite_frames(n_frames: int) -> list:
    from pointsym.datasets import load_crystals

    base = load_crystals("perov_5", "val", source="embedded")[0]
    frames = []
    for seed in range(n_frames):
        cell = base.repeat(3)
        cell.rattle(0.05, seed=seed)
        frames.append(cell)
    return frames


def _perovskite_species() -> list[int]:
    from pointsym.datasets import load_crystals

    return sorted(set(load_crystals("perov_5", "val", source="embedded")[0].numbers.tolist()))


SETTINGS = {
    "mnist_paper000": {
        "description": "150-point lifted MNIST clouds (150 brightest pixels), r_cut 63, n_max 7, l_max 10, sigma 3",
        "params": {"species": ["H"], "r_cut": 63.0, "n_max": 7, "l_max": 10, "sigma": 3.0},
        "systems": mnist_clouds,
    },
    "si_diamond_4x4x4": {
        "description": "rattled 4x4x4 diamond Si (512 atoms), r_cut 5, n_max 8, l_max 6, sigma 0.5, periodic",
        "params": {"species": ["Si"], "r_cut": 5.0, "n_max": 8, "l_max": 6, "sigma": 0.5, "periodic": True},
        "systems": silicon_frames,
    },
    "perovskite_3x3x3": {
        "description": "rattled 3x3x3 supercell of the first embedded perov_5 crystal (CdCuN3, 135 atoms, 3 species), "
                       "r_cut 6, n_max 8, l_max 6, sigma 0.5, periodic",
        "params": {"species": None, "r_cut": 6.0, "n_max": 8, "l_max": 6, "sigma": 0.5, "periodic": True},
        "systems": perovskite_frames,
    },
}


def featomic_calculator(params: dict[str, Any]) -> Any:
    """featomic's SOAP power spectrum with the same sizes (None when featomic is not installed)."""
    try:
        import featomic
    except ImportError:
        return None
    return featomic.SoapPowerSpectrum(
        cutoff={"radius": params["r_cut"], "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": params["sigma"]},
        basis={"type": "TensorProduct", "max_angular": params["l_max"],
               "radial": {"type": "Gto", "max_radial": params["n_max"] - 1}},
    )


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, process CPU seconds)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def peak_rss_growth(fn: Callable[[], Any]) -> float:
    """Peak RSS growth (MB) of one call, in a call of its own: the 2 ms sampling thread competes
    for the GIL and the mm lock, and slowed the code it watched by ~10 % when it ran during
    the timed calls (most for code that releases the GIL, such as pointsym's kernels)."""
    with PeakRSS() as mem:
        out = fn()
    del out
    return mem.growth_mb


def run_setting(name: str, n_systems: int, threads: int, rounds: int) -> dict[str, Any]:
    import torch
    from dscribe.descriptors import SOAP as DScribeSOAP

    from pointsym.descriptors import SOAP

    cfg = SETTINGS[name]
    params = dict(cfg["params"])
    if params["species"] is None:
        params["species"] = _perovskite_species()
    systems = cfg["systems"](n_systems)
    n_centres = sum(len(s) for s in systems)
    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DScribe's LinAlgWarning at r_cut = 63
        ds = DScribeSOAP(**params)
    ps = SOAP(**params)
    fa = featomic_calculator(params)
    codes: dict[str, Callable[[], Any]] = {
        "dscribe": lambda: ds.create(systems, n_jobs=threads),
        "pointsym": lambda: ps.create(systems, n_jobs=threads),
    }
    if fa is not None:
        codes["featomic"] = lambda: fa.compute(systems)
    # Warm-up (basis construction, JIT compilation, allocator, DScribe's joblib worker pool), untimed.
    ds.create(systems[:2], n_jobs=threads)
    ps.create(systems[:2], n_jobs=threads)
    if fa is not None:
        fa.compute(systems[:2])
    names = list(codes)
    rows = []
    agreement = None
    for k in range(rounds):
        row: dict[str, float] = {}
        outs = {}
        for code in names[k % len(names):] + names[: k % len(names)]:  # rotate the order every round
            out, wall, cpu = timed(codes[code])
            row[f"{code}_wall_s"], row[f"{code}_cpu_s"] = wall, cpu
            if agreement is None and code in ("dscribe", "pointsym"):
                outs[code] = out
            del out
        if agreement is None:
            a, b = np.asarray(outs["pointsym"]), np.asarray(outs["dscribe"])
            agreement = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
        del outs
        row["ratio_vs_dscribe"] = row["dscribe_wall_s"] / row["pointsym_wall_s"]
        if fa is not None:
            row["ratio_vs_featomic"] = row["featomic_wall_s"] / row["pointsym_wall_s"]
        rows.append(row)
        print(f"  [{name} t={threads}] " + "   ".join(f"{c} {n_centres / row[c + '_wall_s']:8.0f} c/s" for c in names)
              + f"   ps/ds {row['ratio_vs_dscribe']:5.2f}"
              + (f"   ps/fa {row['ratio_vs_featomic']:5.2f}" if fa is not None else ""), flush=True)
    med = statistics.median
    result = {
        "setting": name,
        "description": cfg["description"],
        "params": params,
        "threads": threads,
        "n_systems": len(systems),
        "n_centres": n_centres,
        "n_features": ps.get_number_of_features(),
        "rounds": rows,
        "ratio_vs_dscribe_median": med(r["ratio_vs_dscribe"] for r in rows),
        "ratio_vs_featomic_median": med(r["ratio_vs_featomic"] for r in rows) if fa is not None else None,
        "max_rel_diff_vs_dscribe": agreement,
    }
    for code in names:  # memory after the timed rounds, two untimed calls each, interleaved
        result[f"{code}_peak_rss_growth_mb"] = 0.0
    for _ in range(2):
        for code in names:
            result[f"{code}_peak_rss_growth_mb"] = max(result[f"{code}_peak_rss_growth_mb"],
                                                       peak_rss_growth(codes[code]))
    for code in names:
        result[f"{code}_centres_per_s"] = n_centres / med(r[f"{code}_wall_s"] for r in rows)
    # CPU time of this process only: meaningful at 1 thread (DScribe's n_jobs > 1 workers are other processes).
    result["ratio_cpu_time_vs_dscribe_median"] = (
        med(r["dscribe_cpu_s"] / r["pointsym_cpu_s"] for r in rows) if threads == 1 else None)
    return result


def bar_chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = [c for c in ("dscribe", "featomic", "pointsym") if f"{c}_centres_per_s" in results[0]]
    labels = [f"{r['setting']}\n{r['threads']} thr" for r in results]
    x = np.arange(len(results))
    width = 0.8 / len(codes)
    fig, ax = plt.subplots(figsize=(1.6 * len(results) + 2, 4))
    for k, code in enumerate(codes):
        ax.bar(x + (k - (len(codes) - 1) / 2) * width, [r.get(f"{code}_centres_per_s", 0) for r in results],
               width, label=code)
    for i, r in enumerate(results):
        ax.annotate(f"x{r['ratio_vs_dscribe_median']:.1f} DS" + (
            f"\nx{r['ratio_vs_featomic_median']:.1f} fa" if r["ratio_vs_featomic_median"] else ""),
            (x[i], max(r.get(f"{c}_centres_per_s", 0) for c in codes)), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("centres / s (median over rounds)")
    ax.set_title("SOAP power spectrum throughput (pointsym / DScribe 2.1 / featomic)")
    ax.legend(fontsize=8)
    ax.margins(y=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per measurement (default 5)")
    parser.add_argument("--mnist-clouds", type=int, default=10, help="digit clouds (x150 centres; default 10)")
    parser.add_argument("--si-frames", type=int, default=4, help="Si frames (x512 centres; default 4)")
    parser.add_argument("--perovskite-frames", type=int, default=8, help="perovskite frames (x135 centres; default 8)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--quick", action="store_true", help="small sizes (4 clouds, 1 frame, 2 perovskites, 2 rounds)")
    parser.add_argument("--out", default=str(ROOT / "results" / "soap" / "benchmark.json"),
                        help="JSON output (default results/soap/benchmark.json; the bar chart goes next to it as .png)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one thread count, results to this file
    args = parser.parse_args(argv)
    if args.quick:
        args.mnist_clouds, args.si_frames, args.perovskite_frames, args.rounds = 4, 1, 2, 2
    if min(args.threads) < 1 or args.rounds < 1:
        raise SystemExit("--threads and --rounds must be >= 1")
    sizes = {"mnist_paper000": args.mnist_clouds, "si_diamond_4x4x4": args.si_frames,
             "perovskite_3x3x3": args.perovskite_frames}

    if args.worker:
        (threads,) = args.threads
        results = [run_setting(name, sizes[name], threads, args.rounds) for name in args.settings]
        Path(args.worker).write_text(json.dumps(results))
        return 0

    import dscribe
    import torch

    from pointsym.experiments.common.results import save_results

    try:
        import featomic

        featomic_version = featomic.__version__
    except ImportError:
        featomic_version = None
        print("featomic is not installed (pip install -e .[bench]); comparing with DScribe only")
    results = []
    load_before = os.getloadavg()
    for threads in args.threads:
        with tempfile.TemporaryDirectory() as tmp:
            part = Path(tmp) / "part.json"
            cmd = [sys.executable, __file__, "--worker", str(part), "--threads", str(threads),
                   "--rounds", str(args.rounds), "--mnist-clouds", str(args.mnist_clouds),
                   "--si-frames", str(args.si_frames), "--perovskite-frames", str(args.perovskite_frames),
                   "--settings", *args.settings]
            env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
            subprocess.run(cmd, check=True, env=env)
            results.extend(json.loads(part.read_text()))
    load_after = os.getloadavg()
    print()
    print(f"{'setting':18s} {'thr':>3s} {'DScribe c/s':>11s} {'featomic c/s':>12s} {'pointsym c/s':>12s} "
          f"{'ps/DS':>6s} {'ps/fa':>6s} {'DS MB':>6s} {'fa MB':>6s} {'ps MB':>6s} {'max rel diff':>12s}")
    for r in results:
        fa = r.get("featomic_centres_per_s")
        print(f"{r['setting']:18s} {r['threads']:3d} {r['dscribe_centres_per_s']:11.0f} "
              f"{'-' if fa is None else format(fa, '.0f'):>12s} {r['pointsym_centres_per_s']:12.0f} "
              f"{r['ratio_vs_dscribe_median']:6.2f} "
              f"{'-' if fa is None else format(r['ratio_vs_featomic_median'], '.2f'):>6s} "
              f"{r['dscribe_peak_rss_growth_mb']:6.1f} "
              f"{'-' if fa is None else format(r['featomic_peak_rss_growth_mb'], '.1f'):>6s} "
              f"{r['pointsym_peak_rss_growth_mb']:6.1f} {r['max_rel_diff_vs_dscribe']:12.1e}")
    path = save_results(args.out, {
        "benchmark": "soap_vs_dscribe_featomic",
        "results": results,
        "dscribe_version": getattr(dscribe, "__version__", "2.1.x"),
        "featomic_version": featomic_version,
        "torch_version": torch.__version__,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "notes": "ratio = other code's wall time / pointsym wall time in the same round (median over rounds); "
                 "the machine was shared with other jobs, see load averages.",
    })
    bar_chart(results, Path(args.out).with_suffix(".png"))
    print(f"\nwrote {path} and {Path(args.out).with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
