"""Small structures shared by the ECSE tests (all tiny, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def methane() -> dict:
    """A distorted CH4 (no symmetry left), as structure-model keyword arguments."""
    rng = np.random.default_rng(3)
    pos = np.array([[0, 0, 0], [.63, .63, .63], [-.63, -.63, .63], [-.63, .63, -.63], [.63, -.63, -.63]])
    pos = pos + rng.normal(scale=0.08, size=pos.shape)
    return {"positions": torch.tensor(pos), "numbers": torch.tensor([6, 1, 1, 1, 1])}


@pytest.fixture
def si_cell() -> dict:
    """A distorted 4-atom periodic Si cell with a sheared, non-orthogonal lattice."""
    rng = np.random.default_rng(5)
    cell = np.array([[3.9, 0.0, 0.0], [0.4, 3.8, 0.0], [0.3, -0.2, 3.7]]) + rng.normal(scale=0.05, size=(3, 3))
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0.25, 0.3, 0.75]])
    pos = frac @ cell + rng.normal(scale=0.1, size=(4, 3))
    return {"positions": torch.tensor(pos), "numbers": torch.tensor([14, 14, 14, 14]), "cell": torch.tensor(cell),
            "pbc": torch.tensor([True, True, True])}
