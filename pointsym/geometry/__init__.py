"""Geometry core: rotations, the icosahedral group, icosphere grids and neighbour lists."""

from pointsym.geometry.icosahedron import icosahedral_rotations, icosahedron, vertex_permutation
from pointsym.geometry.icosphere import Icosphere, icosphere, icosphere_size, nearest_vertices
from pointsym.geometry.neighbors import NeighborList, edge_vectors, neighbor_list, parse_pbc
from pointsym.geometry.rotations import (
    random_reflection,
    random_rotation,
    random_z_rotation,
    rotation_about_axis,
)

__all__ = [
    "Icosphere",
    "NeighborList",
    "edge_vectors",
    "icosahedral_rotations",
    "icosahedron",
    "icosphere",
    "icosphere_size",
    "nearest_vertices",
    "neighbor_list",
    "parse_pbc",
    "random_reflection",
    "random_rotation",
    "random_z_rotation",
    "rotation_about_axis",
    "vertex_permutation",
]
