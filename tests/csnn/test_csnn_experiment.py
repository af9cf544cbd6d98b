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
    assert three["accuracy_one_vote"] == one["accuracy"] and "accuracy_one_vote" not in one  # same first vote
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


def _same_history(a, b):
    """Per-epoch metrics equal (the epoch times aside)."""
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a]
    return strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b]


def test_time_budget_stops_between_epochs_resumes_and_is_reproducible(tmp_path, tiny_data):
    plain = cs.run(_cfg(epochs=2), out_dir=tmp_path / "plain", quiet=True, data=tiny_data)
    assert plain["budget"]["stopped_by"] == "epochs" and plain["budget"]["max_minutes"] is None
    # A budget that is never reached: epoch by epoch, the same run as one Trainer.fit.
    roomy = cs.run(_cfg(epochs=2, max_minutes=1000.0), out_dir=tmp_path / "roomy", quiet=True, data=tiny_data)
    assert roomy["epochs_run"] == 2 and roomy["budget"]["stopped_by"] == "epochs"
    assert _same_history(roomy["history"], plain["history"])
    assert roomy["test"]["so3"]["accuracy"] == plain["test"]["so3"]["accuracy"]
    # A budget of a few microseconds: one epoch (the minimum), then stop; recorded in the JSON.
    out = tmp_path / "tight"
    tight = cs.run(_cfg(epochs=3, max_minutes=1e-6), out_dir=out, quiet=True, data=tiny_data)
    b = tight["budget"]
    assert tight["epochs_run"] == 1 and b["stopped_by"] == "max_minutes" and b["epochs_reached"] == 1
    assert b["budget_seconds"] == pytest.approx(6e-5) and b["epochs_cap"] == 3 and b["clock"] == "cpu"
    assert b["wall_seconds"] == pytest.approx(tight["train_seconds"]) and b["seconds_used"] == b["cpu_seconds"] > 0
    log = json.loads((out / "checkpoints" / "csnn_z" / "epoch_times.json").read_text())["epochs"]
    assert [r["epoch"] for r in log] == [0] and log[0]["wall"] == tight["history"][0]["seconds"]
    saved = json.loads((out / "csnn_z.json").read_text())
    assert saved["budget"]["stopped_by"] == "max_minutes" and saved["seed"] == 0
    # Rerun with the same budget: nothing left to train, same model and test result.
    again = cs.run(_cfg(epochs=3, max_minutes=1e-6), out_dir=out, quiet=True, data=tiny_data)
    assert again["epochs_run"] == 1 and _same_history(again["history"], tight["history"])
    for rot in ("z", "so3"):  # (the timing ms_per_batch aside)
        assert again["test"][rot]["per_class_accuracy"] == tight["test"][rot]["per_class_accuracy"]
    # A larger budget resumes the same run (the budget is not part of the stored settings).
    more = cs.run(_cfg(epochs=3, max_minutes=1000.0), out_dir=out, quiet=True, data=tiny_data)
    assert more["epochs_run"] == 3 and more["history"][0] == tight["history"][0]
    assert more["budget"]["stopped_by"] == "epochs" and len(more["budget"]["cpu_seconds_per_epoch"]) == 3
    assert more["budget"]["cpu_seconds_per_epoch"][0] == b["cpu_seconds_per_epoch"][0]  # kept across sessions
    # The wall clock counts the Trainer's epoch seconds.
    wall = cs.run(_cfg(epochs=3, max_minutes=1e-6, budget_clock="wall"), out_dir=tmp_path / "wall", quiet=True,
                  data=tiny_data)
    assert wall["epochs_run"] == 1 and wall["budget"]["clock"] == "wall"
    assert wall["budget"]["seconds_used"] == wall["history"][0]["seconds"]
    # --restart with a budget moves the old checkpoints aside and starts again.
    fresh = cs.run(_cfg(epochs=3, max_minutes=1e-6), out_dir=out, quiet=True, data=tiny_data, restart=True)
    assert fresh["epochs_run"] == 1 and (out / "checkpoints" / "csnn_z" / "previous" / "1" / "last.pt").is_file()
    log = json.loads((out / "checkpoints" / "csnn_z" / "epoch_times.json").read_text())["epochs"]
    assert len(log) == 1 and log[0]["wall"] == fresh["history"][0]["seconds"]  # the old run's entries dropped


def test_seeds_give_mean_and_std_and_one_summary_row(tmp_path, tiny_data):
    agg = cs.run_grid(_cfg(test_rot=("so3",), votes=2), out_dir=tmp_path, seeds=[0, 1], quiet=True, data=tiny_data)
    assert agg["kind"] == "seeds" and agg["seeds"] == [0, 1] and agg["runs"] == ["csnn_z_seed0", "csnn_z_seed1"]
    accs = agg["test"]["so3"]["accuracies"]
    assert len(accs) == 2 and agg["test"]["so3"]["accuracy"] == pytest.approx(np.mean(accs))
    assert agg["test"]["so3"]["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert agg["best_val_acc"]["values"] and agg["train_seconds"]["mean"] > 0
    assert agg["test"]["so3"]["votes"] == 2 and 0 <= agg["test"]["so3"]["accuracy_one_vote"] <= 1
    for s in (0, 1):
        rec = json.loads((tmp_path / f"csnn_z_seed{s}.json").read_text())
        assert rec["seed"] == s and rec["config"]["seed"] == s and rec["group"] == "csnn_z_seeds"
    assert json.loads((tmp_path / "csnn_z_seeds.json").read_text())["test"]["so3"]["accuracies"] == accs
    table = cs.summarize(tmp_path)
    assert set(table) == {"csnn (seeds)"} and table["csnn (seeds)"]["acc_std"]["z/so3"] >= 0
    assert "+-" in (tmp_path / "summary.md").read_text()


def test_search_uses_the_validation_split_only(tmp_path, tiny_data):
    x_tr, y_tr, x_te, y_te, names = tiny_data
    no_test = (x_tr, y_tr, np.full_like(x_te, np.nan), y_te, names)  # any test evaluation would fail
    agg = cs.run_grid(_cfg(), out_dir=tmp_path, search=[("lr", (1e-3, 3e-3))], quiet=True, data=no_test)
    assert agg["kind"] == "search" and agg["searched"] == ["lr"] and "validation" in agg["split"]
    assert [r["setting"] for r in agg["rows"]] == [{"lr": 1e-3}, {"lr": 3e-3}]
    assert agg["best"] in ({"lr": 1e-3}, {"lr": 3e-3})
    assert agg["best_val_acc"]["mean"] == max(r["best_val_acc"]["mean"] for r in agg["rows"])
    for name in ("csnn_z_lr0.001", "csnn_z_lr0.003"):
        rec = json.loads((tmp_path / f"{name}.json").read_text())
        assert "test" not in rec and rec["group"] == "csnn_z_search" and 0 <= rec["best_val_acc"] <= 1
    assert json.loads((tmp_path / "csnn_z_search.json").read_text())["rows"][1]["setting"] == {"lr": 0.003}
    assert cs.summarize(tmp_path) == {}
    assert cs.search_settings([("lr", (1, 2)), ("dropout", (0.1, 0.3))]) == [
        {"lr": 1, "dropout": 0.1}, {"lr": 1, "dropout": 0.3}, {"lr": 2, "dropout": 0.1}, {"lr": 2, "dropout": 0.3}]
    assert cs.search_settings(None) == [{}]


def test_new_options_reach_the_models_and_cli_errors_name_the_flag(tiny_data):
    model = cs.build_model(_cfg(radial="soft", global_pool="mean+max"), 10)
    assert model.mapping.radial == "soft" and model.global_pool_kind == "mean+max"
    assert cs.build_model(_cfg(model="pointnet", pointnet_dropout=0.1), 10).hypers["dropout"] == 0.1
    default = cs.build_model(_cfg(), 10)
    assert default.mapping.radial == "hard" and default.global_pool_kind == "max"
    assert cs.build_model(_cfg(model="pointnet"), 10).hypers["dropout"] == 0.3  # PointNet's own default
    parser = argparse.ArgumentParser()
    cs.register(parser.add_subparsers())
    args = parser.parse_args(["csnn-shapes", "--search", "lr=1e-3,3e-3", "dropout=0.1", "--search", "radial=hard,soft",
                              "--seeds", "0,1,2", "--max-minutes", "2.5", "--radial", "soft",
                              "--global-pool", "mean+max"])
    assert args.search == [("lr", (1e-3, 3e-3)), ("dropout", (0.1,)), ("radial", ("hard", "soft"))]
    assert args.seeds == (0, 1, 2) and args.max_minutes == 2.5
    cfg = cs.validate_options(args, cs.ShapesConfig)
    assert cfg.radial == "soft" and cfg.global_pool == "mean+max" and cfg.max_minutes == 2.5
    for bad in (["--search", "foo=1"], ["--search", "lr"], ["--search", "lr=x"], ["--search", "model=csnn"],
                ["--radial", "linear"], ["--global-pool", "sum"], ["--search", "lr=1,1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["csnn-shapes", *bad])

    def fails(argv, match):
        with pytest.raises(ValueError, match=match):
            cs._main(parser.parse_args(["csnn-shapes", "--out", "/nonexistent/never_written", *argv]))

    fails(["--max-minutes", "0"], "--max-minutes must be > 0.0")
    with pytest.raises(SystemExit):
        parser.parse_args(["csnn-shapes", "--budget-clock", "gpu"])
    fails(["--pointnet-dropout", "1"], "--pointnet-dropout must be < 1.0")
    fails(["--seeds", "1,1"], "--seeds must be distinct")
    fails(["--model", "pointnet", "--search", "dropout=0.1,0.2"], "--search dropout has no effect.*pointnet_dropout")
    fails(["--search", "pointnet_scale=0.5"], "--search pointnet_scale has no effect on --model csnn")
    fails(["--search", "lr=-1,1e-3"], "--search lr must be > 0.0")
    fails(["--search", "dropout=0.1,1.5"], "--search dropout must be < 1.0")
    fails(["--search", "lr=1e-3", "--search", "lr=3e-3"], "names a setting twice")
    fails(["--benchmark-shells", "1,2", "--seeds", "0,1"], "leave out --seeds")
