"""Neural structure fields (NeSF): crystals as continuous fields, a field autoencoder and decoding.

Chiba et al., "Neural structure fields with application to crystal structure autoencoders",
Communications Materials 4, 106 (2023). A crystal's *structure field* maps any point ``q``
to the vector towards its nearest atom (position field) and that atom's species (species
field). :class:`NeSF` encodes a crystal with a PointNet and decodes both fields with
query-conditioned MLPs; :func:`reconstruct` turns a field back into atoms; the metrics of
the paper are in :func:`reconstruction_metrics`.

Example:
    >>> import numpy as np
    >>> from pointsym.fields import structure_field
    >>> f = structure_field(np.array([[0.0, 0, 0], [2.0, 0, 0]]), [8, 22], np.array([[1.5, 0.2, 0]]))
    >>> f.vectors.round(3).tolist(), f.species.tolist()
    ([[0.5, -0.2, 0.0]], [22])
"""

from pointsym.fields._data import LIM_L6_SIDX_TO_Z, Crystal, CrystalSet, load_nesf_set, read_nesf_npz
from pointsym.fields._field import StructureField, batched_nearest_atoms, species_one_hot, structure_field
from pointsym.fields._io import load_nesf, save_nesf
from pointsym.fields._metrics import reconstruction_metrics, structure_errors
from pointsym.fields._model import (
    ALL_ELEMENTS,
    LatticeHead,
    NeSF,
    PointNetEncoder,
    PositionFieldDecoder,
    QueryEncoding,
    SpeciesFieldDecoder,
)
from pointsym.fields._reconstruct import (
    ExactField,
    NeuralField,
    Reconstruction,
    ReconstructionParams,
    nms_atoms,
    reconstruct,
)
from pointsym.fields._training import (
    CrystalBatch,
    NeSFLoss,
    QuerySampler,
    collate_crystals,
    crystal_dataset,
    grid_points,
)

__all__ = [
    "ALL_ELEMENTS",
    "Crystal",
    "CrystalBatch",
    "CrystalSet",
    "ExactField",
    "LIM_L6_SIDX_TO_Z",
    "LatticeHead",
    "NeSF",
    "NeSFLoss",
    "NeuralField",
    "PointNetEncoder",
    "PositionFieldDecoder",
    "QueryEncoding",
    "QuerySampler",
    "Reconstruction",
    "ReconstructionParams",
    "SpeciesFieldDecoder",
    "StructureField",
    "batched_nearest_atoms",
    "collate_crystals",
    "crystal_dataset",
    "grid_points",
    "load_nesf",
    "load_nesf_set",
    "nms_atoms",
    "read_nesf_npz",
    "reconstruct",
    "reconstruction_metrics",
    "save_nesf",
    "species_one_hot",
    "structure_errors",
    "structure_field",
]
