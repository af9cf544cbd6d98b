"""Implementation of :class:`PointsymCalculator` (see the package docstring)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from pointsym.core import check_choice, load_model, resolve_device
from pointsym.structures import batch_structures, energy_and_forces
from pointsym.symmetrize import ECSE

__all__ = ["PointsymCalculator"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class PointsymCalculator(Calculator):
    """An ASE calculator around a pointsym structure model.

    Args:
        model: a structure model (``torch.nn.Module``) returning ``(S,)`` energies in eV, such
            as :class:`~pointsym.models.PET` or an :class:`~pointsym.symmetrize.ECSE` around it.
        dtype: ``"float64"`` (default; conserves energy best in MD) or ``"float32"``; the model
            is cast to it.
        device: torch device (default: ``"cpu"``).

    Properties: ``energy`` and ``free_energy`` (eV), ``forces`` (eV/Å, ``-dE/dx``) and, for
    fully periodic structures, ``stress`` (eV/Å³, ASE's Voigt order and sign convention).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: torch.nn.Module, *, dtype: str = "float64", device: Any = "cpu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Expected 'model' to be a torch.nn.Module structure model (got {type(model).__name__}).")
        check_choice("dtype", dtype, tuple(_DTYPES))
        self.dtype = _DTYPES[dtype]
        self.device = resolve_device(device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        ecse: bool = False,
        ecse_kwargs: dict[str, Any] | None = None,
        dtype: str = "float64",
        device: Any = "cpu",
    ) -> PointsymCalculator:
        """A calculator from a ``pointsym pet-train`` checkpoint or a model file (``Model.save``).

        Args:
            path: ``best.pt``/``last.pt`` of ``pet-train``, or a file written by ``PET.save`` /
                ``ECSE.save`` (any pointsym structure model).
            ecse: wrap the loaded model in :class:`~pointsym.symmetrize.ECSE` (exactly O(3)
                invariant energies, equivariant forces; ``r_cut`` = the model's), unless it
                already is one.
            ecse_kwargs: further ECSE settings (e.g. ``{"max_frames": 64}``). For molecular
                dynamics, ``{"n_prunings": 0}``: the reference algorithm's iterated frame pruning
                (the default) can switch a frame off within ~1e-3 Å, a feature a femtosecond
                step does not resolve (measured on the demo's methane PET: 290 meV/atom drift in
                40 steps of 0.25 fs with it, 53 without, falling with the step).
            dtype, device: as for the constructor.
        """
        model = load_model(path)
        if ecse and not isinstance(model, ECSE):
            outputs = getattr(model, "OUTPUTS", "scalar")
            model = ECSE(model, r_cut=float(model.r_cut), outputs=outputs, **(ecse_kwargs or {}))
        return cls(model, dtype=dtype, device=device)

    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        batch = batch_structures(self.atoms, dtype=self.dtype, device=self.device)
        periodic = bool(np.all(self.atoms.pbc))
        want_stress = "stress" in properties
        if want_stress and not periodic:
            raise ValueError("Stress is only defined for fully periodic structures (atoms.pbc all True); "
                             f"this one has pbc={self.atoms.pbc.tolist()}.")
        out = energy_and_forces(self.model, **batch.inputs(), forces=True, stress=want_stress and periodic)
        energy = float(out["energy"].detach().double().sum().cpu())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].detach().double().cpu().numpy()
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"][0].detach().double().cpu().numpy())
