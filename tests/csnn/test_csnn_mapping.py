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
from pointsym.nn._mapping import _radial_terms
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


@pytest.mark.parametrize("radial", ["hard", "soft"])
@pytest.mark.parametrize("mapping", ["rbf", "constant"])
@pytest.mark.parametrize("level", [1, 2])
def test_grid_permutes_under_the_icosahedral_group(mapping, level, radial):
    # 60 rotations and their compositions with the inversion (the full group I_h).
    rng = np.random.default_rng(level)
    pts = rng.normal(size=(2, 200, 3)) + np.array([0.3, -0.2, 0.1])
    pts[1, 0] = pts[1, 1:].mean(0)  # a point at the centroid: no direction, spread evenly
    fn = ConcentricGridMapping(level, 3, 2, mapping=mapping, radial=radial)
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
    # (Zero-extent clouds are not an error: see test_degenerate_clouds_map_to_the_centre.)
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
    with pytest.raises(ValueError, match="'radial'"):
        ConcentricGridMapping(2, 4, 2, radial="linear")
    with pytest.raises(ValueError, match="'radial'"):
        concentric_constant_mapping(good, 2, 4, 2, radial="smooth")
    assert "threshold=0.01" in repr(ConcentricGridMapping(2, 4, 2))


# ----------------------------------------------------------------------- soft radial assignment


def test_soft_radial_terms_are_a_partition_of_unity():
    rho = torch.linspace(0, 1, 1001, dtype=torch.float64)[None]
    for n_shells, n_sub in [(1, 1), (4, 1), (4, 4), (16, 1), (3, 2)]:
        (lo, w_lo), (hi, w_hi) = _radial_terms(rho, n_shells, "soft", n_sub)
        torch.testing.assert_close(w_lo + w_hi, torch.ones_like(rho), rtol=0, atol=1e-15)
        assert bool(((w_lo >= 0) & (w_hi >= 0)).all())
        assert bool(((hi - lo >= 0) & (hi - lo <= 1)).all()) and int(lo.min()) >= 0 and int(hi.max()) < n_shells
        # The weighted mean shell radius a_i follows rho linearly between a_0 and a_{R-1}.
        a = (torch.arange(n_shells, dtype=torch.float64) + (n_sub + 1) / (2 * n_sub)) / n_shells
        mean_radius = w_lo * a[lo] + w_hi * a[hi]
        torch.testing.assert_close(mean_radius, rho.clamp(float(a[0]), float(a[-1])), rtol=0, atol=1e-14)
    [(shell, weight)] = _radial_terms(rho, 4, "hard")
    assert weight is None and torch.equal(shell, (rho * 4).floor().clamp(0, 3).long())


def test_soft_constant_mapping_closed_form_and_total():
    # R = 4 spheres at 0.25, 0.5, 0.75, 1 (C = 1), not centred; the first point fixes the radius.
    v = icosphere(1).vertices
    radii = [1.0, 0.625, 0.8, 0.25, 0.1]
    pts = torch.as_tensor(np.stack([rad * v[i] for i, rad in enumerate(radii)]))
    grid = concentric_constant_mapping(pts, 1, 4, 1, center=False, k=1, radial="soft")
    want = {0: {3: 1.0}, 1: {1: 0.5, 2: 0.5}, 2: {2: 0.8, 3: 0.2}, 3: {0: 1.0}, 4: {0: 1.0}}
    for i, shells in want.items():
        for r in range(4):
            np.testing.assert_allclose(float(grid[r, i, 0]), shells.get(r, 0.0), atol=1e-12, err_msg=str((i, r)))
    # The weights of every point sum to 1: the grid total equals the hard-binning total N k,
    # shell by shell it differs.
    cloud = torch.randn(3, 200, 3, dtype=torch.float64)
    for c in (1, 2):
        hard = concentric_constant_mapping(cloud, 2, 4, c)
        soft = concentric_constant_mapping(cloud, 2, 4, c, radial="soft")
        torch.testing.assert_close(soft.sum((1, 2, 3)), hard.sum((1, 2, 3)), rtol=1e-12, atol=0)
        torch.testing.assert_close(hard.sum((1, 2, 3)), torch.full((3,), 600.0, dtype=torch.float64))
        assert float((soft.sum((2, 3)) - hard.sum((2, 3))).abs().max()) > 1.0


def test_soft_rbf_mapping_closed_form():
    # Point at rho = 0.625 on vertex 7 between the spheres 0.5 (shell 1) and 0.75 (shell 2) of
    # R = 4, C = 1: half its Gaussian at each. The scale point at rho = 1 on the antipodal
    # vertex sits on the last sphere (weight 1) and touches other vertices.
    level, r = 2, 4
    s = icosphere(level)
    anti = int(np.argmin(s.vertices @ s.vertices[7]))
    pts = torch.as_tensor(np.stack([0.625 * s.vertices[7], s.vertices[anti]]))
    hard = concentric_rbf_mapping(pts, level, r, 1, center=False)
    soft = concentric_rbf_mapping(pts, level, r, 1, center=False, radial="soft")
    gam = rbf_gammas(level, r)
    np.testing.assert_allclose(float(soft[1, 7, 0]), 0.5 * np.exp(-gam[1] * 0.125**2), rtol=1e-13)
    np.testing.assert_allclose(float(soft[2, 7, 0]), 0.5 * np.exp(-gam[2] * 0.125**2), rtol=1e-13)
    np.testing.assert_allclose(float(hard[2, 7, 0]), np.exp(-gam[2] * 0.125**2), rtol=1e-13)
    assert float(hard[1].abs().sum()) == 0.0 and float(soft[0].abs().sum()) == 0.0
    torch.testing.assert_close(soft[3], hard[3], rtol=0, atol=0)  # the point at rho = 1
    # One shell: soft is hard, bit for bit (all weight on shell 0).
    cloud = torch.randn(2, 100, 3, dtype=torch.float64)
    torch.testing.assert_close(concentric_rbf_mapping(cloud, 1, 1, 3, radial="soft"),
                               concentric_rbf_mapping(cloud, 1, 1, 3), rtol=0, atol=0)
    # Gradients flow through the soft weights.
    p = cloud.clone().requires_grad_(True)
    concentric_rbf_mapping(p, 1, 4, 2, radial="soft").square().sum().backward()
    assert torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0


# ----------------------------------------------------------------------- degenerate clouds


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_clouds_map_to_the_centre(dtype):
    level, r, c = 1, 4, 2
    n_v = icosphere(level).n_vertices
    gam0 = rbf_gammas(level, r)[0]
    rho_f = (np.arange(c) + 1) / (r * c)  # fine radii of shell 0
    # One voxel repeated 1024 times (the zero-extent ModelNet10 training shape), at a point whose
    # centroid is not exact in floating point, beside an ordinary cloud.
    torch.manual_seed(0)
    ordinary = torch.randn(1024, 3, dtype=dtype)
    same = torch.tensor([0.34375, -0.28125, 0.28125], dtype=dtype).expand(1024, 3) + torch.tensor(0.1, dtype=dtype)
    batch = torch.stack([same, ordinary])
    for radial in ("hard", "soft"):
        grid = concentric_rbf_mapping(batch, level, r, c, radial=radial)
        assert torch.isfinite(grid).all()
        expected = torch.zeros(r, n_v, c, dtype=torch.float64)
        expected[0] = torch.as_tensor(1024 * 3 / n_v * np.exp(-gam0 * rho_f**2))
        torch.testing.assert_close(grid[0].double(), expected, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)
        torch.testing.assert_close(grid[1], concentric_rbf_mapping(ordinary, level, r, c, radial=radial))
        torch.testing.assert_close(concentric_rbf_mapping(batch, level, r, c, radial=radial), grid, rtol=0, atol=0)
    # Constant mapping, not centred, all points at the origin: k / V per point on every vertex of
    # fine shell 0, so the total is the usual N k.
    grid = concentric_constant_mapping(torch.zeros(1, 5, 3, dtype=dtype), level, r, c, center=False)
    assert torch.isfinite(grid).all() and float(grid.sum()) == pytest.approx(15.0)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.full((n_v,), 15.0 / n_v, dtype=dtype))
    assert float(grid[0, 1:].abs().sum() + grid[0, 0, :, 1:].abs().sum()) == 0.0
    # Masked: coinciding valid points beside far padding are degenerate too (count = valid points).
    pts = torch.cat([torch.ones(1, 3, 3, dtype=dtype), 50 * torch.randn(1, 4, 3, dtype=dtype)], 1)
    mask = torch.tensor([[True] * 3 + [False] * 4])
    grid = concentric_constant_mapping(pts, level, r, c, mask=mask)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.full((n_v,), 9.0 / n_v, dtype=dtype))
    # Degenerate grids are fixed by every rotation (up to the vertex permutation, trivially).
    g = torch.as_tensor(random_rotation(seed=1), dtype=dtype)
    torch.testing.assert_close(concentric_rbf_mapping(same @ g.T, level, r, c),
                               concentric_rbf_mapping(same, level, r, c))
    # Gradients stay finite.
    p = same.clone().requires_grad_(True)
    concentric_rbf_mapping(p, level, r, c).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_tiny_but_real_clouds_are_not_degenerate():
    # Scale invariance: a cloud 1e-6 across (at the origin or near it) maps like the same cloud
    # at unit size; only extents at round-off level relative to the position count as degenerate.
    cloud = torch.randn(2, 100, 3, dtype=torch.float64)
    ref = concentric_rbf_mapping(cloud, 1, 4, 2)
    torch.testing.assert_close(concentric_rbf_mapping(1e-6 * cloud, 1, 4, 2), ref)
    torch.testing.assert_close(concentric_rbf_mapping(1e-6 * cloud + 0.5, 1, 4, 2), ref, rtol=1e-6, atol=1e-6)
    assert float(concentric_rbf_mapping(cloud * 1e-15 + 1.0, 1, 4, 2)[:, 1:].abs().sum()) == 0.0  # round-off


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
