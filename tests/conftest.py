"""Shared fixtures: seeding, float32/float64 parametrisation and data-root skipping."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

# Keep the suite within budget on 2 cores and deterministic across machines.
torch.set_num_threads(int(os.environ.get("POINTSYM_TEST_THREADS", "2")))
os.environ.setdefault("POINTSYM_QUIET", "1")

TOLERANCES = {torch.float32: 1e-4, torch.float64: 1e-9}


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """Run a numeric test in both precisions; use ``tol(dtype)`` for its tolerance."""
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> float:
    return TOLERANCES[dtype]


def _full_data_root():
    from pointsym.datasets import resolve_data_root

    try:
        return resolve_data_root()
    except FileNotFoundError:
        return None


@pytest.fixture(scope="session")
def data_root():
    """The full data root; skips the test (with the reason) when it is absent."""
    root = _full_data_root()
    if root is None:
        pytest.skip("full data root not found (set POINTSYM_DATA or place ../shared/data); embedded tests still run")
    return root
