"""Demo stage: the embedded data sets and the geometry core."""

from __future__ import annotations

import numpy as np

from pointsym.datasets import load_atomistic, load_crystals, load_mnist, load_modelnet10
from pointsym.experiments.common.plotting import plt, savefig, unit_cube_axes
from pointsym.experiments.common.report import Section
from pointsym.geometry import icosahedral_rotations, icosahedron, neighbor_list, vertex_permutation

__all__ = ["stage"]


def stage(ctx) -> Section:  # noqa: ANN001 - DemoContext, imported lazily by the runner
    x, y = load_mnist("train", source="embedded")
    pts, labels, names = load_modelnet10("train", source="embedded")
    crystals = load_crystals("lim_l6", "train", source="embedded")
    frames = load_atomistic("Si", "train", source="embedded")

    # Thumbnails (axes off): at most 9 in wide, so that the report (1000 px) shows them unscaled.
    fig, axes = plt.subplots(1, 10, figsize=(9, 1.3))
    for d, ax in enumerate(axes):
        ax.imshow(x[np.flatnonzero(y == d)[0]], cmap="gray_r")
        ax.set_title(f"digit {d}", fontsize=10)
        ax.axis("off")
    savefig(fig, ctx.path("data_mnist.png"))

    fig = plt.figure(figsize=(9, 4.4))
    for c in range(10):
        ax = fig.add_subplot(2, 5, c + 1, projection="3d")
        p = pts[np.flatnonzero(labels == c)[0]]
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=1, c=p[:, 2], cmap="viridis", vmin=-1, vmax=1)
        ax.set_title(names[c].replace("_", " "), fontsize=10)
        unit_cube_axes(ax)
    savefig(fig, ctx.path("data_modelnet10.png"))

    # Geometry self-check: the icosahedral group permutes the icosahedron's vertices.
    group = icosahedral_rotations()
    verts, _ = icosahedron()
    n_perm = len({tuple(vertex_permutation(g, verts)) for g in group})
    nl = neighbor_list(frames[0], r_cut=5.0)
    return Section(
        title="Embedded data and geometry",
        text=[
            "Small subsets shipped inside the package: MNIST digits, ModelNet10 surface-voxel point clouds "
            "(from 32^3 grids), lim_l6 crystals (NeSF) and mlearn Si energies/forces.",
            "Geometry check: the 60 icosahedral rotations give 60 distinct vertex permutations.",
        ],
        metrics={
            "mnist_train_images": int(len(x)),
            "modelnet10_train_shapes": int(len(pts)),
            "lim_l6_train_crystals": len(crystals),
            "si_train_frames": len(frames),
            "icosahedral_group_order": int(len(group)),
            "distinct_vertex_permutations": n_perm,
            "si_frame0_pairs_within_5A": len(nl),
        },
        images=[("data_mnist.png", "One embedded MNIST digit per class"),
                ("data_modelnet10.png", "One embedded ModelNet10 shape per class (1024 points; coordinates "
                                         "normalised to the voxel grid, -1 to 1; colour = height z)")],
    )
