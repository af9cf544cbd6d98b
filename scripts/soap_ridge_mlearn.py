"""SOAP + ridge regression potential on an mlearn element (the linear baseline of issue #15).

The energy of a structure is a sum of atomic terms linear in pointsym's SOAP power spectrum,
``E = sum_i (w . p_i + b) = N (w . pbar + b)`` with ``pbar`` the structure's mean spectrum
(``average="outer"``), and the forces are its exact negative gradient,
``F = -N w . d pbar / d x``, with the spectrum derivatives from autograd
(``SOAP.derivatives(method="analytical")``). ``w`` and ``b`` minimise

    sum_s ((E_s - Ehat_s) / N_s)^2 / var_E + lambda_F sum_{s,i,a} (F - Fhat)^2 / var_F + alpha |w'|^2

(``w'`` the weights of the standardised features), solved in closed form. ``alpha`` and
``lambda_F`` are chosen on a validation tenth of the training split (seeded), then the model is
refitted on the whole training split and scored on the test split. This is what GAP does with a
kernel, with a linear model instead.

    python scripts/soap_ridge_mlearn.py --element Si --out results/pet/soap_ridge

Writes ``<out>/<element>.json`` (settings, the search, test MAEs, seconds); derivatives are
cached in ``<out>/cache/`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointsym.datasets import load_atomistic  # noqa: E402
from pointsym.descriptors import SOAP  # noqa: E402

SOAP_SETTINGS = {"r_cut": 5.0, "n_max": 8, "l_max": 6, "sigma": 0.5}


def features(frames: list, soap: SOAP, cache: Path, seconds: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per structure: the mean spectrum ``(F,)`` and its derivatives ``(N, 3, F)`` (cached, with the
    seconds each took, appended to ``seconds``)."""
    out = []
    t0 = time.perf_counter()
    for k, atoms in enumerate(frames):
        path = cache / f"{k:04d}.npz"
        if path.is_file():
            z = np.load(path)
            out.append((z["p"], z["d"]))
            seconds.append(float(z["seconds"]) if "seconds" in z else float("nan"))
            continue
        t = time.perf_counter()
        d, p = soap.derivatives(atoms, method="analytical")
        seconds.append(time.perf_counter() - t)
        out.append((p[0], d[0]))
        np.savez(path, p=p[0], d=d[0], seconds=seconds[-1])
        if k % 20 == 0:
            print(f"  {cache.name}: {k + 1}/{len(frames)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def design(frames: list, feats: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Energy rows ``[pbar, 1]`` (per-atom energy) and force rows ``[-N d pbar / dx, 0]``."""
    xe = np.stack([np.append(p, 1.0) for p, _ in feats])
    ye = np.array([a.info["energy"] / len(a) for a in frames])
    xf = np.concatenate([np.concatenate([-len(a) * d.reshape(-1, d.shape[-1]), np.zeros((3 * len(a), 1))], axis=1)
                         for a, (_, d) in zip(frames, feats, strict=True)])
    yf = np.concatenate([a.arrays["forces"].reshape(-1) for a in frames])
    return xe, ye, xf, yf


def fit(xe, ye, xf, yf, alpha: float, lam_f: float, scale: np.ndarray, var_e: float, var_f: float) -> np.ndarray:
    """Closed-form weighted ridge; ``scale`` standardises the features (bias unpenalised)."""
    a = np.concatenate([xe / np.sqrt(var_e), np.sqrt(lam_f / var_f) * xf]) / scale
    y = np.concatenate([ye / np.sqrt(var_e), np.sqrt(lam_f / var_f) * yf])
    reg = np.full(a.shape[1], alpha)
    reg[-1] = 0.0
    w = np.linalg.solve(a.T @ a + np.diag(reg), a.T @ y)
    return w / scale


def scores(w, xe, ye, xf, yf) -> dict[str, float]:
    return {"energy_mae_mev_per_atom": float(1000 * np.abs(xe @ w - ye).mean()),
            "forces_mae_ev_per_A": float(np.abs(xf @ w - yf).mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--element", default="Si", choices=["Si", "Ge", "Li", "Mo"])
    parser.add_argument("--out", default=str(ROOT / "results" / "pet" / "soap_ridge"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t_start = time.perf_counter()
    train = load_atomistic(args.element, "train")
    test = load_atomistic(args.element, "test")
    soap = SOAP(species=[args.element], periodic=True, average="outer", **SOAP_SETTINGS)
    caches = {}
    for name in ("train", "test"):
        caches[name] = out / "cache" / f"{args.element}_{name}"
        caches[name].mkdir(parents=True, exist_ok=True)
    per_structure: list[float] = []
    f_train = features(train, soap, caches["train"], per_structure)
    f_test = features(test, soap, caches["test"], per_structure)
    feature_seconds = float(np.sum(per_structure))  # nan: a cache file from before seconds were stored
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train))
    n_val = max(1, len(train) // 10)
    val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])

    def sub(idx):  # noqa: ANN001, ANN202
        return design([train[i] for i in idx], [f_train[i] for i in idx])

    xe_f, ye_f, xf_f, yf_f = sub(fit_idx)
    xe_v, ye_v, xf_v, yf_v = sub(val_idx)
    scale = np.append(np.concatenate([xe_f[:, :-1], xf_f[:, :-1]]).std(axis=0) + 1e-12, 1.0)
    var_e, var_f = float(ye_f.var()), float(yf_f.var())
    search = []
    for alpha in (1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0):
        for lam_f in (1e-4, 3e-4, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0):
            w = fit(xe_f, ye_f, xf_f, yf_f, alpha, lam_f, scale, var_e, var_f)
            s = scores(w, xe_v, ye_v, xf_v, yf_v)
            # one number to rank by: each MAE relative to the validation spread of its target
            s["rank"] = s["energy_mae_mev_per_atom"] / 1000 / float(ye_v.std()) + s["forces_mae_ev_per_A"] / float(
                yf_v.std())
            search.append({"alpha": alpha, "lambda_forces": lam_f, **s})
    best = min(search, key=lambda r: r["rank"])
    xe, ye, xf, yf = design(train, f_train)
    scale = np.append(np.concatenate([xe[:, :-1], xf[:, :-1]]).std(axis=0) + 1e-12, 1.0)
    w = fit(xe, ye, xf, yf, best["alpha"], best["lambda_forces"], scale, float(ye.var()), float(yf.var()))
    test_scores = scores(w, *design(test, f_test))
    train_scores = scores(w, xe, ye, xf, yf)
    result = {
        "element": args.element, "model": "SOAP (pointsym, average='outer') + ridge, energies as sums of atomic terms",
        "soap": SOAP_SETTINGS, "n_features": int(xe.shape[1] - 1),
        "data": {"train": len(train), "validation_for_search": int(n_val), "test": len(test)},
        "search": search, "best": {"alpha": best["alpha"], "lambda_forces": best["lambda_forces"]},
        "test": test_scores, "train": train_scores,
        "seconds": {"features_and_derivatives": feature_seconds if np.isfinite(feature_seconds) else None,
                    "per_structure_mean": (float(np.nanmean(per_structure)) if np.isfinite(per_structure).any()
                                           else None),
                    "this_run": time.perf_counter() - t_start},
        "derivatives": "SOAP.derivatives(method='analytical'): autograd through the torch engine",
        "threads": args.threads, "command": "python scripts/soap_ridge_mlearn.py " + " ".join(argv or sys.argv[1:]),
    }
    (out / f"{args.element}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.element}: test E MAE {test_scores['energy_mae_mev_per_atom']:.2f} meV/atom, "
          f"F MAE {test_scores['forces_mae_ev_per_A']:.3f} eV/A (alpha {best['alpha']:g}, lambda_F "
          f"{best['lambda_forces']:g}); {feature_seconds:.0f} s for the spectra and derivatives")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
