"""Point cloud -> concentric grid mappings: closed forms, symmetry, linear cost, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from helpers import kdtree_vertex_permutation
from pointsym.geometry import icosahedral_rotations, icosphere, random_rotation
from pointsym.nn import (
    ConcentricGridMapping,
    concentric_constant_mapping,
    concentric_rbf_mapping,
    group_shells,
    nearest_vertex_mapping,
    rbf_gammas,
)
from pointsym.testing import assert_invariant


def test_rbf_gammas_closed_form():
    level, r, t = 2, 5, 0.01
    gam = rbf_gammas(level, r, t)
    s = icosphere(level)
    face = s.vertices[s.faces[0]]
    # Shell 1: the 3 vertices at 1/R and the origin -> largest distance 1/R.
    np.testing.assert_allclose(gam[0], -np.log(t) * r**2, rtol=1e-14)
    # Shell i >= 2: largest distance among face-0 vertices at radii i/R and (i-1)/R; for a
    # small face that is the distance between two different vertices at the outer/inner radius.
    for i in range(2, r + 1):
        pts = np.concatenate([face * i / r, face * (i - 1) / r])
        d = max(np.linalg.norm(a - b) for a in pts for b in pts)
        np.testing.assert_allclose(gam[i - 1], -np.log(t) / d**2, rtol=1e-14)
    assert np.all(np.diff(gam) < 0)  # outer shells are wider
    with pytest.raises(ValueError, match="threshold"):
        rbf_gammas(2, 4, 1.5)


def test_rbf_point_on_a_vertex():
    # One point on vertex 7 at radius 1 (not centred): it is the cloud radius, so it stays at
    # rho = 1, in the outer shell, whose last fine shell has radius exactly 1.
    level, r, c = 2, 3, 4
    s = icosphere(level)
    p = torch.as_tensor(s.vertices[7][None] * 2.5)
    grid = concentric_rbf_mapping(p, level, r, c, center=False)
    assert grid.shape == (r, s.n_vertices, c) and grid.dtype == torch.float64
    gam = rbf_gammas(level, r)[r - 1]
    rho_f = (np.arange(c) + (r - 1) * c + 1) / (r * c)
    hit = np.flatnonzero(grid.abs().sum((0, 2)).numpy())
    # Vertex 7 and two of its (equidistant) 1-ring neighbours, in the outer shell only.
    assert 7 in hit and len(hit) == 3 and set(hit) - {7} <= set(s.neighbors[7].tolist())
    assert grid[: r - 1].abs().sum() == 0
    for v in hit:
        expected = np.exp(-gam * np.linalg.norm(rho_f[:, None] * s.vertices[v] - s.vertices[7], axis=1) ** 2)
        np.testing.assert_allclose(grid[r - 1, v].numpy(), expected, rtol=1e-13)
    assert grid[r - 1, 7, c - 1] == 1.0  # exp(0)


def test_radial_binning_at_shell_boundaries():
    # Constant mapping, R = 4, not centred; the first point fixes the radius to 1.
    v = icosphere(1).vertices
    radii = [1.0, 0.75, 0.5, 0.25, 0.2499, 0.0625]
    pts = torch.as_tensor(np.stack([rad * v[i] for i, rad in enumerate(radii)]))
    grid = concentric_constant_mapping(pts, 1, 4, 1, center=False, k=1)
    # shell r covers [r/R, (r+1)/R); the outer shell is closed at rho = 1.
    want_shell = [3, 3, 2, 1, 0, 0]
    for i, r in enumerate(want_shell):
        assert grid[r, i, 0] == 1.0, (i, r)
    assert grid.sum() == len(radii)
    # With R' = 8 fine shells grouped into 4 shells x 2 channels.
    g2 = concentric_constant_mapping(pts, 1, 4, 2, center=False, k=1)
    want_fine = [7, 6, 4, 2, 1, 0]
    for i, f in enumerate(want_fine):
        assert g2[f // 2, i, f % 2] == 1.0, (i, f)


def test_constant_mapping_grouping_matches_group_shells():
    pts = torch.randn(3, 50, 3, dtype=torch.float64)
    fine = concentric_constant_mapping(pts, 1, 12, 1)
    for r in (1, 2, 3, 6, 12):
        grouped = group_shells(fine, r)
        direct = concentric_constant_mapping(pts, 1, r, 12 // r)
        assert grouped.shape == (3, r, 42, 12 // r)
        torch.testing.assert_close(grouped, direct, rtol=0, atol=0)
    assert torch.all(fine.sum((1, 2, 3)) == 50 * 3)  # k = 3 vertices per point
    with pytest.raises(ValueError, match="divide"):
        group_shells(fine, 5)


@pytest.mark.parametrize("mapping", ["rbf", "constant"])
@pytest.mark.parametrize("level", [1, 2])
def test_grid_permutes_under_the_icosahedral_group(mapping, level):
    # 60 rotations and their compositions with the inversion (the full group I_h).
    rng = np.random.default_rng(level)
    pts = rng.normal(size=(2, 200, 3)) + np.array([0.3, -0.2, 0.1])
    pts[1, 0] = pts[1, 1:].mean(0)  # a point at the centroid: no direction, spread evenly
    fn = ConcentricGridMapping(level, 3, 2, mapping=mapping)
    ref = fn(torch.as_tensor(pts))
    assert torch.isfinite(ref).all() and ref.abs().sum() > 0
    group = np.concatenate([icosahedral_rotations(), -icosahedral_rotations()])  # (120, 3, 3)
    verts = icosphere(level).vertices
    rotated = np.einsum("gij,bnj->gbni", group, pts).reshape(-1, 200, 3)  # all 120 copies in one batch
    got = fn(torch.as_tensor(rotated)).view(len(group), 2, *ref.shape[1:])
    worst = 0.0
    for g, grid in zip(group, got, strict=True):
        perm = kdtree_vertex_permutation(g, verts)  # g v_i = v_perm[i] -> grid'[..., perm[i], :] = grid[..., i, :]
        worst = max(worst, float((grid[:, :, perm] - ref).abs().max()))
    assert worst <= 1e-12 * float(ref.abs().max())


def test_grid_is_invariant_to_point_order_and_translation():
    pts = torch.randn(2, 64, 3, dtype=torch.float64)
    fn = ConcentricGridMapping(2, 4, 2)
    assert_invariant(fn, pts, kind="permutation")
    assert_invariant(fn, pts, kind="translation")  # clouds are centred first


def test_grid_is_only_approximately_rotation_invariant():
    # A generic rotation is not in the icosahedral group: the grid changes (sanity check that
    # the equivariance test above is not trivially satisfied).
    pts = torch.randn(1, 300, 3, dtype=torch.float64)
    fn = ConcentricGridMapping(2, 4, 2)
    g = torch.as_tensor(random_rotation(seed=3))
    a, b = fn(pts), fn(pts @ g.T)
    assert float((a.sum((1, 2)) - b.sum((1, 2))).abs().max()) > 1e-3


def test_mask_ignores_padding():
    pts = torch.randn(2, 40, 3, dtype=torch.float64)
    padded = torch.cat([pts, 100 * torch.randn(2, 7, 3, dtype=torch.float64)], 1)
    mask = torch.zeros(2, 47, dtype=torch.bool)
    mask[:, :40] = True
    for fn in (concentric_rbf_mapping, concentric_constant_mapping):
        torch.testing.assert_close(fn(padded, 2, 3, 2, mask=mask), fn(pts, 2, 3, 2), rtol=1e-13, atol=1e-15)


def test_rbf_mapping_gradient():
    pts = (torch.randn(1, 12, 3, dtype=torch.float64) * 0.7).requires_grad_()
    torch.autograd.gradcheck(lambda p: concentric_rbf_mapping(p, 1, 3, 2), (pts,), eps=1e-7, atol=1e-6)


def test_mapping_batched_float32_and_unbatched():
    pts = torch.randn(3, 100, 3)
    grid = concentric_rbf_mapping(pts, 2, 4, 3)
    assert grid.shape == (3, 4, 162, 3) and grid.dtype == torch.float32
    torch.testing.assert_close(concentric_rbf_mapping(pts[1], 2, 4, 3), grid[1])
    torch.testing.assert_close(grid.double(), concentric_rbf_mapping(pts.double(), 2, 4, 3), rtol=1e-4, atol=1e-5)


class _ElementCounter(TorchFunctionMode):
    """Counts the tensor elements that torch functions produce: a deterministic measure of work."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.total += t.numel()
                self.largest = max(self.largest, t.numel())
        return out


def test_mapping_cost_is_linear_in_points():
    # Work is counted, not timed: the elements of every tensor the mapping creates.
    rng = np.random.default_rng(0)
    level, n_vertices = 3, icosphere(3).n_vertices

    def cost(n: int) -> tuple[int, int]:
        points = torch.as_tensor(rng.normal(size=(1, n, 3)))
        with _ElementCounter() as counter:
            concentric_rbf_mapping(points, level, 4, 4)
        return counter.total, counter.largest

    cost(100)  # warm-up: the look-up tables are built (in numpy) and cached once
    (t1, _), (t2, _), (t10, largest) = cost(2000), cost(4000), cost(20000)
    per_point = (t2 - t1) // 2000
    assert t2 - t1 == per_point * 2000 and t10 - t1 == per_point * 18000, (t1, t2, t10)  # a fixed cost per point
    # ... and a small one: no (points x vertices) intermediate, only a few candidate vertices per point.
    assert largest <= 20000 * n_vertices // 10, (largest, n_vertices)


def test_mapping_bad_input():
    good = torch.randn(2, 10, 3)
    bad = good.clone()
    bad[1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        concentric_rbf_mapping(bad, 2, 4, 2)
    with pytest.raises(ValueError, match="empty"):
        concentric_rbf_mapping(torch.zeros(2, 0, 3), 2, 4, 2)
    with pytest.raises(ValueError, match="non-zero radius"):
        concentric_rbf_mapping(torch.ones(2, 5, 3), 2, 4, 2)  # one point repeated: zero extent
    with pytest.raises(ValueError, match="non-zero radius"):
        concentric_constant_mapping(torch.zeros(1, 5, 3), 2, 4, 2, center=False)
    with pytest.raises(ValueError, match="shape"):
        concentric_rbf_mapping(torch.randn(2, 10, 2), 2, 4, 2)
    with pytest.raises(TypeError, match="floating"):
        concentric_rbf_mapping(torch.ones(2, 10, 3, dtype=torch.int64), 2, 4, 2)
    with pytest.raises(ValueError, match="no valid points"):
        concentric_rbf_mapping(good, 2, 4, 2, mask=torch.zeros(2, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="'n_shells'"):
        concentric_rbf_mapping(good, 2, 0, 2)
    with pytest.raises(ValueError, match="'mapping'"):
        ConcentricGridMapping(2, 4, 2, mapping="gauss")
    assert "threshold=0.01" in repr(ConcentricGridMapping(2, 4, 2))


# ----------------------------------------------------------------------- atomic environments


def test_nearest_vertex_mapping_closed_form():
    level, n_bins = 3, 32
    v = icosphere(level).vertices
    # Bin width (7 - 1) / 32 = 0.1875 A: |d| = 1.1 -> bin 0; 2.45 -> ceil(7.73) - 1 = 7; 6.99 -> 31.
    vecs = torch.as_tensor(np.stack([1.1 * v[5], 2.45 * v[100], 6.99 * v[641], 0.9 * v[3], 7.01 * v[4]]))
    out = nearest_vertex_mapping(vecs, level, n_bins)
    assert out.shape == (1, 642, n_bins)
    expected = torch.zeros(1, 642, n_bins, dtype=torch.float64)
    expected[0, 5, 0], expected[0, 100, 7], expected[0, 641, 31] = 1 / 1.1, 1 / 2.45, 1 / 6.99
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)  # |d| < r_min and > r_cut are ignored
    sq = nearest_vertex_mapping(vecs, level, n_bins, scaling="inverse_square")
    assert torch.isclose(sq[0, 100, 7], torch.tensor(1 / 2.45**2, dtype=torch.float64))
    assert nearest_vertex_mapping(vecs, level, n_bins, scaling="none").sum() == 3


def test_nearest_vertex_mapping_index_form_and_symmetry():
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(2, 30, 3)) * 3
    mask = np.ones((2, 30), bool)
    mask[1, 25:] = False
    batched = nearest_vertex_mapping(torch.as_tensor(vec), 2, 8, mask=torch.as_tensor(mask))
    flat = torch.as_tensor(np.concatenate([vec[0], vec[1, :25]]))
    index = torch.as_tensor(np.repeat([0, 1], [30, 25]))
    torch.testing.assert_close(nearest_vertex_mapping(flat, 2, 8, index=index, n_envs=2), batched)
    verts = icosphere(2).vertices
    for g in icosahedral_rotations()[::7]:
        perm = kdtree_vertex_permutation(g, verts)
        got = nearest_vertex_mapping(torch.as_tensor(vec @ g.T), 2, 8, mask=torch.as_tensor(mask))
        torch.testing.assert_close(got[:, :, perm], batched, rtol=1e-13, atol=1e-15)
    # An environment without neighbours is all zeros; bad arguments are clear errors.
    empty = nearest_vertex_mapping(torch.zeros(0, 3), 2, 8)
    assert empty.shape == (1, 162, 8) and empty.abs().sum() == 0
    assert nearest_vertex_mapping(torch.zeros(3, 0, 3), 2, 8).shape == (3, 1, 162, 8)
    with pytest.raises(ValueError, match="r_cut"):
        nearest_vertex_mapping(flat, 2, 8, r_min=3.0, r_cut=2.0)
    with pytest.raises(ValueError, match="'scaling'"):
        nearest_vertex_mapping(flat, 2, 8, scaling="log")
    with pytest.raises(ValueError, match="'n_envs'"):
        nearest_vertex_mapping(flat, 2, 8, index=index, n_envs=1)
