"""Wall time of the concentric RBF mapping against the number of points (linear cost).

The test suite checks linearity by counting the tensor elements the mapping creates
(tests/csnn/test_csnn_mapping.py::test_mapping_cost_is_linear_in_points); this script measures
the time, which depends on the machine and its load and so is never asserted on.

Usage::

    python benchmarks/mapping_cost.py                 # level 3, 4 shells, 4 channels, 2 threads
    python benchmarks/mapping_cost.py --threads 1 --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pointsym.nn import concentric_rbf_mapping


def best_time(points: torch.Tensor, level: int, n_shells: int, n_channels: int, repeats: int) -> float:
    """Best of ``repeats`` wall times (s): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        concentric_rbf_mapping(points, level, n_shells, n_channels)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,200000", help="numbers of points (default: %(default)s)")
    parser.add_argument("--level", type=int, default=3, help="icosphere level (default: %(default)s)")
    parser.add_argument("--shells", type=int, default=4, help="number of shells (default: %(default)s)")
    parser.add_argument("--channels", type=int, default=4, help="channels per shell (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per size (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    concentric_rbf_mapping(torch.as_tensor(rng.normal(size=(1, 100, 3))), args.level, args.shells, args.channels)
    first = None
    print(f"{'points':>10} {'best (s)':>10} {'us/point':>9} {'vs first':>9}")
    for n in sizes:
        t = best_time(torch.as_tensor(rng.normal(size=(1, n, 3))), args.level, args.shells, args.channels,
                      args.repeats)
        first = first or t / n
        print(f"{n:>10} {t:>10.4f} {1e6 * t / n:>9.3f} {t / n / first:>9.2f}")


if __name__ == "__main__":
    main()
