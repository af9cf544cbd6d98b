"""Collect the ``results.json`` of every ``pointsym pet-train`` run under a directory into one
table (markdown on stdout, ``summary.json``) and one bar chart (``summary.png``).

Usage::

    python scripts/summarize_pet_results.py results/pet

Every number comes from the runs' own ``results.json`` (test split): energy MAE in meV/atom,
force MAE in eV/Å (per Cartesian component), rotational discrepancy (RMS spread over random
O(3) elements, spec B.11) and the ECSE cost ratio (symmetrized / bare seconds per structure
on the same structures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pointsym.experiments.common.results import save_results

ROWS = (("bare", "PET"), ("ecse", "PET + ECSE"))


def _load_runs(root: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(root.glob("*/results.json")):
        res = json.loads(path.read_text())
        res["_name"] = path.parent.name
        runs.append(res)
    if not runs:
        raise SystemExit(f"no */results.json under {root}; run `pointsym pet-train --out {root}/NAME` first")
    return runs


def _rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for res in runs:
        test = res["test"]
        model = res["model"]["class"]
        training = "random O(3) augmentation" if res["augment"] else "no augmentation"
        for key, _label in ROWS:
            if key not in test:
                continue
            r = test[key]
            disc = r.get("rotational_discrepancy", {})
            rows.append({
                "run": res["_name"], "data": res["data"], "model": model if key == "bare" else f"{model} + ECSE",
                "training": training, "epochs": res["epochs_run"], "n_parameters": res["n_parameters"],
                "n_test": r["n_structures"], "energy_mae_mev_per_atom": r["energy_mae_mev_per_atom"],
                "forces_mae": r["forces_mae"], "forces_rmse": r["forces_rmse"],
                "discrepancy_energy_mev_per_atom": 1e3 * disc["energy_per_atom_rms"] if disc else None,
                "discrepancy_forces": disc.get("forces_rms"),
                "seconds_per_structure": r["seconds_per_structure"],
                "mean_frames_kept": r.get("mean_frames_kept"),
                "ecse_cost_ratio": test.get("ecse_cost_ratio") if key == "ecse" else None,
            })
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    lines = ["| data | model | training | epochs | test structures | E MAE (meV/atom) | F MAE (eV/Å) | "
             "discrepancy E (meV/atom) | discrepancy F (eV/Å) | frames kept | cost ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['model']} | {r['training']} | {r['epochs']} | {r['n_test']} | "
            f"{r['energy_mae_mev_per_atom']:.1f} | {r['forces_mae']:.3f} | "
            f"{f(r['discrepancy_energy_mev_per_atom'], '.2g')} | {f(r['discrepancy_forces'], '.2g')} | "
            f"{f(r['mean_frames_kept'], '.1f')} | {f(r['ecse_cost_ratio'], '.1f')} |")
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pet = [r for r in rows if r["model"].startswith("PET")]
    datasets = list(dict.fromkeys(r["data"] for r in pet))
    variants = list(dict.fromkeys((r["training"], r["model"]) for r in pet))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(variants), 1)
    for ax, key, unit in ((axes[0], "energy_mae_mev_per_atom", "energy MAE (meV/atom)"),
                          (axes[1], "forces_mae", "force MAE (eV/Å)")):
        for k, (training, model) in enumerate(variants):
            vals = []
            for d in datasets:
                match = [r[key] for r in pet if r["data"] == d and r["training"] == training and r["model"] == model]
                vals.append(match[0] if match else np.nan)
            ax.bar(np.arange(len(datasets)) + (k - (len(variants) - 1) / 2) * width, vals, width,
                   label=f"{model}, {training}")
        ax.set_xticks(np.arange(len(datasets)), datasets)
        ax.set_ylabel(unit)
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(len(variants), 1), fontsize=8, frameon=False)
    fig.suptitle("PET on test splits: bare, augmented, symmetrized with ECSE at inference")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="directory whose sub-directories hold pet-train results.json files")
    args = p.parse_args(argv)
    rows = _rows(_load_runs(args.root))
    table = _markdown(rows)
    print(table)
    save_results(args.root / "summary.json", {"rows": rows, "markdown": table},
                 command=f"python scripts/summarize_pet_results.py {args.root}")
    _plot(rows, args.root / "summary.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
