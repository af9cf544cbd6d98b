"""Exact, smooth rotational symmetrization of arbitrary models (ECSE).

:class:`ECSE` wraps any model that maps an atomic structure (positions, species, cell,
pbc) to scalars, vectors or rank-2 tensors -- per structure or per atom -- and returns
outputs that are exactly O(3)-equivariant (SO(3) with ``reflections=False``) and smooth,
by averaging the model over an ensemble of local coordinate frames built from pairs of
neighbours with smooth, invariant weights (Pozdnyakov & Ceriotti, NeurIPS 2023,
arXiv:2305.19302).

Also here: the structure-batch utilities shared by the atomistic models
(:class:`StructureBatch`, :func:`batch_structures`, :func:`energy_and_forces`,
:func:`predict_structures`), the rotational-discrepancy metric and a deliberately
non-equivariant reference model (:class:`NeighborMLP`).
"""

from pointsym.symmetrize._discrepancy import rotational_discrepancy
from pointsym.symmetrize._ecse import ECSE, OUTPUT_KINDS
from pointsym.symmetrize._fallback import principal_axis
from pointsym.symmetrize._frames import ECSEConfig, FrameSet, compute_frames
from pointsym.symmetrize._structures import (
    MIN_DISTANCE,
    StructureBatch,
    autograd_energy_forces,
    batch_structures,
    batched_neighbor_list,
    check_structure_inputs,
    composition_baseline,
    energy_and_forces,
    predict_structures,
)
from pointsym.symmetrize._switching import cutoff_switch, segment_smooth_max, switch_on, switch_on_linear
from pointsym.symmetrize._toy import NeighborMLP

__all__ = [
    "ECSE",
    "ECSEConfig",
    "FrameSet",
    "MIN_DISTANCE",
    "NeighborMLP",
    "OUTPUT_KINDS",
    "StructureBatch",
    "autograd_energy_forces",
    "batch_structures",
    "batched_neighbor_list",
    "check_structure_inputs",
    "composition_baseline",
    "compute_frames",
    "cutoff_switch",
    "energy_and_forces",
    "predict_structures",
    "principal_axis",
    "rotational_discrepancy",
    "segment_smooth_max",
    "switch_on",
    "switch_on_linear",
]
