"""CSNNClassifier and PointNet: invariance of the logits, sizes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointsym.geometry import icosahedral_rotations, random_rotation
from pointsym.models import CSNNClassifier, PointNet
from pointsym.testing import assert_invariant, equivariance_error


def _tiny_csnn(**kw) -> CSNNClassifier:
    args = dict(level=2, n_shells=3, n_channels=2, n_classes=5, base_width=4, hidden=(16,), dropout=0.0)
    args.update(kw)
    return CSNNClassifier(**args)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_csnn_logits_invariant_under_all_60_icosahedral_rotations(mode):
    torch.manual_seed(0)
    model = _tiny_csnn().double()
    model.train(mode == "train")  # train mode: batch statistics over the 60 rotated copies
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(300, 3)) * [1.0, 0.6, 0.3] + [0.2, 0.0, -0.1]
    group = icosahedral_rotations()
    batch = torch.as_tensor(np.einsum("gij,nj->gni", group, cloud))  # (60, 300, 3), element 0 = identity
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (60, 5)
    err = float((logits - logits[0]).abs().max())
    assert err <= 1e-9 * float(logits.abs().max()), err
    # Not a constant function: another cloud gives other logits.
    other = torch.as_tensor(rng.normal(size=(1, 300, 3)))
    with torch.no_grad():
        assert float((model.eval()(other) - model(batch[:1])).abs().max()) > 1e-6


def test_csnn_invariances_from_the_harness():
    torch.manual_seed(1)
    model = _tiny_csnn(level=1).double().eval()
    pts = torch.randn(2, 80, 3, dtype=torch.float64)
    with torch.no_grad():
        assert_invariant(model, pts, kind="permutation")
        assert_invariant(model, pts, kind="translation")
        # Generic rotations are not in the discretised group: the logits move, but stay finite.
        err = equivariance_error(model, pts, kind="rotation")["output"]["abs"]
    assert np.isfinite(err) and err > 1e-9


def test_csnn_paper_configuration_size():
    # Reference ModelNet40 model: level 4, R = 20, C = 8, 40 classes; the paper quotes 4.0M parameters.
    model = CSNNClassifier(level=4, n_shells=20, n_channels=8, n_classes=40)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 4.0e6) / 4.0e6 < 0.02, n
    assert model.gconv_dims == [32, 64, 128, 256, 512] and model.radial_dims == [64, 128, 256, 512, 1024]
    assert model.gconv_layers == [2, 2, 2, 2, 1] and model.radial_layers == [2, 2, 2, 1, 1]
    assert model.head[1].in_features == 1984  # concatenated readout 64 + 128 + 256 + 512 + 1024


def test_csnn_forward_shapes_mask_and_grid_entry():
    torch.manual_seed(2)
    model = _tiny_csnn(readout="last", mapping="constant").eval()
    pts = torch.randn(3, 50, 3)
    logits = model(pts)
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    torch.testing.assert_close(model.forward_grid(model.mapping(pts)), logits)
    padded = torch.cat([pts, torch.randn(3, 6, 3) * 50], 1)
    mask = torch.ones(3, 56, dtype=torch.bool)
    mask[:, 50:] = False
    torch.testing.assert_close(model(padded, mask), logits)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_csnn_bad_arguments():
    with pytest.raises(ValueError, match="level \\+ 1 = 3"):
        _tiny_csnn(gconv_dims=[4, 8])
    with pytest.raises(ValueError, match="'n_classes'"):
        _tiny_csnn(n_classes=1)
    with pytest.raises(ValueError, match="'dropout'"):
        _tiny_csnn(dropout=1.5)
    with pytest.raises(ValueError, match="odd"):
        _tiny_csnn(radial_kernel=2)
    model = _tiny_csnn()
    with pytest.raises(ValueError, match="batch, n_points, 3"):
        model(torch.randn(50, 3))
    bad = torch.randn(2, 50, 3)
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(bad)
    with pytest.raises(ValueError, match="grid"):
        model.forward_grid(torch.randn(2, 3, 42, 2))
    assert "parameters=" in repr(model) and "level=2" in repr(model)


@pytest.mark.parametrize("readout", ["concat", "last"])
def test_csnn_mean_max_readout_and_soft_radial_are_invariant(readout):
    torch.manual_seed(4)
    model = _tiny_csnn(level=1, global_pool="mean+max", radial="soft", readout=readout).double().eval()
    ref = _tiny_csnn(level=1, readout=readout)
    widths = sum(model.radial_dims) if readout == "concat" else model.radial_dims[-1]
    assert model.head[1].in_features == 2 * widths == 2 * ref.head[1].in_features
    rng = np.random.default_rng(4)
    cloud = rng.normal(size=(200, 3)) * [1.0, 0.7, 0.4]
    batch = torch.as_tensor(np.einsum("gij,nj->gni", icosahedral_rotations(), cloud))
    with torch.no_grad():
        feats = model.embed_grid(model.mapping(batch))
        logits = model(batch)
    assert feats.shape == (60, 2 * widths) and logits.shape == (60, 5)
    # Max then mean of each block: the max half equals the plain model's features.
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")}, strict=False)
    with torch.no_grad():
        half = ref.double().eval().embed_grid(model.mapping(batch))
    dims = model.radial_dims if readout == "concat" else model.radial_dims[-1:]
    chunks = torch.split(feats, [2 * d for d in dims], dim=1)  # per block: max, then mean
    torch.testing.assert_close(torch.cat([ch[:, :d] for ch, d in zip(chunks, dims, strict=True)], 1), half)
    assert float((logits - logits[0]).abs().max()) <= 1e-9 * float(logits.abs().max())
    assert float((feats - feats[0]).abs().max()) <= 1e-9 * float(feats.abs().max())
    # The options are hypers (rebuilt by CSNNClassifier(**hypers)); the defaults are not stored.
    assert model.hypers["global_pool"] == "mean+max" and model.hypers["radial"] == "soft"
    rebuilt = CSNNClassifier(**model.hypers)
    assert rebuilt.mapping.radial == "soft" and rebuilt.head[1].in_features == model.head[1].in_features
    assert "global_pool" not in ref.hypers and "radial" not in ref.hypers
    assert "global_pool='mean+max'" in repr(model) and "radial='soft'" in repr(model.mapping)
    with pytest.raises(ValueError, match="'global_pool'"):
        _tiny_csnn(global_pool="sum")
    with pytest.raises(ValueError, match="'radial'"):
        _tiny_csnn(radial="linear")


def test_csnn_zero_extent_cloud_gives_finite_deterministic_logits():
    # One ModelNet10 training shape is a single voxel repeated: the mapping puts it at the centre.
    torch.manual_seed(5)
    model = _tiny_csnn(level=1).eval()
    pts = torch.randn(3, 64, 3)
    pts[1] = torch.tensor([0.34375, -0.28125, 0.28125])
    with torch.no_grad():
        logits = model(pts)
        assert torch.isfinite(logits).all()
        torch.testing.assert_close(model(pts), logits, rtol=0, atol=0)
        torch.testing.assert_close(model(pts[1:2] + 0.3), logits[1:2])  # any position: the same grid
    model.train()
    model(pts).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pointnet_shapes_and_permutation_invariance():
    torch.manual_seed(3)
    model = PointNet.scaled(4, 0.125, feature_transform=True).double().eval()
    pts = torch.randn(2, 64, 3, dtype=torch.float64)
    with torch.no_grad():
        assert model(pts).shape == (2, 4)
        assert_invariant(model, pts, kind="permutation")
        assert_invariant(model, pts, kind="translation")  # centred in forward
        # PointNet is not rotation invariant (it only learns it from augmentation).
        rot = torch.as_tensor(random_rotation(seed=0))
        assert float((model(pts @ rot.T) - model(pts)).abs().max()) > 1e-4
        padded = torch.cat([pts, torch.randn(2, 5, 3, dtype=torch.float64)], 1)
        mask = torch.ones(2, 69, dtype=torch.bool)
        mask[:, 64:] = False
        torch.testing.assert_close(model(padded, mask), model(pts))
    model.train()
    model(pts).sum().backward()
    assert model.feature_transform_loss() >= 0


def test_pointnet_reference_size_and_errors():
    # Original classification network with both transforms: about 3.5M parameters.
    n = sum(p.numel() for p in PointNet(40, feature_transform=True).parameters())
    assert abs(n - 3.5e6) / 3.5e6 < 0.02, n
    with pytest.raises(ValueError, match="batch, n_points, 3"):
        PointNet(4)(torch.randn(10, 3))
    with pytest.raises(ValueError, match="empty"):
        PointNet(4)(torch.randn(2, 0, 3))
    # zero extent: the cloud stays at the centre (finite, deterministic), as in the CSNN mapping
    net = PointNet(4).eval()
    with torch.no_grad():
        out = net(torch.ones(2, 5, 3))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, net(torch.full((2, 5, 3), -3.0)))
    with pytest.raises(ValueError, match="'n_classes'"):
        PointNet(1)
