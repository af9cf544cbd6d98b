"""Pixel-wise SOAP data (paper 000): images -> 3D points -> per-pixel SOAP spectra.

Algorithm 1 (:func:`image_to_points`, defined in :mod:`pointsym.descriptors` and
re-exported here), Algorithm 3 (:func:`sample_pixels` +
:func:`pixel_spectra` + :func:`build_spectra_dataset`) and the SOAP backend adapter
(:func:`make_soap`). Spectra are cached on disk as ``.npz`` keyed by everything that
determines them, and computed in chunks so that an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pointsym.core import check_choice, check_int, check_positive
from pointsym.descriptors import image_to_points, pixel_point_index

__all__ = [
    "SOAPParams",
    "PixelSpectra",
    "SpectraDataset",
    "BACKENDS",
    "build_spectra_dataset",
    "compare_backends",
    "fit_scaler",
    "image_to_points",
    "make_soap",
    "pixel_point_index",
    "pixel_spectra",
    "sample_pixels",
]

log = logging.getLogger("pointsym.pixel_soap")

BACKENDS = ("auto", "pointsym", "dscribe")
# Dummy chemical species of every lifted pixel (one species, as in the paper).
SPECIES = "H"
_SPECIES_NUMBER = 1
# Agreement required between pointsym's SOAP and DScribe before "auto" uses pointsym.
BACKEND_RTOL = 1e-6


# ---------------------------------------------------------------------------- Algorithm 1
# image_to_points (Algorithm 1) and pixel_point_index live in pointsym.descriptors and are re-exported here.


# ---------------------------------------------------------------------------- SOAP backend
@dataclass(frozen=True)
class SOAPParams:
    """SOAP hyper-parameters of the pixel pipeline (paper's best: 63, 7, 10, 3 -> 308 features)."""

    r_cut: float = 63.0
    n_max: int = 7
    l_max: int = 10
    sigma: float = 3.0

    def __post_init__(self) -> None:
        check_positive("r_cut", self.r_cut)
        check_int("n_max", self.n_max, minimum=1)
        check_int("l_max", self.l_max, minimum=0)
        check_positive("sigma", self.sigma)

    @property
    def n_features(self) -> int:
        """Length of the single-species power spectrum, ``n_max (n_max + 1) / 2 * (l_max + 1)``."""
        return self.n_max * (self.n_max + 1) // 2 * (self.l_max + 1)

    def as_dict(self) -> dict[str, Any]:
        return {"r_cut": float(self.r_cut), "n_max": int(self.n_max), "l_max": int(self.l_max),
                "sigma": float(self.sigma)}


def _construct(backend: str, params: SOAPParams) -> Any:
    kwargs = dict(species=[SPECIES], r_cut=float(params.r_cut), n_max=int(params.n_max), l_max=int(params.l_max),
                  sigma=float(params.sigma), periodic=False)
    if backend == "pointsym":
        from pointsym.descriptors import SOAP  # noqa: PLC0415 - optional, written in parallel
    else:
        from dscribe.descriptors import SOAP  # noqa: PLC0415
    with warnings.catch_warnings():
        # DScribe's GTO orthonormalisation is ill-conditioned at large r_cut (LinAlgWarning); harmless here.
        warnings.simplefilter("ignore")
        return SOAP(**kwargs)


def _atoms(points: np.ndarray) -> Any:
    from ase import Atoms

    # numbers= instead of a formula string: parsing "HHH..." costs ~5 ms per system.
    return Atoms(numbers=np.full(len(points), _SPECIES_NUMBER), positions=points, pbc=False)


def _create(soap: Any, point_sets: list[np.ndarray], centers: list[int]) -> np.ndarray:
    """Spectra at one centre per point set: ``(len(point_sets), n_features)`` float64."""
    systems = [_atoms(p) for p in point_sets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = soap.create(systems, centers=[[int(c)] for c in centers], n_jobs=1)
    arr = np.asarray(out, dtype=np.float64)
    return arr.reshape(len(point_sets), -1)


_REFERENCE_DIGIT = np.array(  # a small hand-drawn "7", used to check a backend against DScribe
    [[0, 0, 0, 0, 0, 0, 0, 0],
     [0, 90, 200, 255, 255, 240, 60, 0],
     [0, 0, 0, 0, 30, 250, 40, 0],
     [0, 0, 0, 0, 180, 120, 0, 0],
     [0, 0, 0, 60, 250, 10, 0, 0],
     [0, 0, 0, 200, 130, 0, 0, 0],
     [0, 0, 15, 255, 40, 0, 0, 0],
     [0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float64)


def compare_backends(params: SOAPParams, image: Any = None, n_centers: int | None = None) -> dict[str, Any]:
    """Max relative difference between pointsym's SOAP and DScribe on a lifted image.

    Args:
        params: SOAP hyper-parameters.
        image: grayscale image (default: a small built-in hand-drawn digit).
        n_centers: number of pixels compared (default: all).

    Returns:
        dict with ``max_rel_diff`` (max |a - b| / max |b|), ``max_abs_diff``, ``n_centers``,
        ``n_features`` and ``agree`` (``max_rel_diff <= 1e-6``).
    """
    pts = image_to_points(_REFERENCE_DIGIT if image is None else image)
    centers = list(range(len(pts)))[: n_centers or len(pts)]
    a = _create(_construct("pointsym", params), [pts] * len(centers), centers)
    b = _create(_construct("dscribe", params), [pts] * len(centers), centers)
    if a.shape != b.shape:
        return {"agree": False, "max_rel_diff": float("inf"), "max_abs_diff": float("inf"),
                "n_centers": len(centers), "n_features": int(b.shape[1]),
                "reason": f"shape mismatch: pointsym {a.shape} vs dscribe {b.shape}"}
    diff = float(np.max(np.abs(a - b)))
    rel = diff / max(float(np.max(np.abs(b))), 1e-300)
    return {"agree": bool(np.isfinite(rel) and rel <= BACKEND_RTOL), "max_rel_diff": rel, "max_abs_diff": diff,
            "n_centers": len(centers), "n_features": int(b.shape[1])}


def make_soap(params: SOAPParams, backend: str = "auto") -> tuple[Any, dict[str, Any]]:
    """Build the SOAP calculator used by the pixel pipeline.

    ``backend="auto"`` uses :class:`pointsym.descriptors.SOAP` when it is importable and agrees
    with DScribe (max relative difference <= 1e-6 on a lifted digit; when DScribe is not
    installed it is used unchecked), otherwise DScribe 2.1's ``SOAP`` with the same keywords.

    Returns:
        ``(soap, info)``; ``info`` records ``backend`` (the one used) and ``reason``.
    """
    check_choice("backend", backend, BACKENDS)
    if not isinstance(params, SOAPParams):
        raise TypeError(f"Expected 'params' to be a SOAPParams (got {type(params).__name__}).")
    info: dict[str, Any] = {"requested": backend}
    if backend == "auto":
        try:
            _construct("pointsym", params)
        except Exception as exc:  # noqa: BLE001 - any failure means: fall back to DScribe
            info.update(backend="dscribe", reason=f"pointsym.descriptors.SOAP unavailable ({type(exc).__name__}: "
                                                  f"{str(exc)[:120]})")
        else:
            try:
                import dscribe  # noqa: F401, PLC0415
            except ImportError:
                info.update(backend="pointsym", reason="pointsym SOAP importable; DScribe absent, no cross-check")
            else:
                try:
                    check = compare_backends(params, n_centers=8)
                except Exception as exc:  # noqa: BLE001
                    check = {"agree": False, "reason": f"{type(exc).__name__}: {str(exc)[:120]}"}
                info["check"] = check
                if check.get("agree"):
                    info.update(backend="pointsym", reason="pointsym SOAP agrees with DScribe "
                                                           f"(max rel diff {check['max_rel_diff']:.2e})")
                else:
                    info.update(backend="dscribe", reason="pointsym SOAP does not agree with DScribe "
                                                          f"({check.get('max_rel_diff', check.get('reason'))})")
    else:
        info.update(backend=backend, reason="requested explicitly")
    soap = _construct(info["backend"], params)
    n_feat = int(soap.get_number_of_features())
    if n_feat != params.n_features:
        raise ValueError(f"SOAP backend {info['backend']!r} reports {n_feat} features, expected "
                         f"{params.n_features} for n_max={params.n_max}, l_max={params.l_max}.")
    log.info("pixel SOAP backend: %s (%s)", info["backend"], info["reason"])
    return soap, info


# ---------------------------------------------------------------------------- Algorithm 3
def _points_per_image(images: np.ndarray) -> np.ndarray:
    return np.count_nonzero(np.floor(images.astype(np.float64) / 10.0) > 0, axis=(1, 2))


def sample_pixels(
    images: np.ndarray, n_samples: int, rng: np.random.Generator | int, *, one_per_image: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Random (image, pixel) pairs as in Algorithm 3.

    Each sample picks a random image (uniformly, with replacement) and then a random point
    of that image's lifted point set (uniformly). ``one_per_image=True`` instead takes every
    image once, in random order, with one random point each (requires
    ``n_samples <= len(images)``; used for the test set: 10,000 spectra from 10,000 images).

    Args:
        images: ``(n_images, rows, cols)`` grayscale images.
        n_samples: number of spectra T.
        rng: generator or seed.

    Returns:
        image_index ``(T,)`` int64 and pixels ``(T, 2)`` int64 ``(row, col)`` of the centre.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"Expected 'images' of shape (n_images, rows, cols) (got shape {images.shape}).")
    n_samples = check_int("n_samples", n_samples, minimum=1)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    counts = _points_per_image(images)
    if np.any(counts == 0):
        bad = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"images[{bad}] has no pixel with floor(I / 10) > 0; remove empty images first.")
    if one_per_image:
        if n_samples > len(images):
            raise ValueError(f"one_per_image=True needs n_samples <= len(images) (got {n_samples} > {len(images)}).")
        image_index = gen.permutation(len(images))[:n_samples]
    else:
        image_index = gen.integers(0, len(images), size=n_samples)
    point_index = np.floor(gen.random(n_samples) * counts[image_index]).astype(np.int64)
    pixels = np.empty((n_samples, 2), dtype=np.int64)
    for t, (k, p) in enumerate(zip(image_index, point_index)):
        rows, cols = np.nonzero(np.floor(images[k].astype(np.float64) / 10.0) > 0)
        pixels[t] = rows[p], cols[p]
    return image_index.astype(np.int64), pixels


def _array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def pixel_spectra(
    images: np.ndarray,
    image_index: np.ndarray,
    pixels: np.ndarray,
    soap: Any,
    *,
    sigma_disturbance: float = 0.0,
    seed: int = 0,
    batch_size: int = 1024,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_key: dict[str, Any] | None = None,
    chunk_size: int = 10_000,
    quiet: bool = True,
    desc: str = "spectra",
) -> np.ndarray:
    """SOAP spectrum of one pixel per sample, computing only the sampled centre.

    Sample ``t`` lifts ``images[image_index[t]]`` with :func:`image_to_points` (displaced
    with ``sigma_disturbance`` using the generator ``default_rng([seed, t])``, so results do
    not depend on batching or resuming) and evaluates SOAP at the point of pixel
    ``pixels[t]``. Many images go into one ``soap.create`` call.

    Args:
        images: ``(n_images, rows, cols)`` images.
        image_index: ``(T,)`` image of each sample.
        pixels: ``(T, 2)`` ``(row, col)`` centre pixel of each sample (must be kept, z > 0).
        soap: SOAP calculator from :func:`make_soap`.
        sigma_disturbance: Gaussian displacement of all points (pixels), default 0.
        seed: seed of the displacements.
        batch_size: images per ``create`` call.
        cache_dir: when given, results are stored as ``<cache_dir>/<key>.npz`` (float32) and
            chunks of ``chunk_size`` samples are saved while computing, so a run resumes.
        cache_key: extra JSON-able identification (SOAP parameters, backend) for the cache key.
        quiet: no progress bar.

    Returns:
        float64 ``(T, n_features)`` (float32 precision when read from the cache).
    """
    from pointsym.experiments.common.cli import progress

    images = np.asarray(images)
    image_index = np.asarray(image_index, dtype=np.int64)
    pixels = np.asarray(pixels, dtype=np.int64)
    n = len(image_index)
    if pixels.shape != (n, 2):
        raise ValueError(f"Expected 'pixels' of shape ({n}, 2) to match 'image_index' (got {pixels.shape}).")
    sigma_disturbance = check_positive("sigma_disturbance", sigma_disturbance, allow_zero=True)
    check_int("batch_size", batch_size, minimum=1)
    path = partial_dir = None
    if cache_dir is not None:
        key = hashlib.sha1(json.dumps({
            "images": _array_digest(images), "samples": _array_digest(image_index, pixels),
            "sigma_disturbance": sigma_disturbance, "seed": int(seed), **(cache_key or {}),
        }, sort_keys=True, default=str).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"spectra_{key}.npz"
        if path.is_file():
            with np.load(path) as d:
                return d["X"].astype(np.float64)
        partial_dir = Path(cache_dir) / f"spectra_{key}.partial"
        partial_dir.mkdir(parents=True, exist_ok=True)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1) if partial_dir is not None else n
    chunks = []
    starts = range(0, n, chunk_size)
    bar = progress(total=n, quiet=quiet, desc=desc, iterable=None) if not quiet else None
    for start in starts:
        stop = min(start + chunk_size, n)
        chunk_file = partial_dir / f"chunk_{start:09d}_{stop:09d}.npy" if partial_dir is not None else None
        if chunk_file is not None and chunk_file.is_file():
            chunks.append(np.load(chunk_file))
            if bar is not None:
                bar.update(stop - start)
            continue
        out = []
        for b0 in range(start, stop, batch_size):
            b1 = min(b0 + batch_size, stop)
            sets, centers = [], []
            for t in range(b0, b1):
                img = images[image_index[t]]
                pts = image_to_points(img, sigma_disturbance, np.random.default_rng([int(seed), t]))
                sets.append(pts)
                centers.append(pixel_point_index(img, int(pixels[t, 0]), int(pixels[t, 1])))
            out.append(_create(soap, sets, centers))
            if bar is not None:
                bar.update(b1 - b0)
        block = np.concatenate(out, axis=0)
        if chunk_file is not None:
            # Atomic (per-process temporary + rename): several processes of a torchrun launch may
            # fill the same cache at once; none ever reads half a chunk.
            chunk_file.parent.mkdir(parents=True, exist_ok=True)
            tmp_chunk = chunk_file.with_name(f"{chunk_file.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp_chunk, block.astype(np.float32))
            os.replace(tmp_chunk, chunk_file)
        chunks.append(block)
    if bar is not None:
        bar.close()
    X = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 0))
    if path is not None:
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, X=X.astype(np.float32))
        os.replace(tmp, path)
        shutil.rmtree(partial_dir, ignore_errors=True)
        X = X.astype(np.float32).astype(np.float64)  # same values as a later cache hit
    if not np.all(np.isfinite(X)):
        raise FloatingPointError("SOAP returned NaN/inf spectra; check the SOAP parameters (r_cut, sigma).")
    return X


@dataclass
class PixelSpectra:
    """Raw (unscaled) per-pixel spectra of one split.

    Attributes:
        X: ``(T, n_features)`` float64 spectra.
        y: ``(T,)`` int64 digit labels (label of the pixel's image).
        image_index: ``(T,)`` index of the image in its MNIST split.
        pixels: ``(T, 2)`` ``(row, col)`` of the centre pixel.
    """

    X: np.ndarray
    y: np.ndarray
    image_index: np.ndarray
    pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> PixelSpectra:
        return PixelSpectra(self.X[idx], self.y[idx], self.image_index[idx], self.pixels[idx])


@dataclass
class SpectraDataset:
    """Train/val/test pixel spectra plus the RobustScaler fitted on the training spectra only."""

    train: PixelSpectra
    val: PixelSpectra
    test: PixelSpectra
    scaler: Any
    params: SOAPParams
    backend: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def scaled(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X scaled as float32, y)`` of ``split`` in {"train", "val", "test"}."""
        check_choice("split", split, ("train", "val", "test"))
        part = getattr(self, split)
        return self.scaler.transform(part.X).astype(np.float32), part.y


def fit_scaler(X_train: np.ndarray) -> Any:
    """sklearn ``RobustScaler`` (median / IQR) fitted on the training spectra only."""
    from sklearn.preprocessing import RobustScaler

    return RobustScaler().fit(np.asarray(X_train, dtype=np.float64))


def build_spectra_dataset(
    params: SOAPParams,
    *,
    n_train_val: int = 120_000,
    n_test: int = 10_000,
    val_fraction: float = 0.2,
    seed: int = 0,
    source: str = "full",
    data_dir: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    soap: Any = None,
    backend_info: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    quiet: bool = True,
) -> SpectraDataset:
    """The paper's data set (Section 4.1, Algorithm 3) for one set of SOAP parameters.

    ``n_train_val`` spectra from random training images (with replacement) are split
    ``1 - val_fraction : val_fraction`` into train/val; ``n_test`` spectra come from the
    test images (each image at most once). A ``RobustScaler`` is fitted on the training part.

    Returns:
        :class:`SpectraDataset` holding raw spectra of each split and the scaler.
    """
    from pointsym.datasets import load_mnist

    check_int("n_train_val", n_train_val, minimum=2)
    check_int("n_test", n_test, minimum=1)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"Expected 'val_fraction' in (0, 1) (got {val_fraction}).")
    if soap is None:
        soap, backend_info = make_soap(params, backend)
    backend_info = backend_info or {"backend": type(soap).__module__}
    key = {"soap": params.as_dict(), "backend": backend_info["backend"]}
    x_tr, y_tr = load_mnist("train", source=source, data_dir=data_dir)
    x_te, y_te = load_mnist("test", source=source, data_dir=data_dir)
    rng = np.random.default_rng([int(seed), 1])
    idx_tv, pix_tv = sample_pixels(x_tr, n_train_val, rng)
    n_test = min(n_test, len(x_te))
    idx_te, pix_te = sample_pixels(x_te, n_test, rng, one_per_image=True)
    X_tv = pixel_spectra(x_tr, idx_tv, pix_tv, soap, cache_dir=cache_dir, cache_key=key, quiet=quiet,
                         desc="train+val spectra")
    X_te = pixel_spectra(x_te, idx_te, pix_te, soap, cache_dir=cache_dir, cache_key=key, quiet=quiet,
                         desc="test spectra")
    tv = PixelSpectra(X_tv, y_tr[idx_tv].astype(np.int64), idx_tv, pix_tv)
    perm = np.random.default_rng([int(seed), 2]).permutation(n_train_val)
    n_val = int(round(val_fraction * n_train_val))
    val, train = tv.subset(np.sort(perm[:n_val])), tv.subset(np.sort(perm[n_val:]))
    test = PixelSpectra(X_te, y_te[idx_te].astype(np.int64), idx_te, pix_te)
    meta = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "source": source, "seed": int(seed),
            "val_fraction": float(val_fraction)}
    return SpectraDataset(train, val, test, fit_scaler(train.X), params, backend_info, meta)
