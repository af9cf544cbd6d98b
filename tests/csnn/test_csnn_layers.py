"""Concentric-grid layers: closed forms, references, and exact icosahedral equivariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from pointsym.geometry import icosahedral_rotations, icosphere
from pointsym.nn import (
    CoRadialConv,
    CoRadialLayer,
    GlobalPool,
    GridBatchNorm,
    IcoPool,
    IntraSphereConv,
    IntraSphereLayer,
)


def _perms(level: int) -> np.ndarray:
    """(60, V) permutations ``g v_i = v_perm[i]`` of the icosahedral rotations."""
    verts = icosphere(level).vertices
    tree = cKDTree(verts)
    out = []
    for g in icosahedral_rotations():
        dist, perm = tree.query(verts @ g.T)
        assert dist.max() < 1e-12
        out.append(perm)
    return np.stack(out)


@torch.no_grad()
def _assert_commutes(layer, x: torch.Tensor, level_in: int, level_out: int) -> float:
    """``layer(x permuted) == layer(x) permuted`` for all 60 rotations, batched in one call."""
    p_in, p_out = _perms(level_in), _perms(level_out)
    xs = torch.stack([torch.empty_like(x).index_copy_(-2, torch.as_tensor(p), x) for p in p_in])  # (60, ...)
    ref = layer(x)
    got = layer(xs.flatten(0, 1)).unflatten(0, (60, x.shape[0]))
    err = 0.0
    for p, y in zip(p_out, got, strict=True):
        expected = torch.empty_like(ref).index_copy_(-2, torch.as_tensor(p), ref)
        err = max(err, float((y - expected).abs().max()))
    assert err <= 1e-12 * max(float(ref.abs().max()), 1.0), err
    return err


@pytest.mark.parametrize("level", [0, 1, 2, 3])  # dense (<= 2) and sparse (3) code paths
def test_intra_sphere_conv_closed_form(level, dtype, tol):
    s = icosphere(level)
    conv = IntraSphereConv(3, 5, level).to(dtype)
    x = torch.randn(2, 4, s.n_vertices, 3, dtype=dtype)
    # Reference: explicit sum over {v} + 1-ring, no normalisation, then W and b.
    agg = x.clone()
    for v in range(s.n_vertices):
        ring = s.neighbors[v][s.neighbors[v] >= 0]
        agg[..., v, :] += x[..., ring, :].sum(-2)
    expected = agg @ conv.weight.T + conv.bias
    torch.testing.assert_close(conv(x), expected, rtol=tol, atol=tol)
    # Constant input: degree-5 vertices sum 6 terms, all others 7 (no degree normalisation).
    ones = torch.ones(s.n_vertices, 1, dtype=dtype)
    counts = IntraSphereConv(1, 1, level).to(dtype).aggregate(ones)[:, 0]
    np.testing.assert_array_equal(counts.numpy(), np.where(s.degrees == 5, 6.0, 7.0))


def test_intra_sphere_conv_narrowing_and_widening_orders_agree():
    # (A + I) X W is computed as ((A + I) X) W or (A + I)(X W) depending on the widths.
    torch.manual_seed(1)
    x = torch.randn(2, 3, 162, 4, dtype=torch.float64)
    wide, narrow = IntraSphereConv(4, 9, 2).double(), IntraSphereConv(4, 2, 2).double()
    for conv in (wide, narrow):
        expected = conv.aggregate(x @ conv.weight.T) + conv.bias
        torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_co_radial_conv_matches_conv1d(kernel, dtype, tol):
    layer = CoRadialConv(3, 4, kernel).to(dtype)
    ref = torch.nn.Conv1d(3, 4, kernel, padding=(kernel - 1) // 2).to(dtype)
    ref.load_state_dict(layer.state_dict())  # identical parameter layout
    x = torch.randn(2, 6, 12, 3, dtype=dtype)  # (B, R, V, F)
    flat = x.permute(0, 2, 3, 1).reshape(-1, 3, 6)  # (B V, F, R)
    expected = ref(flat).reshape(2, 12, 4, 6).permute(0, 3, 1, 2)
    torch.testing.assert_close(layer(x), expected, rtol=tol, atol=tol)
    assert layer(x).shape == (2, 6, 12, 4)  # zero padding keeps R


def test_ico_pool_closed_form():
    s = icosphere(2)
    x = torch.randn(3, 2, s.n_vertices, 4, dtype=torch.float64)
    out_max, out_mean, out_none = (IcoPool(2, r)(x) for r in ("max", "mean", "none"))
    n_out = icosphere(1).n_vertices
    assert out_max.shape == (3, 2, n_out, 4)
    for v in range(n_out):
        hood = [v, *s.neighbors[v][s.neighbors[v] >= 0]]
        assert len(hood) == (6 if v < 12 else 7)
        torch.testing.assert_close(out_max[..., v, :], x[..., hood, :].amax(-2))
        torch.testing.assert_close(out_mean[..., v, :], x[..., hood, :].mean(-2))
    torch.testing.assert_close(out_none, x[..., :n_out, :])


@pytest.mark.parametrize("level", [1, 2, 3])
def test_layers_commute_with_icosahedral_permutations(level):
    torch.manual_seed(level)
    n_v = icosphere(level).n_vertices
    x = torch.randn(2, 3, n_v, 4, dtype=torch.float64)  # (B, R, V, F)
    _assert_commutes(IntraSphereConv(4, 6, level).double(), x, level, level)
    _assert_commutes(CoRadialConv(4, 5, 3).double(), x, level, level)
    _assert_commutes(IntraSphereLayer(4, 4, level).double().train(), x, level, level)  # batch statistics
    _assert_commutes(CoRadialLayer(4, 5, 3).double().eval(), x, level, level)
    for reduce in ("max", "mean", "none"):
        _assert_commutes(IcoPool(level, reduce), x, level, level - 1)


def test_global_pool_and_batch_norm():
    x = torch.randn(4, 3, 42, 5, dtype=torch.float64)
    torch.testing.assert_close(GlobalPool("max")(x), x.flatten(1, 2).amax(1))
    torch.testing.assert_close(GlobalPool("mean")(x), x.mean((1, 2)))
    # Invariant to any vertex permutation (in particular the icosahedral ones).
    perm = torch.as_tensor(_perms(1)[17])
    torch.testing.assert_close(GlobalPool("max")(x[:, :, perm]), GlobalPool("max")(x))
    bn = GridBatchNorm(5).double().train()
    y = bn(x)
    torch.testing.assert_close(y.mean((0, 1, 2)), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.var((0, 1, 2), unbiased=False), torch.ones(5, dtype=torch.float64), atol=1e-4, rtol=0)


def test_residual_only_when_widths_match():
    assert IntraSphereLayer(8, 8, 1).residual and not IntraSphereLayer(4, 8, 1).residual
    layer = IntraSphereLayer(3, 3, 1).double().eval()
    x = torch.randn(1, 2, 42, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x + torch.relu(layer.norm(layer.conv(x))))


def test_gradients_flow():
    layer = torch.nn.Sequential(IntraSphereLayer(2, 4, 3), CoRadialLayer(4, 4), IcoPool(3, "max"))
    x = torch.randn(2, 3, 642, 2, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in layer.parameters())


def test_layer_bad_input_and_repr():
    with pytest.raises(ValueError, match=r"\(\.\.\., 162, 3\)"):
        IntraSphereConv(3, 4, 2)(torch.randn(2, 4, 42, 3))
    with pytest.raises(ValueError, match="3"):
        IntraSphereConv(3, 4, 2)(torch.randn(2, 4, 162, 5))
    with pytest.raises(TypeError, match="floating"):
        IntraSphereConv(3, 4, 2)(torch.ones(2, 4, 162, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="odd"):
        CoRadialConv(3, 4, 2)
    with pytest.raises(ValueError, match=r"\(B, R, V, 3\)"):
        CoRadialConv(3, 4)(torch.randn(162, 3))
    with pytest.raises(ValueError, match="'level'"):
        IcoPool(0)
    with pytest.raises(ValueError, match="'reduce'"):
        IcoPool(2, "sum")
    with pytest.raises(ValueError, match="162"):
        IcoPool(2)(torch.randn(2, 42, 3))
    with pytest.raises(ValueError, match="'in_features'"):
        IntraSphereConv(0, 4, 2)
    assert "level=2 (162 vertices)" in repr(IntraSphereConv(3, 4, 2))
    assert "kernel_size=3" in repr(CoRadialConv(3, 4))
    assert "162 -> 42" in repr(IcoPool(2))
