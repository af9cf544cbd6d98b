"""Reconstruction metrics of NeSF (spec section 6, ``src/evaluate.py`` of the reference).

For a structure with true atoms ``(p_i, z_i), i < n`` and detected atoms ``(p^_k, z^_k), k < m``
and ``D_ki = |p^_k - p_i|``:

- number of atoms: correct iff ``m == n``; error (%) = 100 (1 - fraction of structures correct);
- position error, actual (Å): ``min_k D_ki`` for every true atom (``inf`` if ``m = 0``);
- position error, detected (Å): ``min_i D_ki`` for every detected atom;
- species error, actual (%): true atoms whose nearest detected atom has another species
  (a true atom of a structure with nothing detected counts as wrong);
- species error, detected (%): detected atoms whose nearest true atom has another species;
- lattice: mean absolute error of lengths (Å) and angles (degrees).

Averages pool the atoms of all structures (not per-structure means). No periodicity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pointsym.core import check_finite_array, to_numpy

__all__ = ["reconstruction_metrics", "structure_errors"]


def _atoms(name: str, positions: Any, numbers: Any, *, allow_empty: bool) -> tuple[np.ndarray, np.ndarray]:
    pos = to_numpy(f"{name} positions", positions, dtype=np.float64)
    if pos.size == 0 and allow_empty:
        pos = pos.reshape(0, 3)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"Expected {name} positions of shape (n, 3) (got {pos.shape}).")
    if pos.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} structure is empty; every true structure needs at least one atom.")
    check_finite_array(f"{name} positions", pos)
    num = to_numpy(f"{name} numbers", numbers).reshape(-1)
    if num.shape[0] != pos.shape[0]:
        raise ValueError(f"{name}: {pos.shape[0]} positions but {num.shape[0]} species labels.")
    return pos, num.astype(np.int64)


def structure_errors(
    true_positions: Any, true_numbers: Any, pred_positions: Any, pred_numbers: Any
) -> dict[str, Any]:
    """Per-atom errors of one reconstruction.

    Args:
        true_positions: ``(n, 3)`` true atoms (Å), ``n >= 1``.
        true_numbers: ``(n,)`` true species labels.
        pred_positions: ``(m, 3)`` detected atoms (Å), ``m >= 0``.
        pred_numbers: ``(m,)`` detected species labels.

    Returns:
        ``count_correct`` (bool), ``actual_distance (n,)`` (inf when ``m = 0``),
        ``detected_distance (m,)``, ``actual_species_wrong (n,)`` bool,
        ``detected_species_wrong (m,)`` bool.
    """
    tp, tz = _atoms("true", true_positions, true_numbers, allow_empty=False)
    pp, pz = _atoms("predicted", pred_positions, pred_numbers, allow_empty=True)
    n, m = len(tp), len(pp)
    if m == 0:
        return {"count_correct": False, "actual_distance": np.full(n, np.inf), "detected_distance": np.zeros(0),
                "actual_species_wrong": np.ones(n, dtype=bool), "detected_species_wrong": np.zeros(0, dtype=bool)}
    dist = np.linalg.norm(pp[:, None, :] - tp[None, :, :], axis=-1)  # (m, n) = D_ki
    nearest_pred = dist.argmin(axis=0)  # for each true atom
    nearest_true = dist.argmin(axis=1)  # for each detected atom
    return {
        "count_correct": m == n,
        "actual_distance": dist[nearest_pred, np.arange(n)],
        "detected_distance": dist[np.arange(m), nearest_true],
        "actual_species_wrong": pz[nearest_pred] != tz,
        "detected_species_wrong": tz[nearest_true] != pz,
    }


def _pairs(structures: Any, what: str) -> list[tuple[Any, Any]]:
    out = []
    for k, s in enumerate(structures):
        if hasattr(s, "positions") and hasattr(s, "numbers"):
            out.append((s.positions, s.numbers))
        elif isinstance(s, (tuple, list)) and len(s) == 2:
            out.append((s[0], s[1]))
        else:
            raise TypeError(f"{what}[{k}] must be a Crystal/Reconstruction or a (positions, numbers) pair "
                            f"(got {type(s).__name__}).")
    return out


def reconstruction_metrics(
    true_structures: Sequence[Any],
    predictions: Sequence[Any],
    *,
    true_lattice: tuple[Any, Any] | None = None,
    pred_lattice: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Split-level NeSF metrics, atoms pooled over structures.

    Args:
        true_structures: ``CrystalSet``, ``Crystal`` objects or ``(positions, numbers)`` pairs.
        predictions: :class:`Reconstruction` objects or ``(positions, numbers)`` pairs, same order.
        true_lattice, pred_lattice: optional ``(lengths (M, 3) Å, angles (M, 3) rad)`` for the lattice MAEs.

    Returns:
        Dict with ``n_structures``, ``atom_count_error_pct``, ``position_error_actual``,
        ``position_error_detected`` (Å), ``species_error_actual_pct``,
        ``species_error_detected_pct``, ``n_true_atoms``, ``n_detected_atoms``,
        ``n_empty_reconstructions``, ``position_error_actual_nonempty`` (over structures
        with at least one detection) and, with lattices, ``lengths_mae`` (Å) and
        ``angles_mae_deg``.
    """
    trues, preds = _pairs(true_structures, "true_structures"), _pairs(predictions, "predictions")
    if len(trues) != len(preds):
        raise ValueError(f"Got {len(trues)} true structures but {len(preds)} predictions; pass them in pairs.")
    if not trues:
        raise ValueError("No structures to evaluate.")
    errs = [structure_errors(t[0], t[1], p[0], p[1]) for t, p in zip(trues, preds)]
    actual = np.concatenate([e["actual_distance"] for e in errs])
    detected = np.concatenate([e["detected_distance"] for e in errs])
    empty = np.array([len(e["detected_distance"]) == 0 for e in errs])
    nonempty_actual = np.concatenate([e["actual_distance"] for e, em in zip(errs, empty) if not em] or [np.zeros(0)])
    out: dict[str, Any] = {
        "n_structures": len(errs),
        "atom_count_error_pct": 100.0 * (1.0 - float(np.mean([e["count_correct"] for e in errs]))),
        "position_error_actual": float(actual.mean()),
        "position_error_detected": float(detected.mean()) if detected.size else float("nan"),
        "species_error_actual_pct": 100.0 * float(np.concatenate([e["actual_species_wrong"] for e in errs]).mean()),
        "species_error_detected_pct": (100.0 * float(np.concatenate([e["detected_species_wrong"] for e in errs]).mean())
                                       if detected.size else float("nan")),
        "n_true_atoms": int(actual.size),
        "n_detected_atoms": int(detected.size),
        "n_empty_reconstructions": int(empty.sum()),
        "position_error_actual_nonempty": float(nonempty_actual.mean()) if nonempty_actual.size else float("nan"),
    }
    if true_lattice is not None and pred_lattice is not None:
        tl, ta = (np.asarray(x, dtype=np.float64) for x in true_lattice)
        pl, pa = (np.asarray(x, dtype=np.float64) for x in pred_lattice)
        if tl.shape != pl.shape or ta.shape != pa.shape or tl.shape != (len(errs), 3):
            raise ValueError(f"Lattice arrays must be (M, 3) for M = {len(errs)} structures.")
        out["lengths_mae"] = float(np.abs(pl - tl).mean())
        out["angles_mae_deg"] = float(np.degrees(np.abs(pa - ta)).mean())
    return out
