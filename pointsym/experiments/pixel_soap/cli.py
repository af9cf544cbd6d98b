"""Pixel-wise SOAP on MNIST (paper 000): ``pointsym pixel-soap <experiment>``.

Pipeline: every MNIST image is lifted to 3D points (Algorithm 1: x = column, y = row,
z = floor(I / 10), only z > 0 kept); the SOAP power spectrum at one random pixel is the
feature vector of that pixel, labelled with the image's digit (Algorithm 3); an MLP
classifies single pixels. Experiments (each writes ``results/pixel_soap/<name>.json`` and PNGs):

* ``train``     - the paper's setting (Section 4.2, Table 1, Fig. 9).
* ``search``    - Monte Carlo search over r_cut, n_max, l_max, sigma (Fig. 10).
* ``compress``  - PCA / linear AE / deep AE compression (Section 4.3, Figs. 18-19).
* ``noise``     - Gaussian displacement of the points of the test images (Section 4.4, Fig. 20).
* ``rotations`` - rotated / mirrored test images: SOAP MLP vs a patch CNN (not in the paper).
* ``backend``   - agreement of pointsym's SOAP with DScribe on lifted digits.

Long runs show progress, cache the spectra (``<out>/checkpoints/spectra_cache``) and resume
training from ``<out>/checkpoints`` through :class:`pointsym.training.Trainer`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointsym.core import check_choice, check_int
from pointsym.experiments.common.cli import (
    add_common_arguments,
    add_dataclass_arguments,
    add_limit_arguments,
    check_option,
    config_from_args,
    validate_options,
)
from pointsym.experiments.pixel_soap.data import (
    BACKENDS,
    PixelSpectra,
    SOAPParams,
    SpectraDataset,
    build_spectra_dataset,
    compare_backends,
    fit_scaler,
    image_to_points,
    make_soap,
    pixel_point_index,
    pixel_spectra,
    sample_pixels,
)
from pointsym.experiments.pixel_soap.models import (
    DeepAutoencoder,
    LinearAutoencoder,
    PatchCNN,
    PixelMLP,
    classification_metrics,
    extract_patches,
    fit_autoencoder,
    fit_classifier,
    plot_confusion,
    predict,
    reconstruct,
)

__all__ = [
    "PAPER",
    "TRANSFORMS",
    "DeepAutoencoder",
    "LinearAutoencoder",
    "PatchCNN",
    "PixelMLP",
    "PixelSpectra",
    "SOAPParams",
    "SpectraDataset",
    "build_spectra_dataset",
    "classification_metrics",
    "compare_backends",
    "fit_scaler",
    "image_to_points",
    "load_pixel_model",
    "make_soap",
    "noise_sigmas",
    "pixel_point_index",
    "pixel_spectra",
    "plot_confusion",
    "register",
    "sample_pixels",
    "save_pixel_model",
    "train_pixel_classifier",
    "transform_image",
    "transform_pixels",
]

#: Paper 000's published numbers (Table 1, Sections 4.3-4.4).
PAPER = {
    "params": {"r_cut": 63, "n_max": 7, "l_max": 10, "sigma": 3},
    "n_features": 308,
    "test_accuracy": 0.6863, "test_recall": 0.6863, "test_precision": 0.6821, "test_f1": 0.6832,
    "val_accuracy": 0.6844, "epochs": 300, "mc_trials": 168, "ae_epochs": 10_000, "ae_lr": 1e-4,
    "ae_batch": 512,
    "compression": "PCA ~ linear AE for h_e < 200 (PCA better above); deep AE (h_m in {2,4,10}) better for "
                   "h_e < 50; h_e > 50 keeps > 95 % of the 308-dim baseline accuracy, h_e = 100 ~ 98 % (Figs. 18-19)",
    "noise": "accuracy at sigma_disturbance = 1.0 is 92 % of the noise-free baseline; sharp decline beyond 0.5; "
             "~51 % (of baseline) at 3.9 (Fig. 20)",
}

DEFAULT_HIDDEN = (256, 256, 128)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[pixel-soap] {msg}", flush=True)


# ---------------------------------------------------------------------------- library API
def train_pixel_classifier(
    ds: SpectraDataset, *, hidden: tuple[int, ...] = DEFAULT_HIDDEN, epochs: int = 300, patience: int | None = 20,
    batch_size: int = 128, lr: float = 1e-3, seed: int = 0, out_dir: str | Path | None = None,
    device: str = "cpu", quiet: bool = True, restart: bool = False, init_from: str | Path | None = None,
) -> tuple[PixelMLP, list[dict[str, Any]]]:
    """Train the paper's pixel MLP on ``ds`` (scaled spectra; Adam, early stopping on val accuracy).

    ``restart`` and ``init_from`` are those of :func:`~pointsym.experiments.pixel_soap.models.fit_classifier`.

    Returns:
        ``(model with the best validation accuracy, history)``.
    """
    X_tr, y_tr = ds.scaled("train")
    X_va, y_va = ds.scaled("val")
    from pointsym.training import seed_everything

    seed_everything(seed)  # identical initial weights for a given seed
    model = PixelMLP(X_tr.shape[1], hidden)
    model, history, _ = fit_classifier(model, X_tr, y_tr, X_va, y_va, epochs=epochs, batch_size=batch_size, lr=lr,
                                       patience=patience, seed=seed, out_dir=out_dir, device=device, quiet=quiet,
                                       restart=restart, init_from=init_from)
    return model, history


#: Version of the pixel-SOAP bundle written by :func:`save_pixel_model`. Version 1 (written
#: before versioning, ``"format": "pointsym.pixel_soap/1"``, no ``format_version``) still loads.
PIXEL_BUNDLE_VERSION = 2


def save_pixel_model(path: str | Path, model: PixelMLP, ds: SpectraDataset, extra: dict[str, Any]) -> Path:
    """Save the classifier together with its RobustScaler, SOAP parameters and data settings.

    The file (written atomically) is ``{"format": "pointsym.pixel_soap", "format_version": 2,
    "model": <pointsym model file of the PixelMLP>, "model_config": hypers, "scaler", "soap",
    "backend", "data", **extra}``; read it with :func:`load_pixel_model`.
    """
    from pointsym.core import atomic_torch_save
    from pointsym.core.checkpoints import model_payload

    return atomic_torch_save({
        "format": "pointsym.pixel_soap",
        "format_version": PIXEL_BUNDLE_VERSION,
        "model": model_payload(model),
        "model_config": model.hypers,
        "scaler": {"center": torch.as_tensor(np.asarray(ds.scaler.center_)),
                   "scale": torch.as_tensor(np.asarray(ds.scaler.scale_))},
        "soap": ds.params.as_dict(),
        "backend": ds.backend,
        "data": ds.meta,
        **extra,
    }, path)


def load_pixel_model(path: str | Path) -> dict[str, Any]:
    """Load a bundle written by :func:`save_pixel_model` (any version): adds ``model`` (eval mode) and ``scaler``."""
    from sklearn.preprocessing import RobustScaler

    from pointsym.core import CheckpointError, read_torch_file
    from pointsym.core.checkpoints import build_from_state

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No pixel-SOAP model at {str(path)!r}; run `pointsym pixel-soap train` first "
                                "(with the same --out and --name).")
    bundle = read_torch_file(path, map_location="cpu")
    fmt = bundle.get("format") if isinstance(bundle, dict) else None
    if fmt == "pointsym.pixel_soap/1" and "format_version" not in bundle:
        version = 1
    elif fmt == "pointsym.pixel_soap" and isinstance(bundle.get("format_version"), int):
        version = bundle["format_version"]
    else:
        raise CheckpointError(f"{str(path)!r} is not a pixel-SOAP model bundle (format {fmt!r}); write one with "
                              "`pointsym pixel-soap train`.")
    if version > PIXEL_BUNDLE_VERSION:
        raise CheckpointError(f"{str(path)!r} is a pixel-SOAP bundle of format version {version}, newer than this "
                              f"pointsym reads (up to {PIXEL_BUNDLE_VERSION}); upgrade pointsym.")
    if version == 1:  # weights in "model_state", constructor arguments in "model_config"
        model = build_from_state(PixelMLP, dict(bundle["model_config"]), bundle["model_state"], path)
    else:
        model = PixelMLP.from_loaded(bundle["model"], path)
    model.eval()
    scaler = RobustScaler()
    scaler.center_ = np.asarray(bundle["scaler"]["center"])
    scaler.scale_ = np.asarray(bundle["scaler"]["scale"])
    scaler.n_features_in_ = len(scaler.center_)
    bundle.update(model=model, scaler=scaler, format_version=version)
    return bundle


TRANSFORMS = ("identity", "rot90", "rot180", "rot270", "mirror_lr", "mirror_ud")


def transform_image(image: np.ndarray, name: str) -> np.ndarray:
    """Rotate (counter-clockwise, multiples of 90 degrees) or mirror a 2D image; ``name`` in :data:`TRANSFORMS`."""
    check_choice("name", name, TRANSFORMS)
    if name == "identity":
        return np.asarray(image).copy()
    if name.startswith("rot"):
        return np.rot90(image, k=int(name[3:]) // 90, axes=(-2, -1)).copy()
    return np.flip(image, axis=-1 if name == "mirror_lr" else -2).copy()


def transform_pixels(pixels: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """Where pixels ``(T, 2)`` (row, col) of an image of ``shape`` land after :func:`transform_image`."""
    rows, cols = shape
    index = transform_image(np.arange(rows * cols).reshape(rows, cols), name)
    where = np.empty(rows * cols, dtype=np.int64)
    where[index.ravel()] = np.arange(rows * cols)
    flat = where[np.asarray(pixels)[:, 0] * cols + np.asarray(pixels)[:, 1]]
    return np.stack(np.divmod(flat, index.shape[1]), axis=1)


def noise_sigmas(n: int = 20, lo: float = 0.1, hi: float = 5.0) -> np.ndarray:
    """``n`` logarithmically spaced displacement widths from ``lo`` to ``hi`` (paper: 20, 0.1 -> 5.0)."""
    return np.geomspace(lo, hi, check_int("n", n, minimum=2))


# ---------------------------------------------------------------------------- CLI helpers
def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"Expected '{name}' as comma-separated integers, e.g. 256,256,128 (got {text!r}).") from exc
    if not vals:
        raise ValueError(f"'{name}' is empty; give comma-separated integers.")
    return vals


def _params(args: argparse.Namespace) -> SOAPParams:
    return config_from_args(SOAPParams, args)


def _validated_params(args: argparse.Namespace) -> SOAPParams:
    """The SOAP parameters, their bounds checked with messages naming the flags."""
    return validate_options(args, SOAPParams, overrides=_SOAP_OPTIONS)


def _cache_dir(args: argparse.Namespace) -> Path | None:
    if getattr(args, "no_cache", False):
        return None
    return Path(args.cache_dir) if args.cache_dir else Path(args.out) / "checkpoints" / "spectra_cache"


def _run_dir(args: argparse.Namespace, name: str, spec: dict[str, Any]) -> Path:
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(args.out) / "checkpoints" / f"{name}_{digest}"


def _bundle_path(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) / "checkpoints" / name / "model.pt"


def _save(args: argparse.Namespace, name: str, payload: dict[str, Any], t0: float) -> Path:
    from pointsym.experiments.common.results import save_results

    payload = {"experiment": name, **payload, "wall_time_s": time.perf_counter() - t0}
    path = save_results(Path(args.out) / f"{name}.json", payload)
    _log(f"wrote {path}", args.quiet)
    return path


def _dataset_for(args: argparse.Namespace, params: SOAPParams, *, n_train: int, n_test: int,
                 cache: Path | None) -> SpectraDataset:
    soap, info = make_soap(params, args.backend)
    _log(f"SOAP backend: {info['backend']} ({info['reason']})", args.quiet)
    return build_spectra_dataset(params, n_train_val=n_train, n_test=n_test, seed=args.seed, source=args.source,
                                 data_dir=args.data_dir, soap=soap, backend_info=info, cache_dir=cache,
                                 quiet=args.quiet)


def _plot_history(history: list[dict[str, Any]], path: Path, title: str) -> None:
    from pointsym.experiments.common.plotting import plot_history

    plot_history(history, path, panels=[("acc", "pixel accuracy (fraction)")], title=title, panel_size=(5.5, 3.5))


def _load_base(args: argparse.Namespace) -> tuple[dict[str, Any], SpectraDataset]:
    """Model bundle of ``args.model`` and its data set (rebuilt from the spectra cache)."""
    bundle = load_pixel_model(_bundle_path(args, args.model))
    params = SOAPParams(**bundle["soap"])
    data = bundle["data"]
    soap, info = make_soap(params, bundle["backend"]["backend"])
    _log(f"model {args.model!r}: SOAP {params.as_dict()}, backend {info['backend']}", args.quiet)
    from pointsym.datasets import DataNotFoundError

    try:
        ds = build_spectra_dataset(params, n_train_val=data["n_train"] + data["n_val"], n_test=data["n_test"],
                                   seed=data["seed"], source=data["source"], data_dir=args.data_dir, soap=soap,
                                   backend_info=info, cache_dir=_cache_dir(args), quiet=args.quiet)
    except DataNotFoundError as exc:
        # This experiment has no --source: the data source is the model's (set by `train --source`).
        raise DataNotFoundError(
            f"{str(exc).split(' For the small subset')[0]} This experiment reads the {data['source']!r} MNIST data "
            f"that model {args.model!r} was trained on; for the embedded subset train a model with "
            "`pointsym pixel-soap train --source embedded` and pass it with --model.") from exc
    # The bundle's scaler was fitted on exactly these training spectra; keep the stored one.
    ds.scaler = bundle["scaler"]
    return bundle, ds


# ---------------------------------------------------------------------------- experiments
def _train_main(args: argparse.Namespace) -> int:
    from pointsym.training import barrier, is_main_process

    t0 = time.perf_counter()
    validate_options(args, TrainOptions)
    check_option("--max-train", args.max_train, min=2, hint=" (the spectra are split into training and validation)")
    params = _validated_params(args)
    hidden = _ints(args.hidden, "--hidden")
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise FileNotFoundError(f"--init-from {args.init_from!r} does not exist (expected a pixel-soap model "
                                "OUT/checkpoints/<name>/model.pt or a Trainer checkpoint best.pt/last.pt).")
    ds = _dataset_for(args, params, n_train=args.max_train, n_test=args.max_test, cache=_cache_dir(args))
    t_spectra = time.perf_counter() - t0
    _log(f"spectra: train {len(ds.train)}, val {len(ds.val)}, test {len(ds.test)} x {params.n_features} "
         f"({t_spectra:.0f} s)", args.quiet)
    spec = {"soap": params.as_dict(), "backend": ds.backend["backend"], "data": ds.meta, "hidden": hidden,
            "lr": args.lr, "batch": args.batch_size}
    run_dir = _run_dir(args, args.name, spec)
    model, history = train_pixel_classifier(ds, hidden=hidden, epochs=args.epochs, patience=args.patience,
                                            batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                            out_dir=run_dir, device=args.device, quiet=args.quiet,
                                            restart=args.restart, init_from=args.init_from)
    if not is_main_process():
        # Under torchrun rank 0 alone evaluates and writes the model bundle, plots and JSON; the others wait.
        barrier()
        return 0
    try:
        return _train_report(args, params, hidden, ds, model, history, t0, t_spectra)
    finally:
        barrier()


def _train_report(args: argparse.Namespace, params: SOAPParams, hidden: tuple[int, ...], ds: SpectraDataset,
                  model: PixelMLP, history: list[dict[str, Any]], t0: float, t_spectra: float) -> int:
    model = model.cpu()
    X_te, y_te = ds.scaled("test")
    X_va, y_va = ds.scaled("val")
    m_te = classification_metrics(y_te, predict(model, X_te))
    m_va = classification_metrics(y_va, predict(model, X_va))
    best = max(history, key=lambda h: h["val_acc"]) if history else {}
    out = Path(args.out)
    cm_png = plot_confusion(m_te["confusion"], out / f"{args.name}_confusion.png",
                            f"pixel-wise SOAP, test ({len(y_te)} pixels): accuracy {m_te['accuracy']:.4f}")
    _plot_history(history, out / f"{args.name}_history.png", f"{args.name}: pixel accuracy per epoch")
    save_pixel_model(_bundle_path(args, args.name), model, ds,
                     {"test_metrics": {k: v for k, v in m_te.items() if k != "confusion"}})
    _log(f"test accuracy {m_te['accuracy']:.4f} (paper {PAPER['test_accuracy']}), val {m_va['accuracy']:.4f}",
         args.quiet)
    _save(args, args.name, {
        "test_accuracy": m_te["accuracy"], "test_recall": m_te["recall_macro"],
        "test_precision": m_te["precision_macro"], "test_f1": m_te["f1_macro"],
        "test_recall_weighted": m_te["recall_weighted"], "test_precision_weighted": m_te["precision_weighted"],
        "test_f1_weighted": m_te["f1_weighted"], "val_accuracy": m_va["accuracy"],
        "metric_averaging": "test_recall/precision/f1 are sklearn macro averages; *_weighted are weighted averages "
                            "(weighted recall == accuracy, as in the paper's table)",
        "params": {**params.as_dict(), "n_features": params.n_features, **ds.meta, "hidden": list(hidden),
                   "dropout": 0.1, "lr": args.lr, "batch_size": args.batch_size, "epochs_max": args.epochs,
                   "patience": args.patience},
        "epochs": len(history), "best_epoch": best.get("epoch"),
        "backend": ds.backend, "spectra_seconds": t_spectra,
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "confusion_matrix_row_normalised": m_te["confusion"],
        "history": history, "paper": PAPER,
        "images": [cm_png.name, f"{args.name}_history.png"],
    }, t0)
    return 0


def _search_main(args: argparse.Namespace) -> int:
    validate_options(args, SearchOptions)
    check_option("--max-train", args.max_train, min=2, hint=" (the spectra are split into training and validation)")
    t0 = time.perf_counter()
    trials = check_int("--trials", args.trials, minimum=1)
    rng = np.random.default_rng([args.seed, 10])
    space = [{"r_cut": int(rng.integers(2, 101)), "n_max": int(rng.integers(2, 12)), "l_max": int(rng.integers(2, 12)),
              "sigma": round(float(rng.uniform(1.0, 10.0)), 1)} for _ in range(trials)]
    progress_file = Path(args.out) / "checkpoints" / f"{args.name}_trials.json"
    done: dict[str, Any] = json.loads(progress_file.read_text()) if progress_file.is_file() else {}
    hidden = _ints(args.hidden, "--hidden")
    backend_info: dict[str, Any] = {}
    rows = []
    for k, p in enumerate(space):
        key = json.dumps({"trial": k, **p, "n_train": args.max_train, "n_test": args.max_test, "epochs": args.epochs,
                          "hidden": hidden, "seed": args.seed, "backend": args.backend}, sort_keys=True)
        if key in done:
            rows.append(done[key])
            continue
        t1 = time.perf_counter()
        params = SOAPParams(**p)
        row: dict[str, Any] = {"trial": k, **p, "n_features": params.n_features}
        try:
            ds = _dataset_for(args, params, n_train=args.max_train, n_test=args.max_test, cache=None)
            backend_info = ds.backend
            row["backend"] = ds.backend["backend"]
            model, history = train_pixel_classifier(ds, hidden=hidden, epochs=args.epochs, patience=args.patience,
                                                    seed=args.seed, device=args.device, quiet=True)
            X_te, y_te = ds.scaled("test")
            row.update(val_accuracy=max(h["val_acc"] for h in history),
                       test_accuracy=classification_metrics(y_te, predict(model.cpu(), X_te))["accuracy"],
                       epochs=len(history))
        except Exception as exc:  # noqa: BLE001 - a failing corner of the space is a result, not a crash
            row.update(val_accuracy=None, test_accuracy=None, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        row["seconds"] = time.perf_counter() - t1
        _log(f"trial {k + 1}/{trials} {p} -> val {row['val_accuracy']} ({row['seconds']:.0f} s)", args.quiet)
        rows.append(row)
        done[key] = row
        progress_file.parent.mkdir(parents=True, exist_ok=True)
        progress_file.write_text(json.dumps(done, indent=1))
    ok = sorted([r for r in rows if r.get("val_accuracy") is not None], key=lambda r: -r["val_accuracy"])
    out = Path(args.out)
    images = _plot_search(ok, out / f"{args.name}_scatter.png") if ok else []
    table = ["| rank | r_cut | n_max | l_max | sigma | features | val acc | test acc | epochs | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {i + 1} | {r['r_cut']} | {r['n_max']} | {r['l_max']} | {r['sigma']} | {r['n_features']} | "
              f"{r['val_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['epochs']} | {r['seconds']:.0f} |"
              for i, r in enumerate(ok)]
    (out / f"{args.name}_table.md").write_text("\n".join(table) + "\n")
    corr = {}
    if len(ok) >= 3:
        for p in ("r_cut", "n_max", "l_max", "sigma"):
            corr[p] = float(np.corrcoef([r[p] for r in ok], [r["val_accuracy"] for r in ok])[0, 1])
    _save(args, args.name, {
        "params": {"trials": trials, "n_train_val": args.max_train, "n_test": args.max_test, "epochs_max": args.epochs,
                   "patience": args.patience, "hidden": list(hidden), "seed": args.seed,
                   "ranges": {"r_cut": [2, 100], "n_max": [2, 11], "l_max": [2, 11], "sigma": [1.0, 10.0]}},
        "backend": backend_info, "best": ok[0] if ok else None, "trials": rows,
        "trials_seconds_total": float(sum(r["seconds"] for r in rows)),
        "pearson_r_with_val_accuracy": corr, "failed": [r for r in rows if r.get("val_accuracy") is None],
        "paper": {"trials": 168, "best": PAPER["params"], "val_accuracy": PAPER["val_accuracy"],
                  "finding": "r_cut has the largest influence; sigma best in 2-5; n_max, l_max matter little above ~6"},
        "images": images + [f"{args.name}_table.md"],
    }, t0)
    return 0


def _plot_search(rows: list[dict[str, Any]], path: Path) -> list[str]:
    from itertools import combinations

    from pointsym.experiments.common.plotting import plt

    names = ["r_cut", "n_max", "l_max", "sigma"]
    acc = np.array([r["val_accuracy"] for r in rows])
    fig, axes = plt.subplots(2, 5, figsize=(16, 6.2))
    axes = axes.ravel()
    for ax, p in zip(axes[:4], names):
        ax.scatter([r[p] for r in rows], acc, c=acc, cmap="viridis", s=25)
        ax.set_xlabel(p)
        ax.set_ylabel("validation accuracy")
    sc = None
    for ax, (a, b) in zip(axes[4:], combinations(names, 2)):
        sc = ax.scatter([r[a] for r in rows], [r[b] for r in rows], c=acc, cmap="viridis", s=25,
                        vmin=acc.min(), vmax=acc.max())
        ax.set_xlabel(a)
        ax.set_ylabel(b)
    fig.suptitle(f"Monte Carlo search ({len(rows)} trials), colour = validation accuracy (cf. paper Fig. 10)")
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if sc is not None:
        fig.colorbar(sc, cax=fig.add_axes((0.945, 0.12, 0.012, 0.76)), label="validation accuracy")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)  # not plotting.savefig: its tight_layout would move the colour-bar axes
    plt.close(fig)
    return [path.name]


def _parse_deep_grid(text: str) -> dict[int, tuple[int, ...]]:
    grid: dict[int, tuple[int, ...]] = {}
    for part in str(text).split(";"):
        if not part.strip():
            continue
        if ":" not in part:
            raise ValueError(f"Expected '--deep-grid' like '2:5,20,50;4:20' (h_m: h_e list), got {text!r}.")
        hm, hes = part.split(":", 1)
        grid[int(hm)] = _ints(hes, "--deep-grid")
    return grid


def _compress_main(args: argparse.Namespace) -> int:
    from sklearn.decomposition import PCA

    validate_options(args, CompressOptions)
    t0 = time.perf_counter()
    bundle, ds = _load_base(args)
    model = bundle["model"]
    X_tr, _ = ds.scaled("train")
    X_va, _ = ds.scaled("val")
    X_te, y_te = ds.scaled("test")
    d = X_tr.shape[1]
    rng = np.random.default_rng([args.seed, 20])
    n_fit = min(args.ae_train, len(X_tr))
    fit_idx = np.sort(rng.choice(len(X_tr), n_fit, replace=False))
    X_fit = X_tr[fit_idx]
    # Early-stopping/best-epoch monitor of the AEs: a validation subset (1/4 of the fit size) to save CPU time;
    # the reported MSE uses the whole validation split.
    X_mon = X_va[np.sort(rng.choice(len(X_va), min(len(X_va), max(1, n_fit // 4)), replace=False))]
    baseline = classification_metrics(y_te, predict(model, X_te))["accuracy"]
    _log(f"baseline test accuracy ({d} features): {baseline:.4f}", args.quiet)

    def evaluate(rec_val: np.ndarray, rec_test: np.ndarray) -> dict[str, float]:
        acc = classification_metrics(y_te, predict(model, rec_test))["accuracy"]
        return {"val_mse": float(np.mean((rec_val - X_va) ** 2)), "test_accuracy": acc,
                "relative_accuracy": acc / baseline}

    curves: dict[str, list[dict[str, Any]]] = {}
    pca = PCA(n_components=d, random_state=args.seed).fit(X_fit)
    curves["PCA"] = []
    for h in sorted({min(h, d) for h in _ints(args.h_e_pca, "--h-e-pca")}):
        def rec(X: np.ndarray, h: int = h) -> np.ndarray:
            Z = (X - pca.mean_) @ pca.components_[:h].T
            return (Z @ pca.components_[:h] + pca.mean_).astype(np.float32)
        curves["PCA"].append({"h_e": h, **evaluate(rec(X_va), rec(X_te))})
    _log("PCA done", args.quiet)
    jobs: list[tuple[str, int, int | None]] = [("linear AE", h, None) for h in _ints(args.h_e_linear, "--h-e-linear")]
    for hm, hes in _parse_deep_grid(args.deep_grid).items():
        jobs += [(f"deep AE h_m={hm}", h, hm) for h in hes]
    from pointsym.experiments.common.cli import progress

    for method, h, hm in progress(jobs, quiet=args.quiet, desc="autoencoders"):
        h = min(h, d)
        from pointsym.training import seed_everything

        seed_everything(args.seed)
        ae = LinearAutoencoder(d, h) if hm is None else DeepAutoencoder(d, h, hm)
        run_dir = _run_dir(args, "compress_ae", {"model": args.model, "method": method, "h_e": h, "n_fit": n_fit,
                                                 "lr": args.ae_lr, "batch": args.ae_batch, "seed": args.seed})
        t1 = time.perf_counter()
        ae, hist = fit_autoencoder(ae, X_fit, X_mon, epochs=args.ae_epochs, batch_size=args.ae_batch, lr=args.ae_lr,
                                   seed=args.seed, out_dir=run_dir, device=args.device, quiet=True)
        ae = ae.cpu()
        row = {"h_e": h, **evaluate(reconstruct(ae, X_va), reconstruct(ae, X_te)), "epochs": len(hist),
               "seconds": time.perf_counter() - t1}
        curves.setdefault(method, []).append(row)
        _log(f"{method} h_e={h}: val MSE {row['val_mse']:.4g}, test acc {row['test_accuracy']:.4f}", args.quiet)
    images = _plot_compression(curves, baseline, Path(args.out), args.name)
    _save(args, args.name, {
        "params": {"model": args.model, "soap": bundle["soap"], "ae_train_samples": n_fit,
                   "ae_monitor_val_samples": len(X_mon), "ae_epochs": args.ae_epochs,
                   "ae_lr": args.ae_lr, "ae_batch": args.ae_batch, "seed": args.seed,
                   "mse_on": "validation spectra (RobustScaler-scaled)",
                   "accuracy": "test spectra reconstructed by each method, classified by the unchanged baseline MLP"},
        "baseline_test_accuracy": baseline, "n_features": d, "curves": curves,
        "backend": bundle["backend"],
        "paper": {"figures": "Figs. 18-19", "finding": PAPER["compression"], "ae_epochs": PAPER["ae_epochs"],
                  "ae_lr": PAPER["ae_lr"], "ae_batch": PAPER["ae_batch"]},
        "images": images,
    }, t0)
    return 0


def _plot_compression(curves: dict[str, list[dict[str, Any]]], baseline: float, out: Path, name: str) -> list[str]:
    from pointsym.experiments.common.plotting import plt, savefig

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, rows in curves.items():
        rows = sorted(rows, key=lambda r: r["h_e"])
        style = "-" if method == "PCA" else "o-" if method == "linear AE" else "s--"
        for ax, scale in zip(axes, ("linear", "log")):
            ax.plot([r["h_e"] for r in rows], [r["val_mse"] for r in rows], style, label=method, ms=4)
            ax.set_yscale(scale)
    for ax, scale in zip(axes, ("linear", "log")):
        ax.set_xlabel("encoding dimension h_e")
        ax.set_ylabel(f"validation reconstruction MSE ({scale})")
        ax.legend(fontsize=8)
    fig.suptitle("SOAP compression: reconstruction error (cf. paper Fig. 18)")
    savefig(fig, out / f"{name}_mse.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, xmax in zip(axes, (None, 50)):
        for method, rows in curves.items():
            rows = sorted([r for r in rows if xmax is None or r["h_e"] <= xmax], key=lambda r: r["h_e"])
            style = "-" if method == "PCA" else "o-" if method == "linear AE" else "s--"
            ax.plot([r["h_e"] for r in rows], [r["test_accuracy"] for r in rows], style, label=method, ms=4)
        ax.axhline(baseline, color="k", lw=0.8, ls=":", label="uncompressed")
        ax.axhline(0.95 * baseline, color="gray", lw=0.8, ls="--", label="95 % of uncompressed")
        ax.set_xlabel("encoding dimension h_e")
        ax.set_ylabel("test pixel accuracy")
        ax.set_title("all h_e" if xmax is None else f"h_e <= {xmax}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Test accuracy of the baseline MLP on reconstructed spectra (cf. paper Fig. 19)")
    savefig(fig, out / f"{name}_accuracy.png")
    return [f"{name}_mse.png", f"{name}_accuracy.png"]


def _noise_main(args: argparse.Namespace) -> int:
    from pointsym.datasets import load_mnist

    validate_options(args, NoiseOptions)
    t0 = time.perf_counter()
    bundle, ds = _load_base(args)
    model, scaler = bundle["model"], bundle["scaler"]
    x_te, _ = load_mnist("test", source=bundle["data"]["source"], data_dir=args.data_dir)
    n = min(args.max_test, len(ds.test))
    test = ds.test.subset(np.arange(n))
    soap, _ = make_soap(SOAPParams(**bundle["soap"]), bundle["backend"]["backend"])
    key = {"soap": bundle["soap"], "backend": bundle["backend"]["backend"]}
    base = classification_metrics(test.y, predict(model, scaler.transform(test.X).astype(np.float32)))["accuracy"]
    rows = []
    for s in noise_sigmas(args.steps, args.sigma_min, args.sigma_max):
        t1 = time.perf_counter()
        X = pixel_spectra(x_te, test.image_index, test.pixels, soap, sigma_disturbance=float(s), seed=args.seed,
                          cache_dir=_cache_dir(args), cache_key=key, quiet=args.quiet, desc=f"sigma={s:.3g}")
        acc = classification_metrics(test.y, predict(model, scaler.transform(X).astype(np.float32)))["accuracy"]
        rows.append({"sigma_disturbance": float(s), "test_accuracy": acc, "relative_accuracy": acc / base,
                     "seconds": time.perf_counter() - t1})
        _log(f"sigma {s:.3f}: accuracy {acc:.4f} ({acc / base:.1%} of baseline)", args.quiet)
    sig = np.array([r["sigma_disturbance"] for r in rows])
    rel = np.array([r["relative_accuracy"] for r in rows])
    at = {f"relative_accuracy_at_{v}": float(np.interp(np.log(v), np.log(sig), rel)) for v in (0.5, 1.0, 3.9)
          if sig.min() <= v <= sig.max()}
    from pointsym.experiments.common.plotting import plt, savefig

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(sig, [r["test_accuracy"] for r in rows], "o-", label="pixel-wise SOAP MLP")
    ax.axhline(base, color="k", ls=":", lw=0.8, label=f"no noise ({base:.3f})")
    ax.axhline(0.1, color="gray", ls="--", lw=0.8, label="random guess (0.1)")
    ax.axvline(1.0, color="r", lw=0.6, alpha=0.5)
    ax.set_xlabel("sigma_disturbance (pixels)")
    ax.set_ylabel("test pixel accuracy")
    ax.set_title("Robustness to Gaussian point displacement (cf. paper Fig. 20)", fontsize=9)
    ax.legend(fontsize=8)
    savefig(fig, Path(args.out) / f"{args.name}.png")
    _save(args, args.name, {
        "params": {"model": args.model, "soap": bundle["soap"], "n_test": n, "steps": args.steps,
                   "sigma_min": args.sigma_min, "sigma_max": args.sigma_max, "seed": args.seed,
                   "noise": "N(0, sigma^2) added to x, y and z of every point of each test image (Algorithm 1)"},
        "baseline_test_accuracy": base, "curve": rows, **at, "backend": bundle["backend"],
        "paper": {"figure": "Fig. 20", "finding": PAPER["noise"], "relative_accuracy_at_1.0": 0.92,
                  "relative_accuracy_at_3.9": 0.51},
        "images": [f"{args.name}.png"],
    }, t0)
    return 0


def _rotations_main(args: argparse.Namespace) -> int:
    from pointsym.datasets import load_mnist

    validate_options(args, RotationsOptions)
    t0 = time.perf_counter()
    bundle, ds = _load_base(args)
    model, scaler = bundle["model"], bundle["scaler"]
    src = bundle["data"]["source"]
    x_tr, _ = load_mnist("train", source=src, data_dir=args.data_dir)
    x_te, _ = load_mnist("test", source=src, data_dir=args.data_dir)
    n = min(args.max_test, len(ds.test))
    test = ds.test.subset(np.arange(n))
    soap, _ = make_soap(SOAPParams(**bundle["soap"]), bundle["backend"]["backend"])

    # The patch CNN sees the same training/validation pixels as the SOAP MLP (a subset for CPU time).
    rng = np.random.default_rng([args.seed, 30])
    tr = ds.train.subset(np.sort(rng.choice(len(ds.train), min(args.cnn_train, len(ds.train)), replace=False)))
    va = ds.val.subset(np.sort(rng.choice(len(ds.val), min(args.cnn_train // 4 or 1, len(ds.val)), replace=False)))
    h = args.patch_half
    from pointsym.training import seed_everything

    seed_everything(args.seed)
    cnn = PatchCNN(2 * h + 1)
    run_dir = _run_dir(args, "rotations_cnn", {"model": args.model, "n": len(tr), "h": h, "seed": args.seed})
    _log(f"training patch CNN on {len(tr)} pixels ({2 * h + 1}x{2 * h + 1} patches)", args.quiet)
    cnn, hist, _ = fit_classifier(cnn, extract_patches(x_tr, tr.image_index, tr.pixels, h), tr.y,
                                  extract_patches(x_tr, va.image_index, va.pixels, h), va.y, epochs=args.cnn_epochs,
                                  patience=args.patience, seed=args.seed, out_dir=run_dir, device=args.device,
                                  quiet=args.quiet)
    cnn = cnn.cpu()
    rows = []
    X_ref = None
    for name in TRANSFORMS:
        t1 = time.perf_counter()
        imgs = transform_image(x_te, name)
        pix = transform_pixels(test.pixels, x_te.shape[1:], name)
        # float64 spectra (no cache) so that the invariance of SOAP is visible at round-off level.
        X = pixel_spectra(imgs, test.image_index, pix, soap, quiet=args.quiet, desc=f"{name} spectra")
        if X_ref is None:
            X_ref = X
        soap_acc = classification_metrics(test.y, predict(model, scaler.transform(X).astype(np.float32)))["accuracy"]
        cnn_acc = classification_metrics(test.y, predict(cnn, extract_patches(imgs, test.image_index, pix, h)))
        rows.append({"transform": name, "soap_mlp_accuracy": soap_acc, "patch_cnn_accuracy": cnn_acc["accuracy"],
                     "soap_max_rel_spectrum_change": float(np.max(np.abs(X - X_ref)) / np.max(np.abs(X_ref))),
                     "seconds": time.perf_counter() - t1})
        _log(f"{name}: SOAP MLP {soap_acc:.4f}, patch CNN {cnn_acc['accuracy']:.4f}", args.quiet)
    from pointsym.experiments.common.plotting import plt, savefig

    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [r["soap_mlp_accuracy"] for r in rows], 0.4, label="SOAP MLP (invariant)")
    ax.bar(xs + 0.2, [r["patch_cnn_accuracy"] for r in rows], 0.4, label=f"patch CNN ({2 * h + 1}x{2 * h + 1})")
    ax.axhline(0.1, color="gray", ls="--", lw=0.8)
    ax.set_xticks(xs, [r["transform"] for r in rows])
    ax.set_ylabel("test pixel accuracy")
    ax.set_title("Rotated / mirrored test digits, models trained on upright digits only", fontsize=9)
    ax.legend(fontsize=8)
    savefig(fig, Path(args.out) / f"{args.name}.png")
    _save(args, args.name, {
        "params": {"model": args.model, "soap": bundle["soap"], "n_test": n, "cnn_train_pixels": len(tr),
                   "cnn_val_pixels": len(va), "cnn_epochs_max": args.cnn_epochs, "patch": 2 * h + 1,
                   "cnn": cnn.hypers, "seed": args.seed,
                   "transforms": "numpy rot90 (counter-clockwise) and flips of the test images; the classified "
                                 "pixel is the image of the original test pixel"},
        "cnn_epochs": len(hist), "cnn_val_accuracy": max(r["val_acc"] for r in hist) if hist else None,
        "results": rows, "backend": bundle["backend"],
        "paper": "not in the paper; Section 4.2.4 argues SOAP needs no rotation/mirror augmentation and Fig. 12 "
                 "shows a rotated+mirrored 7 read as a 4",
        "images": [f"{args.name}.png"],
    }, t0)
    return 0


def _backend_main(args: argparse.Namespace) -> int:
    from pointsym.datasets import load_mnist

    validate_options(args, BackendOptions)
    t0 = time.perf_counter()
    params = _validated_params(args)
    x, _ = load_mnist("test", source=args.source, data_dir=args.data_dir)
    rows = []
    for k in range(args.n_images):
        t1 = time.perf_counter()
        try:
            r = compare_backends(params, x[k])
        except Exception as exc:  # noqa: BLE001 - report, e.g. pointsym SOAP not importable yet
            r = {"agree": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        rows.append({"image": k, **r, "seconds": time.perf_counter() - t1})
        _log(f"image {k}: {r}", args.quiet)
    agree = all(r.get("agree") for r in rows)
    # Throughput of the pipeline's access pattern: one centre per lifted digit, many digits per call.
    speed: dict[str, Any] = {}
    idx, pix = sample_pixels(x, args.n_speed, np.random.default_rng([args.seed, 40]))
    for name in ("dscribe", "pointsym"):
        try:
            soap, _ = make_soap(params, name)
            t1 = time.perf_counter()
            pixel_spectra(x, idx, pix, soap)
            speed[name] = {"ms_per_spectrum": 1e3 * (time.perf_counter() - t1) / args.n_speed}
        except Exception as exc:  # noqa: BLE001
            speed[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        _log(f"{name}: {speed[name]}", args.quiet)
    model_check = None
    if args.model:
        # The trained model on test spectra recomputed by pointsym's SOAP vs the spectra it was evaluated on.
        bundle, ds = _load_base(args)
        n = min(args.n_model, len(ds.test))
        test = ds.test.subset(np.arange(n))
        x_te, _ = load_mnist("test", source=bundle["data"]["source"], data_dir=args.data_dir)
        soap, _ = make_soap(SOAPParams(**bundle["soap"]), "pointsym")
        X_ps = pixel_spectra(x_te, test.image_index, test.pixels, soap, quiet=args.quiet, desc="pointsym spectra")
        scaler, model = bundle["scaler"], bundle["model"]
        p_ref = predict(model, scaler.transform(test.X).astype(np.float32))
        p_ps = predict(model, scaler.transform(X_ps).astype(np.float32))
        model_check = {"model": args.model, "model_backend": bundle["backend"]["backend"], "n_test": n,
                       "accuracy_model_backend": float(np.mean(p_ref == test.y)),
                       "accuracy_pointsym_spectra": float(np.mean(p_ps == test.y)),
                       "prediction_agreement": float(np.mean(p_ref == p_ps)),
                       "max_rel_spectrum_diff_vs_cached_float32":
                           float(np.abs(X_ps - test.X).max() / np.abs(test.X).max())}
        _log(f"model check: {model_check}", args.quiet)
    _save(args, args.name, {"params": params.as_dict(), "tolerance_rel": 1e-6, "agree": agree, "images": rows,
                            "speed": {"n_spectra": args.n_speed, "threads": torch.get_num_threads(), **speed},
                            "model_check": model_check}, t0)
    return 0 if agree else 1


# ---------------------------------------------------------------------------- argparse
_HIDDEN = ",".join(map(str, DEFAULT_HIDDEN))

#: Option help of the SOAP parameters; their defaults live in :class:`SOAPParams`.
_SOAP_OPTIONS: dict[str, dict[str, Any]] = {
    "r_cut": {"help": "cutoff radius", "unit": "pixels", "gt": 0.0},
    "n_max": {"help": "radial basis functions", "min": 1},
    "l_max": {"help": "max angular degree (0-20)", "min": 0, "max": 20},
    "sigma": {"help": "Gaussian width", "unit": "pixels", "gt": 0.0},
}


@dataclass
class _SpectraOptions:
    backend: str = field(default="auto", metadata={
        "help": "SOAP implementation: auto = pointsym if it agrees with DScribe, else DScribe", "choices": BACKENDS})
    cache_dir: str | None = field(default=None, metadata={"help": "spectra cache",
                                                          "default_help": "<out>/checkpoints/spectra_cache"})


@dataclass
class TrainOptions(_SpectraOptions):
    """Options of ``pixel-soap train`` (plus SOAP parameters, ``--max-train``/``--max-test`` and the shared groups)."""

    hidden: str = field(default=_HIDDEN, metadata={"help": "hidden widths of the MLP (paper: not given)"})
    epochs: int = field(default=300, metadata={"help": "max epochs (paper: 300)", "min": 1})
    patience: int = field(default=20, metadata={"help": "early-stopping patience on val accuracy", "unit": "epochs",
                                                "min": 1})
    batch_size: int = field(default=128, metadata={"help": "batch size (paper: 128)", "unit": "spectra", "min": 1})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (paper: 1e-3)", "gt": 0.0})
    restart: bool = field(default=False, metadata={
        "help": "start fresh: move this run's checkpoints aside (to previous/<n>/, not deleted) instead of resuming",
        "action": "store_true"})
    init_from: str | None = field(default=None, metadata={
        "help": "start from the weights of a pixel-soap model (OUT/checkpoints/<name>/model.pt) or a Trainer "
                "checkpoint, with a fresh optimizer", "metavar": "PATH"})
    name: str = field(default="paper_setting", metadata={"help": "results name"})

    def validate(self) -> None:
        _ints(self.hidden, "--hidden")


@dataclass
class SearchOptions(_SpectraOptions):
    """Options of ``pixel-soap search``."""

    trials: int = field(default=168, metadata={"help": "number of random trials (paper: 168)", "min": 1})
    hidden: str = field(default=_HIDDEN, metadata={"help": "MLP hidden widths"})
    epochs: int = field(default=300, metadata={"help": "max epochs per trial (paper: 300)", "min": 1})
    patience: int = field(default=10, metadata={"help": "early-stopping patience", "unit": "epochs", "min": 1})
    name: str = field(default="search", metadata={"help": "results name"})

    def validate(self) -> None:
        _ints(self.hidden, "--hidden")


@dataclass
class _ModelOptions:
    model: str = field(default="paper_setting", metadata={
        "help": "name of a `pixel-soap train` run whose model is used"})
    cache_dir: str | None = field(default=None, metadata={"help": "spectra cache",
                                                          "default_help": "<out>/checkpoints/spectra_cache"})


@dataclass
class CompressOptions(_ModelOptions):
    """Options of ``pixel-soap compress``."""

    h_e_pca: str = field(default="1,2,3,5,7,10,15,20,30,40,50,75,100,125,150,175,200,250,300,308",
                         metadata={"help": "PCA encoding dimensions"})
    h_e_linear: str = field(default="2,5,10,20,50,100,200,300", metadata={"help": "linear AE encoding dimensions"})
    deep_grid: str = field(default="2:2,5,10,20,50,100,200;4:2,5,10,20,50,100,200;10:2,5,10,20,50,100,200",
                           metadata={"help": "deep AE runs as 'h_m:h_e,h_e;h_m:...' (paper: h_m in {2,4,10})"})
    ae_train: int = field(default=96_000, metadata={
        "help": "training spectra for PCA/AEs (96,000 = all of the paper setting)", "min": 2})
    ae_epochs: int = field(default=10_000, metadata={"help": "AE epochs (paper: 10,000)", "min": 1})
    ae_lr: float = field(default=1e-4, metadata={"help": "AE Adam learning rate (paper: 1e-4)", "gt": 0.0})
    ae_batch: int = field(default=512, metadata={"help": "AE batch size (paper: 512)", "unit": "spectra", "min": 1})
    name: str = field(default="compress", metadata={"help": "results name"})

    def validate(self) -> None:
        for flag, text in (("--h-e-pca", self.h_e_pca), ("--h-e-linear", self.h_e_linear)):
            if min(_ints(text, flag)) < 1:
                raise ValueError(f"{flag} must list encoding dimensions >= 1 (got {text!r}).")
        for hm, hes in _parse_deep_grid(self.deep_grid).items():
            if hm < 1 or min(hes) < 1:
                raise ValueError(f"--deep-grid must hold dimensions >= 1 (got {self.deep_grid!r}).")


@dataclass
class NoiseOptions(_ModelOptions):
    """Options of ``pixel-soap noise`` (plus ``--max-test``)."""

    steps: int = field(default=20, metadata={"help": "number of sigma values, >= 2 (paper: 20)", "min": 2})
    sigma_min: float = field(default=0.1, metadata={"help": "smallest sigma_disturbance (paper: 0.1)",
                                                    "unit": "pixels", "gt": 0.0})
    sigma_max: float = field(default=5.0, metadata={"help": "largest sigma_disturbance (paper: 5.0)",
                                                    "unit": "pixels", "gt": 0.0})
    name: str = field(default="noise", metadata={"help": "results name"})

    def validate(self) -> None:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"--sigma-min must be smaller than --sigma-max (got {self.sigma_min} and "
                             f"{self.sigma_max}); the sigmas run from --sigma-min up to --sigma-max.")


@dataclass
class RotationsOptions(_ModelOptions):
    """Options of ``pixel-soap rotations`` (plus ``--max-test``)."""

    cnn_train: int = field(default=30_000, metadata={"help": "training pixels of the CNN", "min": 1})
    cnn_epochs: int = field(default=20, metadata={"help": "CNN max epochs", "min": 1})
    patience: int = field(default=5, metadata={"help": "CNN early-stopping patience", "unit": "epochs", "min": 1})
    patch_half: int = field(default=20, metadata={
        "help": "patch half width h: (2h+1)^2 patches, h >= 3 (the CNN needs 7x7 patches or larger)",
        "unit": "pixels", "min": 3})
    name: str = field(default="rotations", metadata={"help": "results name"})


@dataclass
class BackendOptions:
    """Options of ``pixel-soap backend`` (plus SOAP parameters)."""

    n_images: int = field(default=3, metadata={"help": "test digits compared, all pixels each", "min": 1})
    n_speed: int = field(default=500, metadata={"help": "spectra timed per backend", "min": 1})
    model: str | None = field(default=None, metadata={
        "help": "also classify test pixels of this `train` run with spectra from pointsym's SOAP"})
    n_model: int = field(default=2000, metadata={"help": "test pixels for --model", "min": 1})
    cache_dir: str | None = field(default=None, metadata={"help": "spectra cache",
                                                          "default_help": "<out>/checkpoints/spectra_cache"})
    name: str = field(default="backend_check", metadata={"help": "results name"})


def _soap_args(p: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(p, SOAPParams, overrides=_SOAP_OPTIONS, group="SOAP (paper's best: 63, 7, 10, 3)")


def _spectra_limits(p: argparse.ArgumentParser) -> None:
    add_limit_arguments(p, train="train+val spectra T (sampled from random training images)",
                        test="test spectra (one per test image)", defaults={"train": 120_000, "test": 10_000},
                        aliases={"train": ["--n-train"], "test": ["--n-test"]})


def _test_limit(p: argparse.ArgumentParser, text: str) -> None:
    add_limit_arguments(p, test=text, defaults={"test": 10_000}, aliases={"test": ["--n-test"]})


def register(sub: Any) -> None:
    """Add ``pointsym pixel-soap {train,search,compress,noise,rotations,backend}``."""
    p = sub.add_parser("pixel-soap", help="pixel-wise SOAP on MNIST (paper 000): train, search, compress, noise, "
                                          "rotations", description=__doc__.split("\n\n")[0])
    exp = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    out = "results/pixel_soap"

    t = exp.add_parser("train", help="train the pixel MLP at one SOAP setting (paper: Table 1, Fig. 9)")
    add_common_arguments(t, results=out, source="MNIST")
    _soap_args(t)
    _spectra_limits(t)
    add_dataclass_arguments(t, TrainOptions, group="train")
    t.set_defaults(func=_train_main)

    s = exp.add_parser("search", help="Monte Carlo search over r_cut, n_max, l_max, sigma (paper: Fig. 10)")
    add_common_arguments(s, results=out, source="MNIST")
    _spectra_limits(s)
    add_dataclass_arguments(s, SearchOptions, group="search")
    s.set_defaults(func=_search_main)

    c = exp.add_parser("compress", help="PCA / linear AE / deep AE compression (paper: Figs. 18-19)")
    add_common_arguments(c, results=out)
    add_dataclass_arguments(c, CompressOptions, group="compress")
    c.set_defaults(func=_compress_main)

    n = exp.add_parser("noise", help="accuracy vs Gaussian displacement of the points (paper: Fig. 20)")
    add_common_arguments(n, results=out)
    _test_limit(n, "test pixels (paper: 10,000)")
    add_dataclass_arguments(n, NoiseOptions, group="noise")
    n.set_defaults(func=_noise_main)

    r = exp.add_parser("rotations", help="rotated/mirrored test digits: SOAP MLP vs patch CNN (beyond the paper)")
    add_common_arguments(r, results=out)
    _test_limit(r, "test pixels")
    add_dataclass_arguments(r, RotationsOptions, group="rotations")
    r.set_defaults(func=_rotations_main)

    b = exp.add_parser("backend", help="compare pointsym's SOAP with DScribe on lifted test digits")
    add_common_arguments(b, results=out, source="MNIST")
    _soap_args(b)
    add_dataclass_arguments(b, BackendOptions, group="backend")
    b.set_defaults(func=_backend_main)
