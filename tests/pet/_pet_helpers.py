"""Helpers shared by the PET tests (a unique module name: test directories share sys.path)."""

from __future__ import annotations

import torch

from pointsym.models.pet import PET


def small_pet(species, r_cut=3.0, dtype=torch.float64, **kwargs) -> PET:
    """A two-block PET with tiny widths (float64 by default)."""
    torch.manual_seed(kwargs.pop("seed", 0))
    dims = {"d_model": 8, "n_gnn_layers": 2, "n_trans_layers": 1, "n_heads": 2, "dim_feedforward": 16,
            "head_hidden": 8, **kwargs}
    return PET(species, r_cut=r_cut, **dims).to(dtype)
