"""Markdown table of ``pointsym csnn-dos`` runs beside the paper's band-energy MAE.

    python scripts/csnn_dos_table.py results/csnn_dos/csnn results/csnn_dos/soap_mlp [--eval eval_test_rot5.json]
    python scripts/csnn_dos_table.py results/csnn_dos/pet@eval_test_rot2_ecse_atom.json

Reads ``<run>/metrics.json`` (the test evaluation written by ``train``) or, with ``--eval`` (all
runs) or ``RUN@FILE`` (one run), that evaluation file; prints the overall and per-family
band-energy MAE (eV/atom), DOS RMSE, integrated-DOS RMSE, |dE_F| and the training budget, then
the paper's figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER = {"CSNN": 0.025, "SchNet": 0.035, "AGNI": 0.033, "chemical accuracy": 0.043}
FAMILIES = ("Graphene", "Graphite", "C20", "C40", "C60", "C_6_4", "C_8_0", "C_9_9")


def _num(x: object) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--eval", default=None, help="evaluation JSON inside each run folder (default: metrics.json)")
    args = ap.parse_args()
    head = "| run | model | params | epochs | train min | DOS RMSE | IDOS RMSE | abs dE_F (eV) | band-energy MAE | " + \
        " | ".join(FAMILIES) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for spec in args.runs:
        run, _, own = spec.partition("@")
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        chosen = own or args.eval
        ev = json.loads((Path(run) / chosen).read_text()) if chosen else metrics["eval"]
        summ = ev.get("summary", ev)
        overall, groups = summ["overall"], summ.get("groups", {})
        tr = metrics["training"]
        fam = " | ".join(_num(groups.get(f, {}).get("band_energy_abs_error")) for f in FAMILIES)
        name = Path(run).name + (f" ({Path(own).stem})" if own else "")
        print(f"| {name} | {metrics['model']} | {metrics.get('n_parameters', 'n/a')} | {tr['epochs_run']} | "
              f"{tr['train_seconds_total'] / 60:.1f} | {_num(overall['dos_rmse'])} | {_num(overall['idos_rmse'])} | "
              f"{_num(overall['fermi_abs_error'])} | {_num(overall['band_energy_abs_error'])} | {fam} |")
    for name, value in PAPER.items():
        print(f"| paper (DFT data) | {name} | | | | | | | {value:.3f} |" + " |" * len(FAMILIES))


if __name__ == "__main__":
    main()
