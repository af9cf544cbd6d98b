"""pointsym SOAP vs DScribe 2.1 SOAP: throughput (centres/s), ratio and peak memory, one process.

Settings (issue 3):

(a) paper 000: lifted MNIST digits, 150 points per cloud (the 150 brightest pixels of every
    embedded training digit that has at least 150 pixels with floor(I/10) > 0; ties broken
    row-major; points listed in row-major order), r_cut 63, n_max 7, l_max 10, sigma 3, every
    point a centre.
(b) rattled 4x4x4 diamond Si (512 atoms, cubic cell, a = 5.43 Å, rattle 0.05 Å, seeded),
    r_cut 5, n_max 8, l_max 6, sigma 0.5, periodic; several frames (different seeds) so that
    DScribe's process parallelism (n_jobs) has work to share.

Both codes run in this process with the same thread budget: torch.set_num_threads(t) for
pointsym, n_jobs=t for DScribe (its C++ core is single-threaded; n_jobs > 1 forks joblib
worker processes). Rounds alternate DScribe / pointsym so that both see the same machine load;
the reported ratio is the median over rounds of (DScribe time / pointsym time) measured in the
same round. Peak memory is the peak resident-set growth of this process during a call
(DScribe's joblib workers at n_jobs > 1 are separate processes and not included).

Usage::

    python benchmarks/soap_vs_dscribe.py                      # 1 and 2 threads, writes results/soap/benchmark.json
    python benchmarks/soap_vs_dscribe.py --threads 1 --rounds 3 --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
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
}


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, wall seconds, process CPU seconds, peak RSS growth MB)."""
    with PeakRSS() as mem:
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return out, wall, cpu, mem.growth_mb


def run_setting(name: str, n_systems: int, threads: int, rounds: int) -> dict[str, Any]:
    import torch
    from dscribe.descriptors import SOAP as DScribeSOAP

    from pointsym.descriptors import SOAP

    cfg = SETTINGS[name]
    systems = cfg["systems"](n_systems)
    n_centres = sum(len(s) for s in systems)
    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DScribe's LinAlgWarning at r_cut = 63
        ds = DScribeSOAP(**cfg["params"])
    ps = SOAP(**cfg["params"])
    # Warm-up (basis construction, allocator, DScribe's joblib worker pool), untimed.
    ds.create(systems[:2], n_jobs=threads)
    ps.create(systems[:2], n_jobs=threads)
    rows = []
    agreement = None
    for _ in range(rounds):
        ref, dw, dc, dm = timed(lambda: ds.create(systems, n_jobs=threads))
        ours, pw, pc, pm = timed(lambda: ps.create(systems, n_jobs=threads))
        if agreement is None:
            a, b = np.asarray(ours), np.asarray(ref)
            agreement = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
        rows.append({"dscribe_wall_s": dw, "pointsym_wall_s": pw, "dscribe_cpu_s": dc, "pointsym_cpu_s": pc,
                     "dscribe_peak_rss_growth_mb": dm, "pointsym_peak_rss_growth_mb": pm, "ratio": dw / pw})
        print(f"  [{name} t={threads}] dscribe {n_centres / dw:8.0f} c/s   pointsym {n_centres / pw:8.0f} c/s   "
              f"ratio {dw / pw:5.2f}", flush=True)
    med = statistics.median
    return {
        "setting": name,
        "description": cfg["description"],
        "params": cfg["params"],
        "threads": threads,
        "n_systems": len(systems),
        "n_centres": n_centres,
        "n_features": ps.get_number_of_features(),
        "rounds": rows,
        "dscribe_centres_per_s": n_centres / med(r["dscribe_wall_s"] for r in rows),
        "pointsym_centres_per_s": n_centres / med(r["pointsym_wall_s"] for r in rows),
        "ratio_median_same_round": med(r["ratio"] for r in rows),
        # CPU time of this process only: meaningful at 1 thread (DScribe's n_jobs > 1 workers are other processes).
        "ratio_cpu_time_median": med(r["dscribe_cpu_s"] / r["pointsym_cpu_s"] for r in rows) if threads == 1 else None,
        "dscribe_peak_rss_growth_mb": max(r["dscribe_peak_rss_growth_mb"] for r in rows),
        "pointsym_peak_rss_growth_mb": max(r["pointsym_peak_rss_growth_mb"] for r in rows),
        "max_rel_diff_vs_dscribe": agreement,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per measurement (default 5)")
    parser.add_argument("--mnist-clouds", type=int, default=40, help="digit clouds (x150 centres; default 40)")
    parser.add_argument("--si-frames", type=int, default=4, help="Si frames (x512 centres; default 4)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--quick", action="store_true", help="small sizes (10 clouds, 2 frames, 2 rounds)")
    parser.add_argument("--out", default=str(ROOT / "results" / "soap" / "benchmark.json"),
                        help="JSON output (default results/soap/benchmark.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mnist_clouds, args.si_frames, args.rounds = 10, 2, 2
    if min(args.threads) < 1 or args.rounds < 1:
        raise SystemExit("--threads and --rounds must be >= 1")

    import dscribe
    import torch

    from pointsym.experiments.common.results import save_results

    sizes = {"mnist_paper000": args.mnist_clouds, "si_diamond_4x4x4": args.si_frames}
    results = []
    load_before = os.getloadavg()
    for threads in args.threads:
        for name in args.settings:
            results.append(run_setting(name, sizes[name], threads, args.rounds))
    load_after = os.getloadavg()
    print()
    print(f"{'setting':20s} {'thr':>3s} {'DScribe c/s':>12s} {'pointsym c/s':>13s} {'ratio':>6s} "
          f"{'cpu ratio':>9s} {'DS MB':>7s} {'ps MB':>7s} {'max rel diff':>12s}")
    for r in results:
        print(f"{r['setting']:20s} {r['threads']:3d} {r['dscribe_centres_per_s']:12.0f} "
              f"{r['pointsym_centres_per_s']:13.0f} {r['ratio_median_same_round']:6.2f} "
              f"{'-' if r['ratio_cpu_time_median'] is None else format(r['ratio_cpu_time_median'], '.2f'):>9s} "
              f"{r['dscribe_peak_rss_growth_mb']:7.1f} "
              f"{r['pointsym_peak_rss_growth_mb']:7.1f} {r['max_rel_diff_vs_dscribe']:12.1e}")
    path = save_results(args.out, {
        "benchmark": "soap_vs_dscribe",
        "results": results,
        "dscribe_version": dscribe.__version__ if hasattr(dscribe, "__version__") else "2.1.x",
        "torch_version": torch.__version__,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "notes": "ratio = DScribe wall time / pointsym wall time in the same round (median over rounds); "
                 "the machine was shared with other jobs, see load averages.",
    })
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
