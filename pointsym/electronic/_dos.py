"""Density of states (DOS) on a fixed energy grid, its integral, Fermi level and band energy.

Conventions (spec ``csnn.md`` sections 5 and 5.1), energies in eV:

- the DOS lives on a uniform grid ``E_k = e_min + k * step`` (the reference: -30.0 ... 0.9 eV,
  ``step = 0.1``, 310 values), built by :func:`energy_grid`;
- a *total* DOS ``G`` (states/eV of the whole structure) integrates to the number of states;
  the *per-atom* DOS is ``g = G / N_atoms``;
- the integrated DOS is ``F = step * cumsum(g)`` (a left Riemann sum, the reference target),
  :func:`integrated_dos`;
- Fermi level and band energy follow the reference evaluation (``dos/test.py``): the total DOS
  is interpolated by a cubic spline to a fine grid (0.01 eV) and integrated by the cumulative
  trapezoid rule (:func:`fermi_level`, :func:`band_energy`); :func:`dos_metrics` compares a
  predicted with a reference DOS per structure and :func:`summarize_dos_metrics` averages.

Everything here is numpy/scipy except :func:`integrated_dos` (numpy or torch) and
:func:`dos_loss` (torch, differentiable, the training loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pointsym.core import check_choice, check_finite_array, check_positive, to_numpy

__all__ = [
    "FERMI_TOLERANCE",
    "band_energy",
    "band_moment",
    "dos_loss",
    "dos_metrics",
    "energy_grid",
    "fermi_level",
    "gaussian_dos",
    "integrated_dos",
    "summarize_dos_metrics",
]

#: The Fermi level is the first fine-grid energy where the integrated total DOS exceeds
#: ``n_electrons - FERMI_TOLERANCE`` (reference value 0.005 electrons).
FERMI_TOLERANCE = 0.005
# how the Fermi level is read off the integrated DOS (fermi_level's ``crossing``)
CROSSINGS = ("grid", "linear")

# gaussian_dos: broadening functions are evaluated in blocks of at most this many values
# (32 MiB of float64), and eigenvalues farther than _GAUSS_CUT sigma from every grid energy are
# skipped (their contribution is below exp(-72) ~ 5e-32 of a peak).
_CHUNK_ELEMENTS = 1 << 22
_GAUSS_CUT = 12.0

_METRIC_KEYS = ("dos_rmse", "idos_rmse", "fermi_abs_error", "band_energy_abs_error")


# ---------------------------------------------------------------------------- grid and DOS
def energy_grid(e_min: float = -30.0, e_max: float = 0.9, step: float = 0.1) -> np.ndarray:
    """The uniform energy grid ``e_min, e_min + step, ..., e_max`` (both ends included), eV.

    The defaults give the reference CSNN grid, -30.0 ... 0.9 eV in 0.1 eV steps (310 values).
    Values are ``e_min + k * (e_max - e_min) / n_steps`` (no accumulated round-off; both ends exact).

    Args:
        e_min: first energy, eV.
        e_max: last energy, eV (``> e_min``); ``e_max - e_min`` must be a whole number of steps.
        step: spacing, eV (``> 0``).

    Returns:
        float64 ``(n,)`` with ``n = (e_max - e_min) / step + 1``.

    Example:
        >>> energy_grid().shape, float(energy_grid()[-1])
        ((310,), 0.9)
    """
    e_min = _finite_number("e_min", e_min)
    e_max = _finite_number("e_max", e_max)
    step = check_positive("step", step)
    if e_max <= e_min:
        raise ValueError(f"Expected 'e_max' > 'e_min' (got e_min={e_min}, e_max={e_max}); swap them.")
    n_steps = (e_max - e_min) / step
    if abs(n_steps - round(n_steps)) > 1e-6 * max(1.0, n_steps):
        raise ValueError(f"'e_max' - 'e_min' = {e_max - e_min:g} eV is not a whole number of steps of {step:g} eV "
                         f"({n_steps:.6g} steps); move 'e_max' to e_min + k * step.")
    return np.linspace(e_min, e_max, int(round(n_steps)) + 1)


def gaussian_dos(eigenvalues: Any, energies: Any, sigma: float, weights: Any = None) -> np.ndarray:
    """Gaussian-broadened DOS ``G(E) = sum_k w_k sum_n g_sigma(E - eps_kn)`` on a grid, states/eV.

    ``g_sigma(x) = exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi))`` has unit area, so the integral
    of ``G`` over all energies equals ``sum(weights) * n_bands`` (``sum(weights)`` for 1-D
    eigenvalues with per-state weights): the number of states. With k-point weights that sum
    to 2, as in DFT output for a spin-degenerate calculation (e.g. ``atoms.info["k-point
    weights"]``), ``G`` counts electrons including the spin factor, so integrating it up to the
    Fermi level gives the number of valence electrons. Without ``weights`` every eigenvalue
    (every row of a 2-D array) has weight 1. Divide by the number of atoms for the per-atom
    DOS of the CSNN targets.

    The sum runs in blocks of eigenvalues (at most 4M Gaussian values at a time), so
    10^5 - 10^6 eigenvalues on a few hundred energies need only a few tens of MB;
    eigenvalues more than 12 sigma away from every grid energy are skipped (negligible).

    Args:
        eigenvalues: ``(n,)`` energies of states, or ``(n_k, n_bands)`` band energies per
            k-point, eV (numpy array, list or torch tensor).
        energies: ``(n_E,)`` grid energies, eV (any 1-D array; see :func:`energy_grid`).
        sigma: Gaussian standard deviation, eV (``> 0``); choose it at least about the grid step
            so that the grid resolves the peaks.
        weights: ``(n,)`` per-state weights for 1-D eigenvalues, ``(n_k,)`` k-point weights for
            2-D eigenvalues, or ``None`` (all 1).

    Returns:
        float64 ``(n_E,)`` DOS, states/eV.
    """
    eig = check_finite_array("eigenvalues", to_numpy("eigenvalues", eigenvalues, dtype=np.float64))
    grid = _grid("energies", energies, min_size=1, uniform=False)
    sigma = check_positive("sigma", sigma)
    if eig.ndim not in (1, 2):
        raise ValueError(f"Expected 'eigenvalues' of shape (n,) or (n_k, n_bands) (got shape {eig.shape}).")
    n_rows = eig.shape[0]
    if weights is None:
        w = np.ones(n_rows)
    else:
        w = check_finite_array("weights", to_numpy("weights", weights, dtype=np.float64))
        if w.shape != (n_rows,):
            what = "one weight per eigenvalue" if eig.ndim == 1 else "one weight per k-point (row)"
            raise ValueError(f"Expected 'weights' of shape ({n_rows},), {what} of 'eigenvalues' with shape "
                             f"{eig.shape} (got shape {w.shape}).")
    if eig.ndim == 2:
        w = np.repeat(w, eig.shape[1])
    eps = eig.reshape(-1)
    keep = (eps >= grid.min() - _GAUSS_CUT * sigma) & (eps <= grid.max() + _GAUSS_CUT * sigma)
    eps, w = eps[keep], w[keep]
    out = np.zeros(grid.shape[0])
    rows = max(1, _CHUNK_ELEMENTS // max(grid.shape[0], 1))
    for start in range(0, eps.shape[0], rows):
        z = (grid[None, :] - eps[start:start + rows, None]) / sigma
        out += w[start:start + rows] @ np.exp(-0.5 * z * z)
    return out / (sigma * math.sqrt(2.0 * math.pi))


def integrated_dos(dos: Any, step: float) -> Any:
    """Integrated DOS ``F = step * cumsum(dos)`` along the last (energy) axis (spec ``F = 0.1 cumsum(g)``).

    This is the left Riemann sum of the reference targets: ``F[k]`` counts the states in the
    bins ``0 ... k`` (including bin ``k``). A torch tensor gives a torch tensor (differentiable,
    as used in :func:`dos_loss`); anything else gives a float64 numpy array.

    Args:
        dos: ``(..., n_E)`` DOS, states/eV (per atom or total).
        step: grid spacing, eV (``> 0``).

    Returns:
        ``(..., n_E)``, states (per atom or total, like ``dos``).
    """
    step = check_positive("step", step)
    if isinstance(dos, torch.Tensor):
        if dos.ndim == 0:
            raise ValueError("Expected 'dos' with an energy axis, shape (..., n_E) (got a scalar tensor).")
        return step * torch.cumsum(dos, dim=-1)
    arr = to_numpy("dos", dos, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError("Expected 'dos' with an energy axis, shape (..., n_E) (got a scalar).")
    return step * np.cumsum(arr, axis=-1)


def dos_loss(pred: torch.Tensor, ref: torch.Tensor, step: float, alpha: float = 0.1) -> torch.Tensor:
    """CSNN training loss ``alpha MSE(g^, g) + (1 - alpha) MSE(F^, F)`` with ``F = step cumsum(g)``.

    Both mean squared errors average over structures and energy bins (``torch`` ``mse_loss``).
    Differentiable in ``pred`` (and ``ref``).

    Args:
        pred: ``(S, n_E)`` predicted per-atom DOS, states/eV/atom.
        ref: ``(S, n_E)`` reference per-atom DOS.
        step: energy grid spacing, eV (reference 0.1).
        alpha: weight of the DOS term in ``[0, 1]`` (reference ``--loss-weight`` 0.1).

    Returns:
        scalar tensor.
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise TypeError(f"Expected 'pred' and 'ref' to be torch tensors (got {type(pred).__name__} and "
                        f"{type(ref).__name__}); convert with torch.as_tensor.")
    if pred.shape != ref.shape or pred.ndim == 0:
        raise ValueError(f"Expected 'pred' and 'ref' of the same shape (S, n_E) (got {tuple(pred.shape)} and "
                         f"{tuple(ref.shape)}).")
    alpha = check_positive("alpha", alpha, allow_zero=True)
    if alpha > 1:
        raise ValueError(f"Expected 'alpha' in [0, 1] (got {alpha}); it weights the DOS term, 1 - alpha the "
                         "integrated DOS.")
    ref = ref.to(pred.dtype)
    mse_dos = torch.nn.functional.mse_loss(pred, ref)
    mse_idos = torch.nn.functional.mse_loss(integrated_dos(pred, step), integrated_dos(ref, step))
    return alpha * mse_dos + (1.0 - alpha) * mse_idos


def band_moment(dos: torch.Tensor, energies: Any, e_fermi: torch.Tensor) -> torch.Tensor:
    """Occupied first moment ``sum_k f_k (E_k - E_F) g_k dE`` per structure, eV/atom (differentiable).

    ``f_k`` is the fraction of the bin ``[E_k - dE/2, E_k + dE/2]`` below ``e_fermi``: the bin-sum
    band energy relative to a given Fermi level. With the reference Fermi level for both a
    prediction and its reference, the difference of the two moments is the band-energy error at
    a fixed electron count, a training target that :func:`dos_loss` reaches only indirectly.

    Args:
        dos: ``(S, n_E)`` per-atom DOS, states/eV/atom.
        energies: ``(n_E,)`` uniform grid, eV.
        e_fermi: ``(S,)`` Fermi level per structure, eV.

    Returns:
        ``(S,)`` tensor, eV/atom.
    """
    if not isinstance(dos, torch.Tensor) or not isinstance(e_fermi, torch.Tensor):
        raise TypeError(f"Expected 'dos' and 'e_fermi' to be torch tensors (got {type(dos).__name__} and "
                        f"{type(e_fermi).__name__}); convert with torch.as_tensor.")
    grid = torch.as_tensor(_grid("energies", energies, min_size=2, uniform=True), dtype=dos.dtype, device=dos.device)
    if dos.ndim != 2 or dos.shape[1] != grid.shape[0] or e_fermi.shape != (dos.shape[0],):
        raise ValueError(f"Expected 'dos' of shape (S, {grid.shape[0]}) and 'e_fermi' of shape (S,) (got "
                         f"{tuple(dos.shape)} and {tuple(e_fermi.shape)}).")
    step = grid[1] - grid[0]
    e_f = e_fermi.to(dos.dtype)[:, None]
    frac = ((e_f - (grid[None, :] - 0.5 * step)) / step).clamp(0.0, 1.0)
    return (frac * (grid[None, :] - e_f) * dos).sum(dim=-1) * step


# ---------------------------------------------------------------------------- Fermi level, band energy
def fermi_level(energies: Any, dos_total: Any, n_electrons: Any, fine_step: float = 0.01, *,
                crossing: str = "grid") -> Any:
    """Fermi level from a total DOS on a uniform grid (spec ``csnn.md`` section 5.1), eV.

    The total DOS is interpolated by a cubic spline (not-a-knot, as ``scipy`` ``interp1d(kind=
    "cubic")`` of the reference) to the fine grid ``E_0, E_0 + fine_step, ..., E_last - step``
    (from the first grid energy to one coarse step before the last) and integrated by the
    cumulative trapezoid rule, ``I(eps_0) = 0``. The Fermi level is the **first fine-grid
    energy where** ``I > n_electrons - 0.005``.

    This is the clean definition (spec pitfall 8). The reference ``dos/test.py`` indexes its
    cumulative integral (which lacks the leading zero) so that its Fermi level lies two fine
    steps (0.02 eV) below this one; its band energy then integrates up to one (reference DOS)
    or two (predicted DOS) fine steps above its own Fermi level, i.e. not the same limit for
    prediction and reference. Here one limit, ``E_F``, is used for both.

    Args:
        energies: ``(n_E,)`` uniform grid, eV (at least 4 points).
        dos_total: ``(n_E,)`` or ``(S, n_E)`` total DOS (states/eV of the whole structure,
            i.e. ``N_atoms`` times the per-atom DOS).
        n_electrons: number of valence electrons (``4 N_atoms`` for carbon), scalar or ``(S,)``.
        fine_step: fine-grid spacing, eV (reference 0.01).
        crossing: ``"grid"`` (the reference's first fine-grid energy) or ``"linear"``: the energy
            where the linearly interpolated integral equals ``n_electrons - 0.005``, so that the
            count of electrons below ``E_F`` does not depend on the grid (with ``"grid"`` it
            overshoots by up to ``G(E_F) fine_step``).

    Returns:
        float for one DOS, float64 ``(S,)`` for a batch.

    Raises:
        ValueError: the integral never exceeds ``n_electrons - 0.005`` inside the window.
    """
    check_choice("crossing", crossing, CROSSINGS)
    grid, dos, n_e, single = _dos_inputs(energies, dos_total, n_electrons, "n_electrons")
    fine, _, cum, _ = _fine_integrals(grid, dos, check_positive("fine_step", fine_step))
    idx, reached = _crossing(cum, n_e)
    if not reached.all():
        s = int(np.argmin(reached))
        where = "" if single else f" for structure {s}"
        raise ValueError(
            f"The integrated DOS{where} reaches only {cum[s, -1]:.6g} states by {fine[-1]:.4g} eV, less than "
            f"'n_electrons' - {FERMI_TOLERANCE} = {n_e[s] - FERMI_TOLERANCE:.6g} (n_electrons={n_e[s]:.6g}): "
            f"the Fermi level lies above the energy window. Widen the window (a larger upper grid energy), or "
            f"check that 'dos_total' is the total DOS (not per atom) and 'n_electrons' the valence count."
        )
    out = _fermi_energy(fine, cum, n_e, idx, crossing)
    return float(out[0]) if single else out


def band_energy(energies: Any, dos_total: Any, e_fermi: Any, n_atoms: Any, fine_step: float = 0.01) -> Any:
    """Band energy per atom ``E_b = (1/N) int_{E_0}^{E_F} eps G(eps) d eps`` (spec section 5.1), eV/atom.

    The total DOS ``G`` is splined to the same fine grid as in :func:`fermi_level` and
    ``eps G`` is integrated by the cumulative trapezoid rule from the first grid energy up to
    ``e_fermi``. For an ``e_fermi`` on the fine grid (as :func:`fermi_level` returns) this is
    the cumulative trapezoid at that grid point -- the clean definition, with the same upper
    limit for a prediction and a reference (the reference code's off-by-one is described in
    :func:`fermi_level`); otherwise the last partial interval is added with the trapezoid rule.
    Energies are absolute (not shifted to ``E_F``), so the value depends on the grid's zero.

    Args:
        energies: ``(n_E,)`` uniform grid, eV.
        dos_total: ``(n_E,)`` or ``(S, n_E)`` total DOS, states/eV.
        e_fermi: upper limit, eV, scalar or ``(S,)``; inside the fine grid.
        n_atoms: number of atoms ``N`` (scalar or ``(S,)``).
        fine_step: fine-grid spacing, eV.

    Returns:
        float for one DOS, float64 ``(S,)`` for a batch.
    """
    grid, dos, e_f, single = _dos_inputs(energies, dos_total, e_fermi, "e_fermi", positive=False)
    n_at = _per_structure("n_atoms", n_atoms, dos.shape[0], positive=True)
    fine, spline, _, cum_e = _fine_integrals(grid, dos, check_positive("fine_step", fine_step))
    h = fine[1] - fine[0] if fine.shape[0] > 1 else fine_step
    lo, hi = fine[0], fine[-1]
    bad = (e_f < lo - 1e-9 * h) | (e_f > hi + 1e-9 * h)
    if bad.any():
        s = int(np.argmax(bad))
        raise ValueError(f"'e_fermi' = {e_f[s]:.6g} eV{'' if single else f' (structure {s})'} is outside the fine "
                         f"grid [{lo:.6g}, {hi:.6g}] eV of 'energies'; pass a Fermi level inside the window "
                         "(see fermi_level) or widen the window.")
    out = _band_energy_at(fine, spline, cum_e, np.clip(e_f, lo, hi)) / n_at
    return float(out[0]) if single else out


# ---------------------------------------------------------------------------- metrics
def dos_metrics(
    energies: Any,
    dos_pred: Any,
    dos_ref: Any,
    n_atoms: Any,
    n_electrons: Any,
    *,
    fine_step: float = 0.01,
    unreached: str = "raise",
    crossing: str = "grid",
) -> dict[str, np.ndarray]:
    """Per-structure errors of predicted per-atom DOS (the CSNN test metrics, spec section 5.1).

    For every structure ``s`` with ``N`` atoms:

    - ``dos_rmse``: RMSE over the energy bins of the per-atom DOS, states/eV/atom;
    - ``idos_rmse``: RMSE over the bins of the integrated DOS scaled by ``N``,
      ``N step cumsum(g)`` (states);
    - ``fermi_abs_error``: ``|E_F(N g^) - E_F(N g)|``, eV (:func:`fermi_level`);
    - ``band_energy_abs_error``: ``|E_b^pred - E_b^ref|``, eV/atom, each band energy up to its
      own Fermi level (:func:`band_energy`);

    and the underlying ``fermi_pred``, ``fermi_ref``, ``band_energy_pred``, ``band_energy_ref``.

    Args:
        energies: ``(n_E,)`` uniform grid, eV.
        dos_pred, dos_ref: ``(S, n_E)`` (or ``(n_E,)``) per-atom DOS, states/eV/atom.
        n_atoms: ``(S,)`` atoms per structure (or a scalar for all).
        n_electrons: ``(S,)`` valence electrons per structure (``4 n_atoms`` for carbon).
        fine_step: fine-grid spacing of the Fermi-level search, eV.
        unreached: a structure whose integrated DOS never reaches ``n_electrons`` in the window:
            ``"raise"`` (``ValueError``, default) or ``"nan"`` (its Fermi-level and band-energy
            entries are NaN, e.g. for an untrained model's prediction).
        crossing: how the Fermi level is read off the integrated DOS (:func:`fermi_level`):
            ``"grid"`` (reference) or ``"linear"``. Use ``"linear"`` on an absolute energy scale:
            there the grid's overshoot of the electron count, times ``E_F`` of several eV, adds
            up to ~0.05 eV/atom of noise to the band energy of a small gapped cage.

    Returns:
        dict of float64 ``(S,)`` arrays.
    """
    check_choice("crossing", crossing, CROSSINGS)
    if unreached not in ("raise", "nan"):
        raise ValueError(f"Expected 'unreached' to be 'raise' or 'nan' (got {unreached!r}).")
    grid = _grid("energies", energies, min_size=4, uniform=True)
    step = float(grid[1] - grid[0])
    pred = _dos_array("dos_pred", dos_pred, grid.shape[0])
    ref = _dos_array("dos_ref", dos_ref, grid.shape[0])
    if pred.shape != ref.shape:
        raise ValueError(f"Expected 'dos_pred' and 'dos_ref' of the same shape (got {pred.shape} and {ref.shape}).")
    n_s = pred.shape[0]
    n_at = _per_structure("n_atoms", n_atoms, n_s, positive=True)
    n_e = _per_structure("n_electrons", n_electrons, n_s, positive=True)
    fine_step = check_positive("fine_step", fine_step)
    out: dict[str, np.ndarray] = {
        "dos_rmse": np.sqrt(np.mean((pred - ref) ** 2, axis=-1)),
        "idos_rmse": np.sqrt(np.mean(((integrated_dos(pred, step) - integrated_dos(ref, step)) * n_at[:, None]) ** 2,
                                     axis=-1)),
    }
    derived = {}
    for name, g in (("pred", pred), ("ref", ref)):
        total = g * n_at[:, None]
        fine, spline, cum, cum_e = _fine_integrals(grid, total, fine_step)
        idx, reached = _crossing(cum, n_e)
        if not reached.all() and unreached == "raise":
            s = int(np.argmin(reached))
            raise ValueError(
                f"The integrated 'dos_{name}' of structure {s} reaches only {cum[s, -1]:.6g} states by "
                f"{fine[-1]:.4g} eV, less than 'n_electrons' - {FERMI_TOLERANCE} = {n_e[s] - FERMI_TOLERANCE:.6g}: "
                "no Fermi level in the window. Widen the energy window, check the units (per-atom DOS and "
                "n_atoms), or pass unreached='nan' to mark such structures with NaN."
            )
        e_f = np.where(reached, _fermi_energy(fine, cum, n_e, idx, crossing), np.nan)
        e_b = np.full(n_s, np.nan)
        if reached.any():
            limit = np.where(reached, e_f, fine[0])
            e_b[reached] = _band_energy_at(fine, spline, cum_e, limit)[reached] / n_at[reached]
        derived[f"fermi_{name}"] = e_f
        derived[f"band_energy_{name}"] = e_b
    out["fermi_abs_error"] = np.abs(derived["fermi_pred"] - derived["fermi_ref"])
    out["band_energy_abs_error"] = np.abs(derived["band_energy_pred"] - derived["band_energy_ref"])
    out.update(derived)
    return out


def summarize_dos_metrics(metrics: dict[str, Any], groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Means of :func:`dos_metrics` over all structures and per group (structural family).

    NaN entries (``unreached="nan"``) are left out of the means and counted.

    Args:
        metrics: the dict of ``(S,)`` arrays from :func:`dos_metrics`.
        groups: optional ``(S,)`` group label of every structure (e.g. ``"C60"``, ``"Graphite"``).

    Returns:
        ``{"overall": summary, "groups": {label: summary}}`` (groups in order of first appearance;
        empty without ``groups``), where a summary maps each of ``dos_rmse``, ``idos_rmse``,
        ``fermi_abs_error``, ``band_energy_abs_error`` to its mean and has ``n_structures`` and
        ``n_unreached`` (structures with a NaN Fermi-level error).
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"Expected 'metrics' to be the dict returned by dos_metrics (got {type(metrics).__name__}).")
    missing = [k for k in _METRIC_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"'metrics' lacks {missing}; pass the dict returned by dos_metrics.")
    arrays = {k: to_numpy(f"metrics[{k!r}]", metrics[k], dtype=np.float64).reshape(-1) for k in _METRIC_KEYS}
    n_s = arrays["dos_rmse"].shape[0]
    if any(a.shape[0] != n_s for a in arrays.values()):
        raise ValueError(f"The arrays of 'metrics' differ in length ({ {k: a.shape[0] for k, a in arrays.items()} }).")

    def summary(sel: np.ndarray) -> dict[str, Any]:
        res: dict[str, Any] = {}
        for k, a in arrays.items():
            vals = a[sel]
            ok = np.isfinite(vals)
            res[k] = float(vals[ok].mean()) if ok.any() else float("nan")
        res["n_structures"] = int(sel.sum())
        res["n_unreached"] = int((~np.isfinite(arrays["fermi_abs_error"][sel])).sum())
        return res

    result: dict[str, Any] = {"overall": summary(np.ones(n_s, dtype=bool)), "groups": {}}
    if groups is not None:
        labels = list(groups)
        if len(labels) != n_s:
            raise ValueError(f"Expected 'groups' to have one label per structure ({n_s}) (got {len(labels)}).")
        for label in dict.fromkeys(labels):
            result["groups"][label] = summary(np.array([x == label for x in labels]))
    return result


# ---------------------------------------------------------------------------- helpers
def _finite_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Expected '{name}' to be a number (got {value!r} of type {type(value).__name__}).")
    if not math.isfinite(float(value)):
        raise ValueError(f"Expected '{name}' to be finite (got {value}).")
    return float(value)


def _grid(name: str, energies: Any, *, min_size: int, uniform: bool) -> np.ndarray:
    grid = check_finite_array(name, to_numpy(name, energies, dtype=np.float64))
    if grid.ndim != 1 or grid.shape[0] < min_size:
        raise ValueError(f"Expected '{name}' to be a 1-D grid of at least {min_size} energies (got shape "
                         f"{grid.shape}); build one with energy_grid(e_min, e_max, step).")
    if uniform:
        diff = np.diff(grid)
        if diff[0] <= 0 or not np.allclose(diff, diff[0], rtol=1e-6, atol=1e-9):
            raise ValueError(f"Expected '{name}' to be uniform and increasing (steps from {diff.min():.6g} to "
                             f"{diff.max():.6g} eV); build it with energy_grid(e_min, e_max, step).")
    return grid


def _dos_array(name: str, dos: Any, n_e: int) -> np.ndarray:
    arr = check_finite_array(name, to_numpy(name, dos, dtype=np.float64))
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != n_e:
        raise ValueError(f"Expected '{name}' of shape ({n_e},) or (S, {n_e}), one value per grid energy "
                         f"(got shape {arr.shape}).")
    return arr


def _per_structure(name: str, value: Any, n_s: int, *, positive: bool) -> np.ndarray:
    arr = check_finite_array(name, to_numpy(name, value, dtype=np.float64))
    if arr.ndim == 0:
        arr = np.full(n_s, float(arr))
    if arr.shape != (n_s,):
        raise ValueError(f"Expected '{name}' to be a scalar or of shape ({n_s},), one value per structure "
                         f"(got shape {arr.shape}).")
    if positive and (arr <= 0).any():
        s = int(np.argmax(arr <= 0))
        raise ValueError(f"Expected '{name}' > 0 (got {arr[s]:g} at structure {s}).")
    return arr


def _dos_inputs(energies: Any, dos_total: Any, value: Any, value_name: str, *,
                positive: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    grid = _grid("energies", energies, min_size=4, uniform=True)
    single = np.ndim(to_numpy("dos_total", dos_total)) == 1
    dos = _dos_array("dos_total", dos_total, grid.shape[0])
    vals = _per_structure(value_name, value, dos.shape[0], positive=positive)
    return grid, dos, vals, single


def _fine_integrals(
    grid: np.ndarray, dos: np.ndarray, fine_step: float
) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray]:
    """Fine grid ``E_0 ... E_last - step``, the spline, cumulative trapezoids of ``G`` and ``eps G``."""
    from scipy.interpolate import CubicSpline

    step = grid[1] - grid[0]
    span = grid[-1] - step - grid[0]
    if fine_step > span:
        raise ValueError(f"'fine_step' = {fine_step:g} eV is larger than the fine window ({span:g} eV); use 0.01.")
    m = int(np.floor(span / fine_step + 1e-6)) + 1
    fine = grid[0] + fine_step * np.arange(m)
    spline = CubicSpline(grid, dos, axis=-1)
    g = spline(fine)
    cum = _cumtrapz(g, fine_step)
    cum_e = _cumtrapz(g * fine, fine_step)
    return fine, spline, cum, cum_e


def _cumtrapz(y: np.ndarray, h: float) -> np.ndarray:
    out = np.zeros_like(y)
    out[..., 1:] = np.cumsum(0.5 * h * (y[..., 1:] + y[..., :-1]), axis=-1)
    return out


def _crossing(cum: np.ndarray, n_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    above = cum > (n_e - FERMI_TOLERANCE)[:, None]
    return np.argmax(above, axis=-1), np.asarray(above.any(axis=-1))


def _fermi_energy(fine: np.ndarray, cum: np.ndarray, n_e: np.ndarray, idx: np.ndarray, crossing: str) -> np.ndarray:
    """The fine-grid crossing energy, or (``"linear"``) the interpolated energy of ``n_e - tolerance``."""
    if crossing == "grid":
        return fine[idx]
    rows = np.arange(cum.shape[0])
    lo = np.maximum(idx - 1, 0)
    c_lo, c_hi = cum[rows, lo], cum[rows, idx]
    span = c_hi - c_lo
    frac = np.where(span > 0, (n_e - FERMI_TOLERANCE - c_lo) / np.where(span > 0, span, 1.0), 1.0)
    return fine[lo] + np.clip(frac, 0.0, 1.0) * (fine[idx] - fine[lo])


def _band_energy_at(fine: np.ndarray, spline: Any, cum_e: np.ndarray, e_f: np.ndarray) -> np.ndarray:
    """``int_{E_0}^{e_f} eps G`` per structure: cumulative trapezoid plus the partial last interval."""
    h = fine[1] - fine[0] if fine.shape[0] > 1 else 1.0
    pos = (e_f - fine[0]) / h
    k = np.floor(pos + 1e-6).astype(np.int64).clip(0, fine.shape[0] - 1)
    rows = np.arange(cum_e.shape[0])
    total = cum_e[rows, k]
    rest = e_f - fine[k]
    partial = rest > 1e-6 * h
    if partial.any():
        r = rows[partial]
        g_k = spline(fine[k[r]])  # (len(r), len(r)) -- take the diagonal: structure r at its own energy
        g_f = spline(e_f[r])
        g_k, g_f = g_k[r, np.arange(len(r))], g_f[r, np.arange(len(r))]
        total[r] += 0.5 * rest[r] * (fine[k[r]] * g_k + e_f[r] * g_f)
    return total
