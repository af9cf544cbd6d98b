"""The csnn-shapes experiment on the embedded ModelNet10 subset: train, resume, evaluate, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from pointsym.datasets import load_modelnet10
from pointsym.experiments.csnn import shapes as cs


@pytest.fixture(scope="module")
def tiny_data():
    x_tr, y_tr, names = load_modelnet10("train", source="embedded", n_points=128)
    x_te, y_te, _ = load_modelnet10("test", source="embedded", n_points=128)
    keep = np.concatenate([np.flatnonzero(y_te == c)[:3] for c in range(10)])
    return x_tr, y_tr, x_te[keep], y_te[keep], names


def _cfg(**kw) -> cs.ShapesConfig:
    args = dict(model="csnn", epochs=1, batch_size=16, train_per_class=4, val_fraction=0.1, n_points=128,
                level=1, n_shells=2, n_channels=2, base_width=4, hidden=(16,), test_rot=("z", "so3"))
    args.update(kw)
    return cs.ShapesConfig(**args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    """One results directory with a CSNN run (1 epoch, then resumed to 2) and a PointNet run."""
    out = tmp_path_factory.mktemp("csnn_shapes")
    first = cs.run(_cfg(epochs=1), out_dir=out, quiet=True, data=tiny_data)
    resumed = cs.run(_cfg(epochs=2), out_dir=out, quiet=True, data=tiny_data)
    pointnet = cs.run(_cfg(model="pointnet", pointnet_scale=0.0625, train_rot="so3", test_rot=("so3",),
                           train_per_class=2), out_dir=out, quiet=True, data=tiny_data)
    return out, first, resumed, pointnet


def test_run_writes_results_and_resumes(runs):
    out, res, res2, _ = runs
    assert res["epochs_run"] == 1 and set(res["test"]) == {"z", "so3"}
    assert res["data"]["n_train"] == 40 and res["data"]["n_val"] == 20 and res["data"]["n_test"] == 30
    for rot in ("z", "so3"):
        assert 0.0 <= res["test"][rot]["accuracy"] <= 1.0 and res["test"][rot]["votes"] == 1
    saved = json.loads((out / "csnn_z.json").read_text())
    assert saved["n_parameters"] == res["n_parameters"] and "command" in saved and "provenance" in saved
    assert (out / "checkpoints" / "csnn_z" / "last.pt").is_file()
    assert (out / "csnn_z_curves.png").stat().st_size > 1000
    # Resume: the second call continued from last.pt instead of starting again.
    assert res2["epochs_run"] == 2
    assert res2["history"][0] == res["history"][0]


def test_augmentation_and_rotations():
    torch.manual_seed(0)
    pts = torch.randn(8, 50, 3, dtype=torch.float64)
    z = cs.rotate_batch(pts, "z")
    torch.testing.assert_close(z[..., 2], pts[..., 2])  # z rotations keep the height
    torch.testing.assert_close(z.norm(dim=-1), pts.norm(dim=-1))
    so3 = cs.rotate_batch(pts, "so3")
    torch.testing.assert_close(so3.norm(dim=-1), pts.norm(dim=-1))
    rot = cs._torch_rotations(2000, "so3", dtype=torch.float64, device="cpu")
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2000, 3, 3))
    assert float(rot.mean(0).abs().max()) < 0.05  # Haar: E[R] = 0
    aug = cs.augment(pts, "z")
    centred = aug - aug.mean(1, keepdim=True)
    ratio = centred.norm(dim=-1).amax(1) / (pts - pts.mean(1, keepdim=True)).norm(dim=-1).amax(1)
    assert torch.all((ratio > 0.7) & (ratio < 1.3))  # scaling in [0.8, 1.2] plus small jitter


def test_evaluate_votes_are_accumulated(tiny_data):
    x_tr, y_tr, x_te, y_te, names = tiny_data
    torch.manual_seed(0)
    model = cs.build_model(_cfg(), len(names))
    one = cs.evaluate(model, x_te, y_te, "so3", votes=1, n_classes=10)
    three = cs.evaluate(model, x_te, y_te, "so3", votes=3, n_classes=10)
    again = cs.evaluate(model, x_te, y_te, "so3", votes=3, n_classes=10)
    assert three["votes"] == 3 and three["accuracy"] == again["accuracy"]  # seeded rotations
    assert len(one["per_class_accuracy"]) == 10
    assert one["ms_per_batch"] > 0


def test_summary_and_cli_parsing(runs):
    out, *_ = runs
    table = cs.summarize(out)
    assert set(table) == {"csnn", "pointnet"} and "z/so3" in table["csnn"]["acc"]
    assert "so3/so3" in table["pointnet"]["acc"] and "z/z" not in table["pointnet"]["acc"]
    assert "| csnn |" in (out / "summary.md").read_text()
    parser = argparse.ArgumentParser()
    cs.register(parser.add_subparsers())
    args = parser.parse_args(["csnn-shapes", "--test-rot", "z,so3", "--hidden", "32,16", "--model", "pointnet"])
    assert args.test_rot == ("z", "so3") and args.hidden == (32, 16) and args.func is cs._main
    with pytest.raises(SystemExit):
        parser.parse_args(["csnn-shapes", "--test-rot", "x"])
    with pytest.raises(ValueError, match="'val_fraction'"):
        _cfg(val_fraction=0.7).validate()
    with pytest.raises(ValueError, match="'train_rot'"):
        _cfg(train_rot="xyz").validate()


def test_pointnet_run(runs):
    *_, res = runs
    assert res["run"] == "pointnet_so3" and set(res["test"]) == {"so3"}
    assert res["data"]["n_train"] == 20 and res["n_parameters"] < 20_000
