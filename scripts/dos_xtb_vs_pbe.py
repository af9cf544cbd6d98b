"""How far is the GFN1-xTB DOS of the carbon set from PBE? Structure by structure on the PBE subset.

For every structure of ``carbon_dos_gpaw.extxyz.gz`` (GPAW, PBE, LCAO-dzp, k-points) the same
snapshot (family, temperature, trajectory, index) is taken from ``carbon_dos_xtb.extxyz.gz`` and
compared on one midgap grid (-25 ... 2.9 eV around (HOMO + LUMO) / 2, 0.1 eV, sigma 0.2 eV):

* occupied band width, eV: HOMO minus the lowest eigenvalue;
* HOMO-LUMO gap, eV;
* Pearson r of the two per-atom DOS over the grid, and over the window both methods occupy
  (from the higher of the two band bottoms to 2.9 eV);
* band energy per atom on the midgap grid, eV/atom, and their difference.

    python scripts/dos_xtb_vs_pbe.py --out results/csnn_dos/xtb_vs_pbe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _key(atoms) -> tuple:
    i = atoms.info
    return (str(i["family"]), float(i["temperature"]), str(i["traj"]), int(i["index"]))


#: the common midgap grid of the PBE comparisons: it holds PBE's occupied band (xTB's is half as wide)
PBE_GRID = {"e_min": -25.0, "e_max": 2.9, "step": 0.1, "sigma": 0.2}


def load_pairs(data_dir: str | None) -> tuple:
    """``(pbe, xtb, xtb_file)``: the PBE subset and the same snapshots from the xTB set, on :data:`PBE_GRID`.

    Snapshots are matched by (family, temperature, trajectory, index) and their positions
    checked; a PBE structure without its xTB twin ends the script.
    """
    from pointsym.datasets import load_carbon_dos

    pbe = load_carbon_dos(None, method="gpaw", data_dir=data_dir, **PBE_GRID)
    xtb_all = load_carbon_dos(None, method="xtb", data_dir=data_dir, **PBE_GRID)
    index = {_key(a): k for k, a in enumerate(xtb_all.frames)}
    missing = [_key(a) for a in pbe.frames if _key(a) not in index]
    if missing:
        raise SystemExit(f"{len(missing)} PBE structures have no xTB counterpart, e.g. {missing[0]}")
    xtb = xtb_all.subset(np.array([index[_key(a)] for a in pbe.frames]))
    for a, b in zip(pbe.frames, xtb.frames, strict=True):
        if np.abs(a.positions - b.positions).max() > 1e-5:
            raise SystemExit(f"positions of {_key(a)} differ between the PBE and the xTB file")
    return pbe, xtb, xtb_all.meta.get("file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/csnn_dos/xtb_vs_pbe.json")
    parser.add_argument("--data-dir", default=None, help="data root holding carbon_dos/ (default: the project's)")
    args = parser.parse_args(argv)

    from pointsym.electronic import dos_metrics

    t0 = time.perf_counter()
    grid = PBE_GRID
    pbe, xtb, xtb_file = load_pairs(args.data_dir)
    e = pbe.energies
    metrics = {name: dos_metrics(e, d.dos, d.dos, d.n_atoms, d.n_electrons, crossing="linear")
               for name, d in (("pbe", pbe), ("xtb", xtb))}
    rows = []
    for k, a in enumerate(pbe.frames):
        row: dict[str, object] = {"family": a.info["family"], "temperature": a.info["temperature"],
                                  "traj": a.info["traj"], "index": int(a.info["index"]), "n_atoms": len(a)}
        for name, d in (("pbe", pbe), ("xtb", xtb)):
            info = d.frames[k].info
            eig = np.asarray(info["eigenvalues"], dtype=np.float64)
            row[f"band_width_{name}"] = float(info["homo"]) - float(eig.min())
            row[f"gap_{name}"] = float(info["lumo"]) - float(info["homo"])
            row[f"band_energy_{name}"] = float(metrics[name]["band_energy_ref"][k])
            row[f"fermi_{name}"] = float(metrics[name]["fermi_ref"][k])
            row[f"seconds_{name}"] = float(info.get("seconds", np.nan))
        row["pearson_r_window"] = float(np.corrcoef(pbe.dos[k], xtb.dos[k])[0, 1])
        lo = -min(float(row["band_width_pbe"]), float(row["band_width_xtb"]))
        sel = e >= lo
        row["pearson_r_common"] = float(np.corrcoef(pbe.dos[k][sel], xtb.dos[k][sel])[0, 1])
        row["band_energy_diff"] = float(row["band_energy_xtb"]) - float(row["band_energy_pbe"])
        rows.append(row)
    keys = ("band_width_pbe", "band_width_xtb", "gap_pbe", "gap_xtb", "pearson_r_window", "pearson_r_common",
            "band_energy_pbe", "band_energy_xtb", "band_energy_diff", "seconds_pbe")
    families: dict[str, dict[str, float]] = {}
    for f in dict.fromkeys(str(r["family"]) for r in rows):
        mine = [r for r in rows if r["family"] == f]
        families[f] = {"n": len(mine)} | {k: float(np.mean([r[k] for r in mine])) for k in keys}
    out = {"command": "python scripts/dos_xtb_vs_pbe.py --out " + args.out, "grid": grid,
           "files": {"pbe": pbe.meta.get("file"), "xtb": xtb_file},
           "families": families, "structures": rows, "wall_seconds": time.perf_counter() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'family':8s} {'n':>2s} {'width PBE':>9s} {'width xTB':>9s} {'gap PBE':>7s} {'gap xTB':>7s} "
          f"{'r all':>6s} {'r common':>8s} {'Eb PBE':>8s} {'Eb xTB':>8s} {'dEb':>7s}")
    for f, s in families.items():
        print(f"{f:8s} {s['n']:2d} {s['band_width_pbe']:9.2f} {s['band_width_xtb']:9.2f} {s['gap_pbe']:7.2f} "
              f"{s['gap_xtb']:7.2f} {s['pearson_r_window']:6.3f} {s['pearson_r_common']:8.3f} "
              f"{s['band_energy_pbe']:8.2f} {s['band_energy_xtb']:8.2f} {s['band_energy_diff']:7.2f}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
