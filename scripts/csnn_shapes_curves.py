"""Validation accuracy against training CPU time for csnn-shapes runs (issue #17's curves).

Reads the per-run JSONs of one or more results folders (``<run>.json`` written by
``pointsym csnn-shapes``; per-epoch CPU seconds from a ``--max-minutes`` run's ``budget``, else
the wall seconds of each epoch) and plots, per group of runs (one line per seed, same colour
per group), the validation accuracy after each epoch against the cumulative training CPU time.

    python scripts/csnn_shapes_curves.py results/csnn_shapes/equal_time results/csnn_shapes/search \
        --out results/csnn_shapes/equal_time/val_acc_vs_cpu.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointsym.experiments.common.plotting import plt, savefig  # noqa: E402


def curves(folder: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``{group: [(cumulative CPU s, val acc %) per run]}``; a run's group is its name without the seed."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for path in sorted(folder.glob("*.json")):
        rec = json.loads(path.read_text())
        if "history" not in rec or not rec["history"]:
            continue
        hist = rec["history"]
        per = (rec.get("budget") or {}).get("cpu_seconds_per_epoch") or [None] * len(hist)
        t = np.cumsum([c if c is not None else h["seconds"] for c, h in zip(per, hist, strict=True)])
        acc = 100 * np.array([h["val_acc"] for h in hist])
        group = re.sub(r"_seed\d+$", "", rec["run"])
        out.setdefault(group, []).append((t, acc))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default=None, help="regular expression the group names must match")
    args = parser.parse_args(argv)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    k = 0
    for folder in args.folders:
        for group, runs in curves(Path(folder)).items():
            if args.only and not re.search(args.only, group):
                continue
            c = colours[k % len(colours)]
            k += 1
            for j, (t, acc) in enumerate(runs):
                label = f"{group} ({len(runs)} run(s))" if j == 0 else None
                ax.plot(t / 60, acc, color=c, lw=1.2, alpha=0.8, label=label)
    ax.set_xlabel("training CPU time (min, 1 thread)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("ModelNet10 (120 shapes per class): validation accuracy after each epoch", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    savefig(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
