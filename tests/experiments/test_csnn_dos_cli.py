"""``pointsym csnn-dos train`` / ``eval`` end to end with a CPU-sized CSNN on a few structures of the carbon set."""

from __future__ import annotations

import json
import math
import shutil

import ase.io
import numpy as np
import pytest
import torch

from pointsym.cli import main
from pointsym.datasets import CARBON_DOS_FAMILIES
from pointsym.datasets._root import EMBEDDED_DIR
from pointsym.experiments.csnn_dos.cli import load_run
from pointsym.experiments.csnn_dos.data import rotate_frames
from pointsym.experiments.csnn_dos.evaluation import predict_dos
from pointsym.geometry import random_rotation

EMBEDDED = EMBEDDED_DIR / "carbon_dos_xtb_subset.extxyz.gz"
TINY = ["--level", "1", "--n-bins", "8", "--base-width", "4", "--hidden", "16", "--atoms-per-structure", "4",
        "--rotate-train", "--batch-size", "8", "--lr", "3e-2", "--threads", "1", "--quiet"]
SUMMARY_KEYS = ("dos_rmse", "idos_rmse", "fermi_abs_error", "band_energy_abs_error")


def _error(capsys, argv) -> str:
    """Run ``pointsym argv``, expect exit status 2 and return the single stderr line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """The smallest 2 training, 1 validation and 1 test structure of every family of the embedded subset."""
    if not EMBEDDED.is_file():
        pytest.skip(f"the embedded carbon DOS subset {EMBEDDED.name} is not in this checkout yet")
    frames = ase.io.read(EMBEDDED, ":", format="extxyz")
    keep = []
    for family in CARBON_DOS_FAMILIES:
        for split, n in (("train", 2), ("val", 1), ("test", 1)):
            mine = sorted((a for a in frames if a.info["family"] == family and a.info["split"] == split), key=len)
            keep += mine[:n]
    path = tmp_path_factory.mktemp("carbon") / "carbon_dos_tiny.extxyz.gz"
    ase.io.write(path, keep, format="extxyz")
    return path


@pytest.fixture(scope="module")
def trained(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("csnn_dos") / "run"
    assert main(["csnn-dos", "train", "--data-file", str(data_file), "--epochs", "2", *TINY, "--out", str(out)]) == 0
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _check_summary(summary, families):
    assert set(summary["groups"]) == set(families)
    for s in [summary["overall"], *summary["groups"].values()]:
        assert _finite(s["dos_rmse"]) and _finite(s["idos_rmse"]), s
        assert isinstance(s["n_unreached"], int) and 0 <= s["n_unreached"] <= s["n_structures"]
        # a structure whose predicted DOS has no Fermi level in the window is counted, not averaged
        if s["n_unreached"] < s["n_structures"]:
            assert _finite(s["fermi_abs_error"]) and _finite(s["band_energy_abs_error"]), s


def test_train_writes_checkpoints_metrics_and_plots(trained):
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "metrics.json", "learning_curve.png", "test_dos.png",
                 "test_band_energy_parity.png", "test_band_energy_mae.png"):
        assert (trained / name).is_file(), name
    rec = json.loads((trained / "metrics.json").read_text())
    assert rec["command"] and rec["wall_seconds"] > 0 and rec["model"] == "csnn"
    assert rec["training"]["epochs_run"] == 2 and len(rec["history"]) == 2
    assert rec["training"]["atoms_per_structure"] == 4 and rec["training"]["train_atoms_per_epoch"] == 16 * 4
    assert rec["training"]["rotate_train"] is True
    assert rec["data"]["n_train"] == 16 and rec["data"]["n_val"] == 8
    assert rec["eval"]["n_structures"] == 8
    _check_summary(rec["eval"]["summary"], CARBON_DOS_FAMILIES)


def test_eval_with_rotations_and_on_another_file(trained, data_file, tmp_path, capsys):
    assert main(["csnn-dos", "eval", "--checkpoint", str(trained), "--rotations", "2", "--threads", "1",
                 "--quiet"]) == 0
    assert "overall" in capsys.readouterr().out  # the table
    rec = json.loads((trained / "eval_test_rot2.json").read_text())
    assert rec["n_structures"] == 8 and rec["epochs_trained"] == 2
    _check_summary(rec["summary"], CARBON_DOS_FAMILIES)
    rot = rec["rotations"]
    assert rot["n_rotations"] == 2
    assert set(rot["summary"]["overall"]["dos_rmse"]) >= {"mean", "std"}
    spread = rot["band_energy_spread_ev_per_atom"]
    assert len(spread["per_structure_std"]) == 8 and set(spread["groups"]) == set(CARBON_DOS_FAMILIES)
    for name in ("test_rot2_dos.png", "test_rot2_band_energy_parity.png", "test_rot2_band_energy_mae.png"):
        assert (trained / name).is_file(), name
    other = tmp_path / "other_set.extxyz.gz"
    shutil.copy(data_file, other)
    best = trained / "checkpoints" / "best.pt"
    assert main(["csnn-dos", "eval", "--checkpoint", str(best), "--data-file", str(other), "--split", "val",
                 "--out", str(tmp_path), "--no-plots", "--threads", "1", "--quiet"]) == 0
    rec = json.loads((tmp_path / "eval_val_other_set.json").read_text())
    assert rec["data"]["file"] == str(other) and rec["n_structures"] == 8


def test_eval_refuses_data_outside_the_models_energy_window(trained, data_file, tmp_path, capsys):
    # PBE's occupied band is about twice xTB's: stretch the eigenvalues about midgap the same way
    frames = ase.io.read(data_file, ":", format="extxyz")
    for a in frames:
        mid = 0.5 * (a.info["homo"] + a.info["lumo"])
        a.info["eigenvalues"] = mid + 2.2 * (np.asarray(a.info["eigenvalues"]) - mid)
        a.info["homo"], a.info["lumo"] = mid + 2.2 * (a.info["homo"] - mid), mid + 2.2 * (a.info["lumo"] - mid)
    wide = tmp_path / "wide_band.extxyz.gz"
    ase.io.write(wide, frames, format="extxyz")
    err = _error(capsys, ["csnn-dos", "eval", "--checkpoint", str(trained), "--data-file", str(wide), "--out",
                          str(tmp_path), "--quiet"])
    assert "e_min=-12 eV cuts into the occupied band" in err and "cannot describe this data" in err, err


def test_pet_evaluated_through_ecse_is_rotation_invariant(trained, data_file, tmp_path, capsys):
    out = tmp_path / "pet"
    pet = json.dumps({"d_model": 8, "n_gnn_layers": 1, "n_trans_layers": 1, "n_heads": 2, "dim_feedforward": 8,
                      "head_hidden": 8, "n_features": 8, "r_cut": 3.0})
    assert main(["csnn-dos", "train", "--data-file", str(data_file), "--model", "pet", "--model-options", pet,
                 "--hidden", "8", "--epochs", "1", "--eval-split", "none", "--threads", "1", "--quiet",
                 "--out", str(out)]) == 0
    assert main(["csnn-dos", "eval", "--checkpoint", str(out), "--ecse", "atom", "--max-test", "2", "--no-plots",
                 "--threads", "1", "--quiet"]) == 0
    rec = json.loads((out / "eval_test_ecse_atom.json").read_text())
    assert rec["model_options"]["ecse"] == "atom" and rec["n_structures"] == 2
    # the same weights, bare and symmetrized, on a C20 cage and a random rotation of it
    cage = [a for a in ase.io.read(data_file, ":", format="extxyz") if a.info["family"] == "C20"][:1]
    turned = rotate_frames(cage, random_rotation(1, seed=3))
    change = {}
    for mode in ("off", "atom"):
        adapter, model, extra, _ = load_run(out / "checkpoints" / "best.pt", options={"ecse": mode})
        pred = [predict_dos(adapter, model, f, dtype=torch.float32) for f in (cage, turned)]
        change[mode] = float(np.abs(pred[0] - pred[1]).max() / np.abs(pred[0]).max())
    # float32: the symmetrized PET agrees with itself to rounding, the bare one does not
    assert change["atom"] < 1e-6 and change["off"] > 100 * change["atom"], change
    err = _error(capsys, ["csnn-dos", "eval", "--checkpoint", str(trained), "--ecse", "atom", "--quiet"])
    assert "--ecse atom symmetrizes PET models" in err and "csnn model" in err, err


def test_rerun_with_more_epochs_resumes(trained, data_file, tmp_path, capsys):
    from pointsym.training import load_checkpoint

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    first = json.loads((out / "metrics.json").read_text())["history"]
    assert main(["csnn-dos", "train", "--data-file", str(data_file), "--epochs", "3", *TINY, "--out", str(out),
                 "--eval-split", "none", "--no-plots"]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == first  # continued from the checkpoint, not retrained
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 2
    # and it is the run an uninterrupted 3-epoch training makes (the sampled atoms and rotations resume too)
    straight = tmp_path / "straight"
    assert main(["csnn-dos", "train", "--data-file", str(data_file), "--epochs", "3", *TINY, "--out", str(straight),
                 "--eval-split", "none", "--no-plots"]) == 0
    again = json.loads((straight / "metrics.json").read_text())["history"]
    for key in ("train_loss", "val_loss", "lr"):
        assert [h[key] for h in again] == pytest.approx([h[key] for h in history], rel=1e-5), key
    capsys.readouterr()
    err = _error(capsys, ["csnn-dos", "train", "--data-file", str(data_file), "--epochs", "3", *TINY,
                          "--base-width", "8", "--out", str(out)])
    assert "base_width: 4 -> 8" in err and "--restart" in err


def test_weight_averaging_is_what_the_run_selects_and_evaluates(data_file, tmp_path):
    from pointsym.experiments.csnn_dos.cli import load_run
    from pointsym.training import load_checkpoint

    out = tmp_path / "ema"
    assert main(["csnn-dos", "train", "--data-file", str(data_file), "--epochs", "2", *TINY, "--ema-decay", "0.9",
                 "--out", str(out), "--eval-split", "none", "--no-plots"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["training"]["ema_decay"] == 0.9 and summary["training"]["stopped_by"] == "epochs"
    best, last = (load_checkpoint(out / "checkpoints" / f) for f in ("best.pt", "last.pt"))
    assert last["ema_steps"] > 0
    # best.pt holds the average as its model; last.pt the raw weights (to resume) beside the average
    key = next(k for k, v in last["model"].items() if v.is_floating_point() and v.numel() > 1)
    assert not torch.equal(last["model"][key], last["ema"][key])
    if best["epoch"] == last["epoch"]:
        assert torch.equal(best["model"][key], last["ema"][key])
    _, model, _, _ = load_run(out / "checkpoints" / "last.pt")
    assert torch.equal(model.state_dict()[key], last["ema"][key])  # evaluation reads the average


def test_absolute_alignment_round_trips_through_the_checkpoint(data_file, tmp_path):
    # --align none trains on xTB's absolute scale; eval rebuilds the same grid from the checkpoint
    out = tmp_path / "abs"
    assert main(["csnn-dos", "train", "--data-file", str(data_file), "--epochs", "1", *TINY, "--align", "none",
                 "--out", str(out), "--eval-split", "none", "--no-plots"]) == 0
    grid = json.loads((out / "metrics.json").read_text())["data"]["grid"]
    assert grid["align"] == "none" and (grid["e_min"], grid["e_max"]) == pytest.approx((-21.0, -6.1))
    assert main(["csnn-dos", "eval", "--checkpoint", str(out), "--split", "test", "--no-plots", "--quiet",
                 "--threads", "1"]) == 0
    result = json.loads((out / "eval_test.json").read_text())
    assert result["data"]["grid"]["align"] == "none" and result["fermi_crossing"] == "linear"
    _check_summary(result["summary"], CARBON_DOS_FAMILIES)


@pytest.mark.parametrize("argv,flag", [
    (["--atoms-per-structure", "0"], "--atoms-per-structure must be >= 1"),
    (["--model", "unknown"], "--model must be one of csnn, soap-mlp, pet"),
    (["--loss-alpha", "1.5"], "--loss-alpha must be <= 1"),
    (["--ema-decay", "1"], "--ema-decay must be < 1"),
    (["--model", "pet", "--level", "2"], "--level applies to --model csnn only"),
    (["--e-min", "0", "--e-max", "-1"], "--e-max must be larger than --e-min"),
    (["--model-options", "{oops"], "--model-options is not valid JSON"),
    (["--method", "gpaw", "--align", "none"], "--method gpaw with --align none has no default energy window"),
], ids=["atoms-per-structure", "model", "loss-alpha", "ema-decay", "csnn-flag", "grid", "model-options",
        "align-window"])
def test_bad_options_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, argv, flag):
    # a missing data file would fail next: the options are checked before any work
    err = _error(capsys, ["csnn-dos", "train", "--data-file", str(tmp_path / "missing.extxyz.gz"), *argv,
                          "--out", str(tmp_path / "o")])
    assert flag in err


def test_adapter_registry_and_centre_fingerprints():
    from ase.build import bulk

    from pointsym.experiments.csnn_dos import adapters
    from pointsym.nn import atoms_environment_grid

    with pytest.raises(ValueError, match="Unknown DOS model 'nope'"):
        adapters.get_adapter("nope")
    adapter = adapters.get_adapter("csnn")
    assert isinstance(adapter, adapters.DOSAdapter) and adapter.name == "csnn"
    saved = dict(adapters.ADAPTERS)
    try:
        adapters.ADAPTERS["ghost"] = "pointsym.experiments.csnn_dos.no_such_module:Ghost"
        with pytest.raises(ValueError, match="no_such_module"):
            adapters.get_adapter("ghost")
    finally:
        adapters.ADAPTERS.clear()
        adapters.ADAPTERS.update(saved)
    frames = [bulk("C", "diamond", a=3.57, cubic=True), bulk("C", "diamond", a=3.6).repeat((2, 1, 1))]
    frames[0].rattle(0.05, seed=1)
    model = adapter.build_model(np.linspace(-5.0, 1.0, 61), {"level": 1, "n_bins": 4, "base_width": 2, "hidden": [4]})
    assert model.n_energies == 61 and model.e_step == pytest.approx(0.1)
    full, batch = atoms_environment_grid(frames, level=1, n_bins=4, dtype=torch.float64)
    centres = [np.array([5, 2]), np.array([0])]
    prepared = adapter.prepare(frames, centres, dtype=torch.float64, device=torch.device("cpu"))
    rows = [5, 2, 8]  # frame 1 starts at atom 8
    # the centres' own pair search gives the rows of the full grid (up to round-off)
    assert torch.allclose(prepared.grid, full[rows], atol=1e-12) and prepared.batch.tolist() == [0, 0, 1]
    model = model.double().eval()
    pred = adapter.predict(model, prepared)
    assert pred.shape == (2, 61)
    atoms = model.forward_atoms(full)
    assert torch.allclose(pred, torch.stack([atoms[[5, 2]].mean(0), atoms[8]]), atol=1e-12)
