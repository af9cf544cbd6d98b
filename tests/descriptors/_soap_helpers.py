"""Shared structures and helpers for the SOAP tests (small systems: the whole directory runs in seconds)."""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms
from ase.build import bulk


def random_molecule(symbols: str, seed: int, box: float = 3.5, min_dist: float = 0.9) -> Atoms:
    """Atoms at random positions in a cube, no two closer than ``min_dist`` Å."""
    rng = np.random.default_rng(seed)
    n = len(Atoms(symbols))
    pos: list[np.ndarray] = []
    while len(pos) < n:
        p = rng.uniform(0.0, box, 3)
        if all(np.linalg.norm(p - q) >= min_dist for q in pos):
            pos.append(p)
    return Atoms(symbols, positions=np.array(pos))


def random_crystal(seed: int) -> Atoms:
    """A skewed (triclinic) periodic cell with three species and rattled positions."""
    rng = np.random.default_rng(seed)
    cell = np.diag([3.6, 4.1, 3.9]) + rng.uniform(-0.6, 0.6, (3, 3)) * (1 - np.eye(3))
    frac = rng.uniform(0, 1, (5, 3))
    atoms = Atoms("NaClNaClK", scaled_positions=frac, cell=cell, pbc=True)
    return atoms


def rattled_silicon(seed: int = 0) -> Atoms:
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.05, seed=seed)
    return si


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (the issue's agreement measure)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def dscribe_soap(**kw):
    """DScribe's SOAP with its ill-conditioning warnings silenced (it warns at large r_cut)."""
    from dscribe.descriptors import SOAP as DScribeSOAP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DScribeSOAP(**kw)

