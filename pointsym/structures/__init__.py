"""The neutral structures layer shared by the atomistic models (PET, ECSE, NeSF, SOAP users).

A *structure model* is called as ``model(positions, numbers, cell, pbc, batch)``:

=============  =================  ======================================================
``positions``  ``(N, 3)`` float   Cartesian positions of all atoms of all structures, Å
``numbers``    ``(N,)`` int64     per-atom atomic numbers
``cell``       ``(S, 3, 3)``      lattice vectors as rows, Å (zeros when not periodic)
``pbc``        ``(S, 3)`` bool    periodicity of each structure along each cell vector
``batch``      ``(N,)`` int64     structure index of each atom, in ``[0, S)``
=============  =================  ======================================================

Structure-level outputs have a leading axis of size ``S``, per-atom outputs of size ``N``.
This package holds the structure batch, the input checks (run once at the public boundary),
the batched neighbour list and energies/forces/stress by autograd.

Validate once: :func:`check_structure_inputs` is the one check of a public entry point. Code
that validated its inputs and then calls a structure model (ECSE per chunk of frames,
:func:`autograd_energy_forces`) wraps that call in :func:`trusted_inputs`, inside which
:func:`check_structure_inputs` only canonicalises (no checks, no device-to-host syncs).
"""

from pointsym.structures.batch import (
    MIN_DISTANCE,
    StructureBatch,
    autograd_energy_forces,
    batch_structures,
    batched_neighbor_list,
    check_structure_inputs,
    composition_baseline,
    energy_and_forces,
    inputs_trusted,
    predict_structures,
    strain_to_stress,
    strained_inputs,
    trusted_inputs,
)
from pointsym.structures.io import read_structures

__all__ = [
    "MIN_DISTANCE",
    "StructureBatch",
    "autograd_energy_forces",
    "batch_structures",
    "batched_neighbor_list",
    "check_structure_inputs",
    "composition_baseline",
    "energy_and_forces",
    "inputs_trusted",
    "predict_structures",
    "read_structures",
    "strain_to_stress",
    "strained_inputs",
    "trusted_inputs",
]
