"""The xTB-trained DOS models evaluated on the PBE subset: how far from PBE, next to xTB itself.

For every structure of ``carbon_dos_gpaw.extxyz.gz`` (GPAW, PBE, LCAO-dzp, k-points) a model
trained on the GFN1-xTB set (midgap grid) predicts the per-atom DOS from the same snapshot. Both
energy scales are aligned at each structure's (HOMO + LUMO) / 2, the only reference the two codes
share (their absolute eigenvalue scales differ by an arbitrary constant).

The model's window (-12.0 ... 2.9 eV for the xTB midgap grid) does not hold PBE's occupied band
(down to -23 eV). Its prediction is placed on the PBE grid (-25 ... 2.9 eV, same 0.1 eV lattice)
with zeros below its window: the model was trained on data with no states there (the lowest xTB
level of the set sits 1.2 eV above the window's bottom), so zero is what it would predict.
Reported per structure and family, all with the linear Fermi crossing:

* the model against PBE: DOS RMSE, Pearson r, |dE_F|, |dE_band|;
* the model against xTB on the same snapshots (its own error on these 25 structures);
* xTB against PBE (the method gap, as in ``xtb_vs_pbe.json``).

    python scripts/dos_model_on_pbe.py results/csnn_dos/csnn_l2_k8 results/csnn_dos/soap_mlp \
        --out results/csnn_dos/model_on_pbe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _checkpoint(run: str) -> Path:
    p = Path(run)
    if p.is_file():
        return p
    best = sorted(p.glob("*_best.pt")) or sorted(p.glob("checkpoints/best.pt"))
    if not best:
        raise SystemExit(f"no *_best.pt or checkpoints/best.pt in {run!r}")
    return best[0]


def _pair_metrics(e, pred, ref, data) -> dict[str, np.ndarray]:
    from pointsym.electronic import dos_metrics

    m = dos_metrics(e, pred, ref, data.n_atoms, data.n_electrons, crossing="linear", unreached="nan")
    m["pearson_r"] = np.array([np.corrcoef(p, r)[0, 1] for p, r in zip(pred, ref, strict=True)])
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="csnn-dos run folders (or checkpoints) trained on the xTB midgap grid")
    parser.add_argument("--out", default="results/csnn_dos/model_on_pbe.json")
    parser.add_argument("--data-dir", default=None, help="data root holding carbon_dos/ (default: the project's)")
    args = parser.parse_args(argv)

    from dos_xtb_vs_pbe import PBE_GRID, load_pairs  # the same pairing as the xTB-vs-PBE table

    from pointsym.experiments.csnn_dos.cli import load_run
    from pointsym.experiments.csnn_dos.evaluation import predict_dos

    t0 = time.perf_counter()
    grid = PBE_GRID
    pbe, xtb, xtb_file = load_pairs(args.data_dir)
    e = pbe.energies
    families = np.asarray(pbe.family)
    out: dict[str, object] = {
        "command": "python scripts/dos_model_on_pbe.py " + " ".join(args.runs) + " --out " + args.out,
        "grid": grid, "files": {"pbe": pbe.meta.get("file"), "xtb": xtb_file},
        "n_structures": len(pbe), "splits": sorted(set(pbe.split.tolist())), "models": {},
    }
    tables = {"xtb_vs_pbe": _pair_metrics(e, xtb.dos, pbe.dos, pbe)}
    for run in args.runs:
        ckpt = _checkpoint(run)
        adapter, model, extra, epochs = load_run(ckpt)
        g = extra["data"]["grid"]
        if g.get("align", "midgap") != "midgap":
            raise SystemExit(f"{run}: trained with align={g['align']!r}; only midgap models compare with PBE")
        offset = int(round((g["e_min"] - grid["e_min"]) / grid["step"]))
        if not 0 <= offset < e.size or abs(g["step"] - grid["step"]) > 1e-12 or abs(e[offset] - g["e_min"]) > 1e-9:
            raise SystemExit(f"{run}: its grid {g} is not inside the PBE grid's 0.1 eV lattice")
        raw = predict_dos(adapter, model, pbe.frames, dtype=next(model.parameters()).dtype)
        if offset + raw.shape[1] > e.size:
            raise SystemExit(f"{run}: its window ends above {grid['e_max']} eV")
        pred = np.zeros_like(pbe.dos)
        pred[:, offset:offset + raw.shape[1]] = raw
        name = Path(run).name if Path(run).is_dir() else ckpt.stem
        tables[f"{name}_vs_pbe"] = _pair_metrics(e, pred, pbe.dos, pbe)
        tables[f"{name}_vs_xtb"] = _pair_metrics(e, pred, xtb.dos, pbe)
        out["models"][name] = {"checkpoint": str(ckpt), "model": extra["adapter"], "epochs_trained": epochs,
                               "grid": g}
    keys = ("dos_rmse", "pearson_r", "fermi_abs_error", "band_energy_abs_error")
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for t, m in tables.items():
        summary[t] = {}
        for f in [*dict.fromkeys(families.tolist()), "overall"]:
            sel = np.ones(len(families), bool) if f == "overall" else families == f
            summary[t][f] = {k: float(np.nanmean(m[k][sel])) for k in keys}
            summary[t][f]["n_unreached"] = int(np.isnan(m["band_energy_pred"][sel]).sum())
    out["summary"] = summary
    out["structures"] = [
        {"family": a.info["family"], "traj": a.info["traj"], "index": int(a.info["index"]), "split": a.info["split"],
         **{f"{t}_{k}": float(m[k][s]) for t, m in tables.items() for k in (*keys, "band_energy_pred")},
         "band_energy_pbe": float(tables["xtb_vs_pbe"]["band_energy_ref"][s])}
        for s, a in enumerate(pbe.frames)]
    out["wall_seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'comparison':28s} {'family':8s} {'DOS RMSE':>8s} {'r':>6s} {'|dE_F|':>7s} {'|dE_b|':>7s}")
    for t, rows in summary.items():
        for f, s in rows.items():
            print(f"{t:28s} {f:8s} {s['dos_rmse']:8.3f} {s['pearson_r']:6.3f} {s['fermi_abs_error']:7.3f} "
                  f"{s['band_energy_abs_error']:7.3f}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
