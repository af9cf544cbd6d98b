"""Helpers shared by the test folders (importable as ``helpers``: ``pythonpath = ["tests"]`` in pyproject.toml).

One place for what more than one test module needs: small structures and the agreement measure
of the SOAP tests, tiny PET models for the PET and ECSE tests, and the vertex permutation of an
icosphere symmetry for the CSNN tests. Fixtures stay in the ``conftest.py`` files.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

# ---------------------------------------------------------------------------- structures


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
    return Atoms("NaClNaClK", scaled_positions=frac, cell=cell, pbc=True)


def rattled_silicon(seed: int = 0) -> Atoms:
    """The 8-atom cubic diamond Si cell, rattled by 0.05 Å."""
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.05, seed=seed)
    return si


# ---------------------------------------------------------------------------- comparisons


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (the SOAP issue's agreement measure)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def dscribe_soap(**kw: Any) -> Any:
    """DScribe's SOAP with its ill-conditioning warnings silenced (it warns at large r_cut)."""
    from dscribe.descriptors import SOAP as DScribeSOAP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DScribeSOAP(**kw)


def kdtree_vertex_permutation(g: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """``perm`` with ``g v_i = v_perm[i]`` (an independent KD-tree version of ``vertex_permutation``)."""
    from scipy.spatial import cKDTree

    dist, perm = cKDTree(vertices).query(vertices @ g.T)
    assert dist.max() < 1e-12 and len(set(perm.tolist())) == len(vertices)
    return perm


# ---------------------------------------------------------------------------- models


def small_pet(species: Any, r_cut: float = 3.0, *, n_gnn_layers: int = 2, dtype: torch.dtype = torch.float64,
              seed: int = 0, **kwargs: Any) -> Any:
    """A PET with tiny widths (two message-passing blocks, float64 by default), seeded."""
    from pointsym.models.pet import PET

    torch.manual_seed(seed)
    dims = {"d_model": 8, "n_gnn_layers": n_gnn_layers, "n_trans_layers": 1, "n_heads": 2, "dim_feedforward": 16,
            "head_hidden": 8, **kwargs}
    return PET(species, r_cut=r_cut, **dims).to(dtype)


def tiny_pet(species: Any, r_cut: float = 3.0, **kwargs: Any) -> Any:
    """:func:`small_pet` with one message-passing block: cheap enough for dozens of ECSE evaluations."""
    kwargs.setdefault("n_gnn_layers", 1)
    return small_pet(species, r_cut, **kwargs)


def energy_forces_fn(model: Any) -> Any:
    """``fn(positions, numbers, cell=None, pbc=None) -> (energy, forces)`` of a structure model,
    for :func:`pointsym.testing.assert_equivariant` with ``outputs=("invariant", "atom_vector")``."""
    from pointsym.structures import energy_and_forces

    def fn(positions: Any, numbers: Any, cell: Any = None, pbc: Any = None) -> tuple[Any, Any]:
        out = energy_and_forces(model, positions, numbers, cell, pbc)
        return out["energy"], out["forces"]

    return fn


# ---------------------------------------------------------------------------- SOAP settings

#: One of each DScribe radial weighting (and a constant ``w0`` alone), for parametrised tests.
WEIGHTINGS = [
    {"function": "poly", "r0": 4.0, "c": 1.5, "m": 2},
    {"function": "pow", "r0": 2.0, "c": 1.0, "d": 1.0, "m": 3},
    {"function": "exp", "r0": 2.0, "c": 1.0, "d": 0.5},
    {"w0": 0.3},
    {"function": "poly", "r0": 3.5, "c": 2.0, "m": 1.5, "w0": 0.0},
]
