"""How predictable is the band energy of the carbon DOS set on each energy scale?

Two reference predictors of the test band energy (eV/atom), with no DOS model at all:

* the training mean of the structure's family (what a model that knows only the family gets);
* a ridge regression on the structure-averaged SOAP power spectrum (r_cut 6, n_max 8, l_max 6,
  sigma 0.5; regularisation chosen by leave-one-out on the training + validation structures),

each on the midgap grid (``align="midgap"``: energies relative to (HOMO + LUMO) / 2) and on
xTB's absolute scale (``align="none"``). The band energy is that of the reference DOS, with the
linear Fermi crossing (:func:`pointsym.electronic.dos_metrics`, ``crossing="linear"``).

    python scripts/dos_alignment_baselines.py --out results/csnn_dos/alignment_baselines.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/csnn_dos/alignment_baselines.json")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    from pointsym.datasets import load_carbon_dos
    from pointsym.descriptors import SOAP
    from pointsym.electronic import dos_metrics

    t0 = time.perf_counter()
    sets = {align: load_carbon_dos(None, data_dir=args.data_dir, align=align) for align in ("midgap", "none")}
    ref = sets["midgap"]
    soap = SOAP(species=[6], r_cut=6.0, n_max=8, l_max=6, sigma=0.5, periodic=True, average="inner")
    x = np.asarray(soap.create(ref.frames, n_jobs=1))
    fit = ref.split != "test"
    test = ref.split == "test"
    x = StandardScaler().fit(x[fit]).transform(x)
    families = list(dict.fromkeys(str(f) for f in ref.family))
    out: dict[str, object] = {
        "command": "python scripts/dos_alignment_baselines.py --out " + args.out,
        "data": ref.meta.get("file"), "n_fit": int(fit.sum()), "n_test": int(test.sum()),
        "soap": {"r_cut": 6.0, "n_max": 8, "l_max": 6, "sigma": 0.5, "average": "inner"},
    }
    for align, d in sets.items():
        m = dos_metrics(d.energies, d.dos, d.dos, d.n_atoms, d.n_electrons, crossing="linear")
        y = m["band_energy_ref"]
        family_mean = np.array([y[fit & (ref.family == f)].mean() for f in ref.family])
        ridge = RidgeCV(alphas=np.logspace(-6, 3, 28)).fit(x[fit], y[fit])
        pred = ridge.predict(x)
        rows = {}
        for f in families:
            sel = ref.family == f
            rows[f] = {"std_all": float(y[sel].std()),
                       "family_mean_mae": float(np.abs(family_mean - y)[sel & test].mean()),
                       "ridge_soap_mae": float(np.abs(pred - y)[sel & test].mean())}
        out[align] = {"family_mean_mae": float(np.abs(family_mean - y)[test].mean()),
                      "ridge_soap_mae": float(np.abs(pred - y)[test].mean()), "ridge_alpha": float(ridge.alpha_),
                      "families": rows}
        print(f"{align:7s} band-energy MAE on test: family mean {out[align]['family_mean_mae']:.3f}, "
              f"ridge on mean SOAP {out[align]['ridge_soap_mae']:.3f} eV/atom")
    out["wall_seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
