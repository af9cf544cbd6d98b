"""Helpers shared by the ECSE tests (a unique module name: test directories share sys.path)."""

from __future__ import annotations

import torch

from pointsym.models.pet import PET


def tiny_pet(species, r_cut=3.0, **kwargs) -> PET:
    """A PET small enough for dozens of ECSE evaluations per test (float64)."""
    torch.manual_seed(kwargs.pop("seed", 0))
    dims = {"d_model": 8, "n_gnn_layers": 1, "n_trans_layers": 1, "n_heads": 2, "dim_feedforward": 16,
            "head_hidden": 8, **kwargs}
    return PET(species, r_cut=r_cut, **dims).double()
