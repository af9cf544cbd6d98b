"""The SOAP + MLP baseline (:class:`pointsym.models.AtomwiseDOSMLP`) as a ``csnn-dos`` model adapter.

SOAP power spectra are rotation, reflection and translation invariant, so :class:`SOAPMLPAdapter`
computes them once per structure and caches them (all atoms of the frame, float64 or float32 as
asked). The cache key is itself invariant to the rotations the training loop applies
(``--rotate-train``, positions and cell rotated together): atomic numbers, ``pbc``, and for
periodic frames the fractional coordinates and the cell's Gram matrix ``C C^T``, for isolated
frames the Gram matrix of the centred positions, rounded to 1e-6 before hashing (BLAKE2b). A
rotated copy therefore reuses the features of the original (they agree to round-off), and a key
that rounds differently only costs a recomputation.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pointsym.experiments.csnn_dos.adapters import check_centres, grid_step
from pointsym.models import AtomwiseDOSMLP
from pointsym.models.dos_heads import SOAPFeaturizer

__all__ = ["SOAP_MLP_DEFAULTS", "SOAPInputs", "SOAPMLPAdapter", "frame_key"]

#: The options of :class:`SOAPMLPAdapter` with their defaults.
SOAP_MLP_DEFAULTS: dict[str, Any] = {
    "species": ["C"], "r_cut": 6.0, "n_max": 8, "l_max": 6, "sigma": 0.5, "rbf": "gto",
    "hidden": [512, 512], "dropout": 0.0, "smoothing": True,
}
_SOAP_KEYS = ("species", "r_cut", "n_max", "l_max", "sigma", "rbf")


def frame_key(atoms: Any, decimals: int = 6) -> str:
    """A hash of ``atoms`` that is invariant to rotations and reflections (of positions and cell together).

    Periodic frames (any ``pbc``): atomic numbers, ``pbc``, fractional coordinates and the cell's
    Gram matrix; isolated frames: atomic numbers and the Gram matrix of the centred positions
    (so also translation invariant). Values are rounded to ``decimals`` before hashing.
    """
    numbers = np.ascontiguousarray(np.asarray(atoms.numbers, dtype=np.int64))
    pbc = np.asarray(atoms.pbc, dtype=bool).reshape(3)
    pos = np.asarray(atoms.positions, dtype=np.float64)
    h = hashlib.blake2b(digest_size=20)
    h.update(numbers.tobytes())
    h.update(pbc.tobytes())
    if pbc.any():
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        frac = np.linalg.solve(cell.T, pos.T).T
        parts = [frac, cell @ cell.T]
    else:
        centred = pos - pos.mean(axis=0)
        parts = [centred @ centred.T]
    for part in parts:
        h.update((np.round(part, decimals) + 0.0).tobytes())  # + 0.0 turns -0.0 into 0.0
    return h.hexdigest()


@dataclass
class SOAPInputs:
    """Prepared SOAP-MLP input: standardisation happens in the model."""

    features: torch.Tensor  # (A_c, F) SOAP of the centre atoms
    batch: torch.Tensor  # (A_c,) structure of each row
    n_structures: int
    settings: dict[str, Any]  # the descriptor settings the features were computed with
    frame_features: list[np.ndarray]  # all-atom features per frame (cached arrays, for a lazy scaler fit)

    @property
    def n_atoms(self) -> int:
        return int(self.features.shape[0])

    def to(self, device: Any) -> SOAPInputs:
        return SOAPInputs(self.features.to(device), self.batch.to(device), self.n_structures, self.settings,
                          self.frame_features)


class SOAPMLPAdapter:
    """The atomwise SOAP + MLP DOS model (:class:`pointsym.models.AtomwiseDOSMLP`) as a ``DOSAdapter``.

    Options (keys of ``options``; defaults :data:`SOAP_MLP_DEFAULTS`): the descriptor ``species``
    (default ``["C"]``), ``r_cut`` (Å, 6.0), ``n_max`` (8), ``l_max`` (6), ``sigma`` (Å, 0.5),
    ``rbf`` (``"gto"``) -- 252 features for carbon -- and the head ``hidden`` ([512, 512]),
    ``dropout`` (0), ``smoothing`` (True). Unknown keys raise ``ValueError``.

    Standardisation: the model's ``feature_mean`` / ``feature_std`` come from :meth:`fit` (all
    atoms of the given training frames) when it is called; otherwise the first :meth:`predict` in
    training mode fits them on all atoms of that batch's frames (deterministic for a given batch).
    They are model buffers, so a checkpoint keeps them.

    Args:
        cache: keep the features of every frame seen (default True); :meth:`clear_cache` empties it.
    """

    name = "soap-mlp"

    def __init__(self, cache: bool = True) -> None:
        self.cache_enabled = bool(cache)
        self.featurizer: SOAPFeaturizer | None = None
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}
        self._warned = False

    # ------------------------------------------------------------------ protocol
    def build_model(self, energies: np.ndarray, options: dict[str, Any]) -> torch.nn.Module:
        unknown = sorted(set(options) - set(SOAP_MLP_DEFAULTS))
        if unknown:
            raise ValueError(f"Unknown soap-mlp model option(s) {unknown}; known: {sorted(SOAP_MLP_DEFAULTS)}.")
        opts = {**SOAP_MLP_DEFAULTS, **options}
        energies = np.asarray(energies, dtype=np.float64)
        step = grid_step(energies)
        if isinstance(opts["species"], (str, int)):
            opts["species"] = [opts["species"]]
        opts["species"] = list(opts["species"])
        opts["hidden"] = list(opts["hidden"])
        model = AtomwiseDOSMLP(int(energies.shape[0]), e_min=float(energies[0]), e_step=step, **opts)
        self.featurizer = model.featurizer
        return model

    def prepare(self, frames: list[Any], centres: list[np.ndarray] | None, *, dtype: torch.dtype,
                device: torch.device) -> SOAPInputs:
        featurizer = self._featurizer()
        frames = list(frames)
        if not frames:
            raise ValueError("'frames' is empty; pass at least one structure.")
        full = self.features(frames, dtype=dtype)
        picked = check_centres(centres, [len(a) for a in frames])
        rows = np.concatenate([f[c] for f, c in zip(full, picked)])
        batch = np.concatenate([np.full(len(c), k, dtype=np.int64) for k, c in enumerate(picked)])
        return SOAPInputs(torch.as_tensor(rows, dtype=dtype, device=device), torch.as_tensor(batch, device=device),
                          len(frames), featurizer.settings, full)

    def predict(self, model: torch.nn.Module, prepared: SOAPInputs) -> torch.Tensor:
        if not isinstance(model, AtomwiseDOSMLP):
            raise TypeError(f"SOAPMLPAdapter.predict needs an AtomwiseDOSMLP (got {type(model).__name__}).")
        settings = {k: model.hypers[k] for k in _SOAP_KEYS}
        if settings != prepared.settings:
            raise ValueError(f"The prepared features were computed with SOAP settings {prepared.settings}, but the "
                             f"model uses {settings}; prepare the batch with the adapter that built this model.")
        if not model.scaler_fitted:
            if model.training:
                model.fit_scaler(prepared.frame_features)
            elif not self._warned:
                self._warned = True
                warnings.warn("AtomwiseDOSMLP's feature scaler was never fitted (identity standardisation); call "
                              "SOAPMLPAdapter.fit(model, training_frames) or train the model first.", stacklevel=2)
        return model(prepared.features, prepared.batch, prepared.n_structures)

    # ------------------------------------------------------------------ extras
    def fit(self, model: AtomwiseDOSMLP, frames: Sequence[Any]) -> AtomwiseDOSMLP:
        """Fit the model's feature scaler on all atoms of ``frames`` (their features are cached too)."""
        if self.featurizer is None:
            self.featurizer = model.featurizer
        return model.fit_scaler(self.features(list(frames), dtype=torch.float64))

    def features(self, frames: Sequence[Any], *, dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
        """All-atom SOAP features ``(n_k, F)`` of every frame, from the cache where present (numpy, ``dtype``)."""
        featurizer = self._featurizer()
        np_dtype = np.float32 if dtype in (torch.float32, torch.float16, torch.bfloat16) else np.float64
        tag = repr(sorted(featurizer.settings.items()))
        keys = [(tag, np.dtype(np_dtype).name, frame_key(a)) for a in frames]
        missing = [k for k, key in enumerate(keys) if key not in self._cache]
        computed: dict[int, np.ndarray] = {}
        if missing:
            feats = featurizer.featurize([frames[k] for k in missing])
            for k, f in zip(missing, feats):
                computed[k] = np.ascontiguousarray(f, dtype=np_dtype)
                if self.cache_enabled:
                    self._cache[keys[k]] = computed[k]
        return [computed[k] if k in computed else self._cache[key] for k, key in enumerate(keys)]

    def clear_cache(self) -> None:
        """Forget every cached feature array."""
        self._cache.clear()

    @property
    def cache_size(self) -> int:
        """Number of cached frames."""
        return len(self._cache)

    def _featurizer(self) -> SOAPFeaturizer:
        if self.featurizer is None:
            raise RuntimeError("SOAPMLPAdapter needs the descriptor settings: call build_model first.")
        return self.featurizer
