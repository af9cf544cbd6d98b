"""NeSF data reading (species indices -> atomic numbers) and the nesf-train / nesf-eval commands."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from pointsym.experiments.common.cli import apply_common_arguments
from pointsym.experiments.nesf import cli as nesf_cli
from pointsym.fields import LIM_L6_SIDX_TO_Z, CrystalSet, load_nesf, load_nesf_set, read_nesf_npz


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pointsym")
    nesf_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    apply_common_arguments(args)
    return args.func(args)


def write_npz(path, crystals, numbers=None):
    np.savez(path, positions=crystals.positions, numbers=crystals.numbers if numbers is None else numbers,
             offsets=crystals.offsets, lengths=crystals.lengths, angles_rad=crystals.angles,
             mpid=np.array(crystals.ids))


def test_embedded_lim_l6_has_atomic_numbers():
    crystals = load_nesf_set("lim_l6", "train", source="embedded")
    assert len(crystals) == 60 and crystals.ids[0] == "mp-1187338"
    # species index 56/58 of lim_l6 are Tb/Ho (sidx_to_z of lim_l6_train.attr.json)
    assert crystals[0].numbers.tolist() == [65, 67, 67, 67]
    assert set(crystals.numbers.tolist()) <= set(LIM_L6_SIDX_TO_Z)


@pytest.mark.dataset
def test_full_sets_map_indices_with_attr_json(data_root):
    train = load_nesf_set("lim_l6", "train", data_dir=data_root)
    ids = {m: k for k, m in enumerate(train.ids)}
    assert train[ids["mp-23"]].numbers.tolist() == [28] * 4  # Ni
    assert sorted(set(train[ids["mp-5229"]].numbers.tolist())) == [8, 22, 38]  # SrTiO3
    icsg = load_nesf_set("ICSG3D", "val", data_dir=data_root)
    assert {43, 53} & set(icsg.numbers.tolist())  # elements lim_l6 lacks; indices would be shifted


def test_read_npz_species_maps(tmp_path):
    crystals = load_nesf_set("lim_l6", "val", source="embedded")
    idx = np.searchsorted(LIM_L6_SIDX_TO_Z, crystals.numbers)
    write_npz(tmp_path / "idx.npz", crystals, numbers=idx)
    write_npz(tmp_path / "idx0.npz", crystals, numbers=np.r_[0, idx[1:]])
    with pytest.raises(ValueError, match="sidx_to_z"):
        read_nesf_npz(tmp_path / "idx0.npz")  # index 0 (not an element) and no attr.json: refuse to guess
    (tmp_path / "idx.attr.json").write_text(json.dumps({"sidx_to_z": list(LIM_L6_SIDX_TO_Z)}))
    np.testing.assert_array_equal(read_nesf_npz(tmp_path / "idx.npz").numbers, crystals.numbers)
    write_npz(tmp_path / "z.npz", crystals)
    with pytest.warns(UserWarning, match="atomic numbers"):
        got = read_nesf_npz(tmp_path / "z.npz")
    np.testing.assert_array_equal(got.numbers, crystals.numbers)
    with pytest.raises(ValueError, match="entries"):
        read_nesf_npz(tmp_path / "idx.npz", sidx_to_z=[1, 2, 3])
    np.savez(tmp_path / "bad.npz", positions=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="missing arrays"):
        read_nesf_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        read_nesf_npz(tmp_path / "nope.npz")


def test_crystal_set_rejects_empty_structures_and_nan():
    good = load_nesf_set("lim_l6", "val", source="embedded").subset([0, 1])
    with pytest.raises(ValueError, match="no atoms"):
        CrystalSet(good.positions, good.numbers, np.r_[0, 0, good.offsets[-1]], good.lengths, good.angles, good.ids)
    with pytest.raises(ValueError, match="NaN"):
        CrystalSet(good.positions * np.nan, good.numbers, good.offsets, good.lengths, good.angles, good.ids)


def test_train_then_eval_cli_on_any_npz(tmp_path, capsys):
    out = tmp_path / "res"
    assert run_cli(["nesf-train", "--source", "embedded", "--epochs", "1", "--batch-size", "16", "--latent-dim", "8",
                    "--position-channels", "16,16", "--species-channels", "16", "--n-global", "16", "--n-local",
                    "4", "--n-species", "4", "--max-train", "20", "--max-val", "6", "--out", str(out),
                    "--quiet"]) == 0
    summary = json.loads((out / "train_lim_l6.json").read_text())
    assert summary["epochs_run"] == 1 and summary["command"] and summary["n_train"] == 20
    ckpt = out / "nesf_lim_l6.pt"
    model, info = load_nesf(ckpt)
    assert info["epochs_run"] == 1 and model.latent_dim == 8
    assert (out / "checkpoints" / "lim_l6" / "last.pt").is_file()
    # warm start from the export in a fresh output directory; a mismatched architecture is refused
    small = ["nesf-train", "--source", "embedded", "--epochs", "1", "--batch-size", "16",
             "--position-channels", "16,16",
             "--species-channels", "16", "--n-global", "16", "--n-local", "4", "--n-species", "4",
             "--max-train", "20", "--val-split", "none", "--quiet", "--init-from", str(ckpt)]
    assert run_cli(small + ["--latent-dim", "8", "--out", str(tmp_path / "warm")]) == 0
    with pytest.raises(ValueError, match="another architecture"):
        run_cli(small + ["--latent-dim", "4", "--out", str(tmp_path / "warm2")])
    # any npz in the NeSF format, here with atomic numbers and an attr.json-free name
    write_npz(tmp_path / "mine.npz", load_nesf_set("lim_l6", "test", source="embedded").subset(range(3)))
    with pytest.warns(UserWarning):
        assert run_cli(["nesf-eval", "--model", str(ckpt), "--data", str(tmp_path / "mine.npz"), "--steps", "2",
                        "--out", str(out), "--quiet", "--plots", "2"]) == 0
    res = json.loads((out / "eval_nesf_lim_l6_mine.json").read_text())
    assert res["n_structures"] == 3 and "atom_count_error_pct" in res["metrics"] and res["box"] == "model"
    assert (out / "recon_nesf_lim_l6_mine.png").stat().st_size > 10_000
    assert "Error in number of atoms" in capsys.readouterr().out


def test_eval_exact_cli(tmp_path):
    out = tmp_path / "res"
    assert run_cli(["nesf-eval", "--model", "exact", "--data", "lim_l6", "--split", "val", "--source", "embedded",
                    "--out", str(out), "--quiet", "--plots", "0"]) == 0
    m = json.loads((out / "eval_exact_lim_l6_val.json").read_text())["metrics"]
    assert m["atom_count_error_pct"] == 0.0 and m["position_error_actual"] < 1e-9 and m["n_structures"] == 20
    with pytest.raises(ValueError, match="--box model needs a trained model"):
        run_cli(["nesf-eval", "--model", "exact", "--data", "lim_l6", "--source", "embedded", "--box", "model",
                 "--out", str(out), "--quiet"])


def test_demo_stage_with_and_without_checkpoint(tmp_path, monkeypatch):
    from pointsym.experiments.demo.cli import DemoContext
    from pointsym.experiments.nesf import demo as demo_nesf
    from pointsym.fields import NeSF, save_nesf

    ctx = DemoContext(out_dir=tmp_path, quiet=True)
    monkeypatch.setattr(demo_nesf, "CHECKPOINT", tmp_path / "missing.pt")
    sec = demo_nesf.stage(ctx)
    assert sec.metrics["exact_atom_count_error_pct"] == 0.0 and sec.metrics["exact_n_structures"] == 20
    assert not sec.images and "No checkpoint" in sec.text[-1]
    lo, hi = load_nesf_set("lim_l6", "train", source="embedded").bounding_box()
    tiny = NeSF(latent_dim=8, box_min=lo, box_max=hi, position_channels=(8, 8), species_channels=(8,))
    monkeypatch.setattr(demo_nesf, "CHECKPOINT", save_nesf(tiny, tmp_path / "tiny.pt"))
    monkeypatch.setattr(demo_nesf, "_N_MODEL", 1)
    sec = demo_nesf.stage(ctx)
    assert sec.metrics["model_n_structures"] == 1 and (tmp_path / "nesf_reconstructions.png").is_file()


def test_cosine_schedule_and_its_validation():
    import torch

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    args = argparse.Namespace(lr_schedule="cosine", lr=1e-3, lr_min=1e-5, epochs=4, lr_step=640, lr_gamma=0.5)
    sched = nesf_cli._scheduler(opt, args)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-3) and lrs[2] == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert lrs[4] == lrs[5] == lrs[6] == pytest.approx(1e-5)  # constant after --epochs
    assert nesf_cli._schedule_extra(argparse.Namespace(lr_schedule="step")) == {}
    with pytest.raises(ValueError, match="--lr-min"):
        nesf_cli.NeSFTrainOptions(lr_schedule="cosine", lr=1e-4, lr_min=1e-3).validate()


def test_train_cli_fast_options(tmp_path):
    """--precision bf16, --lr-schedule cosine and --global-sampling importance reach the run and its summary."""
    out = tmp_path / "fast"
    argv = ["nesf-train", "--source", "embedded", "--epochs", "2", "--batch-size", "8", "--latent-dim", "8",
            "--position-channels", "16,16", "--species-channels", "16", "--n-global", "16", "--n-local", "4",
            "--n-species", "4", "--max-train", "16", "--val-split", "none", "--quiet", "--out", str(out)]
    assert run_cli(argv + ["--precision", "bf16", "--lr-schedule", "cosine", "--lr-min", "1e-4",
                           "--global-sampling", "importance"]) == 0
    summary = json.loads((out / "train_lim_l6.json").read_text())
    assert summary["precision"] == "bf16" and summary["lr_schedule"] == "cosine"
    assert summary["sampler"]["global_sampling"] == "importance"
    assert [round(h["lr"], 8) for h in summary["history"]] == [round(1e-4 + (1e-3 - 1e-4) * 0.5, 8), 1e-4]
    with pytest.raises(ValueError, match="--n-global"):
        run_cli(["nesf-train", "--source", "embedded", "--global-sampling", "importance", "--out", str(out)])
