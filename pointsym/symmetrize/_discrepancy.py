"""Rotational discrepancy: how much a model's predictions vary over random rotations.

Spec ``ecse_pet.md`` B.11. For every structure, ``n_rotations`` Haar-random rotations
(optionally times the inversion, i.e. random O(3) elements) are applied; forces are rotated
back to the reference frame; the spread around the rotation-averaged prediction is
pooled over rotations, structures and components:

    RMS = sqrt( n/(n-1) * mean (y_a - mean_a y)^2 ),   MAD = mean |y_a - mean_a y|.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pointsym.core import check_int
from pointsym.geometry import random_rotation

__all__ = ["rotational_discrepancy"]


def rotational_discrepancy(
    predict: Callable[[list], dict[str, np.ndarray]],
    frames: Any,
    *,
    n_rotations: int = 20,
    reflections: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Spread of energies and forces of ``predict`` over random rotations.

    Args:
        predict: ``predict(list_of_atoms) -> {"energy": (S,), "forces": (N, 3)}`` (the
            ``predict`` method of :class:`~pointsym.models.PET` or :class:`ECSE` fits).
        frames: ``ase.Atoms`` or a list of them.
        n_rotations: random group elements per structure (>= 2; default: 20).
        reflections: draw improper elements (det -1) for half of the rotations.
        seed: seed of the rotations.

    Returns:
        dict with ``energy_rms``/``energy_mad`` (eV), ``energy_per_atom_rms``/``_mad``/``_max``
        (eV/atom; ``_max`` is the largest single deviation), ``forces_rms``/``forces_mad`` (eV/Å), the relative spreads
        ``energy_rel_max`` (max spread / max |E - mean E over structures|, or / max |E|
        for one structure) and ``forces_rel_max`` (max deviation / max |F|), and the
        rotation-averaged predictions ``energy_mean (S,)`` and ``forces_mean (N, 3)``.
    """
    if hasattr(frames, "get_positions"):
        frames = [frames]
    n_rot = check_int("n_rotations", n_rotations, minimum=2)
    rng = np.random.default_rng(seed)
    e_dev, e_dev_pa, f_dev, e_mean, f_mean, f_scale = [], [], [], [], [], 0.0
    for atoms in frames:
        mats = random_rotation(n_rot, rng)
        if reflections:
            mats[1::2] *= -1.0
        copies = []
        for q in mats:
            a = atoms.copy()
            a.positions = atoms.get_positions() @ q.T
            a.set_cell(np.asarray(atoms.cell[:]) @ q.T, scale_atoms=False)
            copies.append(a)
        out = predict(copies)
        energies = np.asarray(out["energy"], dtype=np.float64)
        forces = np.asarray(out["forces"], dtype=np.float64).reshape(n_rot, len(atoms), 3)
        forces = np.einsum("ank,akl->anl", forces, mats)  # F_lab = F_rot Q
        e_dev.append(energies - energies.mean())
        e_dev_pa.append((energies - energies.mean()) / len(atoms))
        f_dev.append((forces - forces.mean(0)).ravel())
        e_mean.append(energies.mean())
        f_mean.append(forces.mean(0))
        f_scale = max(f_scale, float(np.abs(forces).max()))
    corr = n_rot / (n_rot - 1)
    e_dev_a, e_pa, f_dev_a = np.concatenate(e_dev), np.concatenate(e_dev_pa), np.concatenate(f_dev)
    e_mean_a = np.asarray(e_mean)
    e_scale = float(np.abs(e_mean_a - e_mean_a.mean()).max()) if len(e_mean_a) > 1 else float(abs(e_mean_a[0]))
    return {
        "n_rotations": n_rot,
        "reflections": bool(reflections),
        "energy_rms": float(np.sqrt(corr * np.mean(e_dev_a ** 2))),
        "energy_mad": float(np.mean(np.abs(e_dev_a))),
        "energy_per_atom_rms": float(np.sqrt(corr * np.mean(e_pa ** 2))),
        "energy_per_atom_mad": float(np.mean(np.abs(e_pa))),
        "energy_per_atom_max": float(np.abs(e_pa).max()),
        "forces_rms": float(np.sqrt(corr * np.mean(f_dev_a ** 2))),
        "forces_mad": float(np.mean(np.abs(f_dev_a))),
        "energy_rel_max": float(np.abs(e_dev_a).max() / e_scale) if e_scale > 0 else float(np.abs(e_dev_a).max()),
        "forces_rel_max": float(np.abs(f_dev_a).max() / f_scale) if f_scale > 0 else float(np.abs(f_dev_a).max()),
        "energy_mean": e_mean_a,
        "forces_mean": np.concatenate(f_mean),
    }
