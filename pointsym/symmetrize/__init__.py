"""Exact, smooth rotational symmetrization of arbitrary models (ECSE).

:class:`ECSE` wraps any model that maps an atomic structure (positions, numbers, cell,
pbc) to scalars, vectors or rank-2 tensors -- per structure or per atom -- and returns
outputs that are exactly O(3)-equivariant (SO(3) with ``reflections=False``) and smooth,
by averaging the model over an ensemble of local coordinate frames built from pairs of
neighbours with smooth, invariant weights (Pozdnyakov & Ceriotti, NeurIPS 2023,
arXiv:2305.19302).

Two modes: ``ECSE(model, r_cut)`` (``mode="union"``, the default) evaluates the whole structure
in the union of the frames of all its atoms, which is right for any model (message passing
included); ``ECSE(model, r_cut, mode="atom")`` symmetrizes every atomic environment with its
own frames, much cheaper for crystals, for models that declare locality through the
protocol of :mod:`pointsym.symmetrize._local` (``atomic_outputs_local(center_numbers,
edge_vectors, edge_numbers, edge_center)`` plus ``r_cut``, and optionally ``is_local``):
:class:`~pointsym.models.PET` with ``n_gnn_layers=1`` and :class:`NeighborMLP` implement it;
:func:`is_local_model` tells whether a model does.

Also here: the rotational-discrepancy metric and a deliberately non-equivariant reference
model (:class:`NeighborMLP`). The structure-batch utilities (:class:`StructureBatch`,
:func:`batch_structures`, :func:`energy_and_forces`, :func:`predict_structures`, ...) moved to
:mod:`pointsym.structures`; their old names here still work for one release, with a
``DeprecationWarning``.
"""

from typing import Any

from pointsym.symmetrize._discrepancy import rotational_discrepancy
from pointsym.symmetrize._ecse import ECSE, OUTPUT_KINDS
from pointsym.symmetrize._fallback import principal_axis
from pointsym.symmetrize._frames import ECSEConfig, FrameSet, compute_frames
from pointsym.symmetrize._local import is_local_model
from pointsym.symmetrize._switching import cutoff_switch, segment_smooth_max, switch_on, switch_on_linear
from pointsym.symmetrize._toy import NeighborMLP

__all__ = [
    "ECSE",
    "ECSEConfig",
    "FrameSet",
    "NeighborMLP",
    "OUTPUT_KINDS",
    "compute_frames",
    "cutoff_switch",
    "is_local_model",
    "principal_axis",
    "rotational_discrepancy",
    "segment_smooth_max",
    "switch_on",
    "switch_on_linear",
]

# Moved to pointsym.structures (deprecated here; removed in the next release).
_MOVED = frozenset({
    "MIN_DISTANCE", "StructureBatch", "autograd_energy_forces", "batch_structures", "batched_neighbor_list",
    "check_structure_inputs", "composition_baseline", "energy_and_forces", "predict_structures",
})


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import warnings

        import pointsym.structures as structures

        warnings.warn(f"pointsym.symmetrize.{name} moved to pointsym.structures.{name}; the old name will be "
                      "removed in the next release.", DeprecationWarning, stacklevel=2)
        return getattr(structures, name)
    raise AttributeError(f"module 'pointsym.symmetrize' has no attribute {name!r}")
