"""Neural-network layers for rotation-aware learning on point clouds.

Concentric spherical networks (CSNN, spec ``csnn.md``):

- point cloud -> concentric icosphere grid ``(B, R, V, C)``: :func:`concentric_rbf_mapping`
  (Gaussian kernel, per-shell width), :func:`concentric_constant_mapping` (indicator),
  :func:`nearest_vertex_mapping` (atomic environments), :func:`group_shells`, and the
  weight-free module :class:`ConcentricGridMapping`;
- layers on the grid: :class:`IntraSphereConv` (icosphere graph convolution),
  :class:`CoRadialConv` (1-D convolution over shells), :class:`IcoPool` (neighbourhood
  pooling to the next coarser level), :class:`GlobalPool`, :class:`GridBatchNorm`, and the
  reference layer wrappers :class:`IntraSphereLayer` / :class:`CoRadialLayer`;
- atomic structures -> per-atom fingerprints ``(A, 1, V, n_bins)`` (periodic neighbour list,
  nearest vertex, ``1/|d|``; the CSNN DOS input): :func:`atomic_environment_grid`,
  :func:`atoms_environment_grid` (from ``ase.Atoms``).
"""

from pointsym.nn._concentric import (
    CoRadialConv,
    CoRadialLayer,
    GlobalPool,
    GridBatchNorm,
    IcoPool,
    IntraSphereConv,
    IntraSphereLayer,
)
from pointsym.nn._environments import atomic_environment_grid, atoms_environment_grid
from pointsym.nn._mapping import (
    ConcentricGridMapping,
    concentric_constant_mapping,
    concentric_rbf_mapping,
    group_shells,
    nearest_vertex_mapping,
    rbf_gammas,
)

__all__ = [
    "CoRadialConv",
    "CoRadialLayer",
    "ConcentricGridMapping",
    "GlobalPool",
    "GridBatchNorm",
    "IcoPool",
    "IntraSphereConv",
    "IntraSphereLayer",
    "atomic_environment_grid",
    "atoms_environment_grid",
    "concentric_constant_mapping",
    "concentric_rbf_mapping",
    "group_shells",
    "nearest_vertex_mapping",
    "rbf_gammas",
]
