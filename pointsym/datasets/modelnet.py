"""ModelNet10 point clouds derived from 32^3 voxel grids."""

from __future__ import annotations

import os

import numpy as np

from pointsym.core import check_int
from pointsym.datasets._root import check_source, data_file, embedded_file

__all__ = ["load_modelnet10", "MODELNET10_CLASSES"]

SPLITS = ("train", "test")
MODELNET10_CLASSES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)


def load_modelnet10(
    split: str = "train",
    n_points: int = 1024,
    *,
    source: str = "full",
    data_dir: str | os.PathLike[str] | None = None,
    drop_empty: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load ModelNet10 shapes as point clouds in [-1, 1]^3 (last axis vertical).

    The points are centres of surface voxels of the 32^3 binvox grids of the official
    ModelNet10 split (3,991 train / 908 test shapes), 1024 per shape, drawn with replacement
    when a shape has fewer surface voxels. They lie on a 1/16 lattice, so they are a coarse
    stand-in for points sampled from the meshes (see ``modelnet10_voxel/SOURCE.md``).
    The embedded subset holds 20 train and 10 test shapes per class.

    Args:
        split: ``"train"`` or ``"test"``.
        n_points: points per shape, 1..1024; fewer than 1024 are a seeded random subset.
        source: ``"full"`` (data root) or ``"embedded"``.
        data_dir: data root override.
        drop_empty: drop the shapes whose voxel grid is empty (27 train / 7 test in full).
        seed: seed of the point subsampling.

    Returns:
        points float32 ``(n, n_points, 3)``, labels int64 ``(n,)``, class names (10).
    """
    if split not in SPLITS:
        raise ValueError(f"Expected 'split' to be one of {list(SPLITS)} (got {split!r}).")
    n_points = check_int("n_points", n_points, minimum=1, maximum=1024)
    if check_source(source) == "embedded":
        with np.load(embedded_file("modelnet10_subset.npz")) as d:
            # Stored as uint8 voxel indices i: the point is (i + 0.5) / 16 - 1 (exact).
            points = (d[f"idx_{split}"].astype(np.float32) + 0.5) / 16.0 - 1.0
            labels = d[f"y_{split}"].astype(np.int64)
            n_surf = d[f"n_surface_voxels_{split}"]
    else:
        path = data_file("modelnet10_voxel/modelnet10_vox32_surface_points1024.npz", data_dir, what="ModelNet10")
        with np.load(path) as d:
            points = d[f"x_{split}"].astype(np.float32)
            labels = d[f"y_{split}"].astype(np.int64)
            n_surf = d[f"n_surface_voxels_{split}"]
    if drop_empty:
        keep = n_surf > 0
        points, labels = points[keep], labels[keep]
    if n_points < points.shape[1]:
        rng = np.random.default_rng(seed)
        idx = np.stack([rng.choice(points.shape[1], n_points, replace=False) for _ in range(len(points))])
        points = np.take_along_axis(points, idx[:, :, None], axis=1)
    return np.ascontiguousarray(points), labels, list(MODELNET10_CLASSES)
