"""Small structures for the PET tests."""

from __future__ import annotations

import ase
import numpy as np
import pytest


@pytest.fixture
def water_like() -> ase.Atoms:
    rng = np.random.default_rng(0)
    pos = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [2.8, 0.1, 0.2], [3.3, 0.8, 0.4], [3.2, -0.7, 0.5]])
    return ase.Atoms("OHHOHH", positions=pos + rng.normal(scale=0.05, size=pos.shape))


@pytest.fixture
def si_crystal() -> ase.Atoms:
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms
    atoms.positions += np.random.default_rng(1).normal(scale=0.08, size=atoms.positions.shape)
    return atoms
