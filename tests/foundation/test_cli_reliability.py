"""Reliability of the training commands: torchrun, --restart / --init-from, bad input files,
error positions, early option validation and messages that recommend the right fix.

Every command runs on the embedded data with tiny models, so each test takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ase.io
import numpy as np
import pytest

from pointsym.cli import main
from pointsym.datasets import load_atomistic

TINY_PET = ["--d-model", "8", "--n-gnn-layers", "1", "--n-trans-layers", "1", "--n-heads", "2",
            "--dim-feedforward", "16", "--head-hidden", "8", "--r-cut", "3.0", "--quiet", "--no-plots",
            "--discrepancy-rotations", "2", "--discrepancy-structures", "1", "--ecse-discrepancy-structures", "1",
            "--max-test", "2"]
PET = ["pet-train", "--data", "methane", "--source", "embedded", "--max-train", "12", "--batch-size", "6",
       "--epochs", "1", *TINY_PET]
TINY_CSNN = ["csnn-shapes", "--source", "embedded", "--epochs", "1", "--batch-size", "8", "--train-per-class", "2",
             "--n-points", "64", "--level", "1", "--n-shells", "2", "--n-channels", "2", "--base-width", "4",
             "--hidden", "8", "--test-rot", "z", "--quiet"]


def _error(capsys, argv) -> str:
    """Run ``pointsym argv``, expect exit status 2 and return the single stderr line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _methane(n=12):
    return load_atomistic("methane", "train", source="embedded")[:n]


# ------------------------------------------------------------------------------- 1. torchrun
@pytest.mark.parametrize("argv,marker", [
    (PET, "[test] bare:"),
    (TINY_CSNN, "csnn_z: train z / test z"),
    (["pixel-soap", "train", "--source", "embedded", "--backend", "dscribe", "--r-cut", "10", "--n-max", "3",
      "--l-max", "2", "--sigma", "1.5", "--max-train", "200", "--max-test", "20", "--epochs", "1", "--hidden", "8",
      "--name", "tiny"], "test accuracy"),
    (["nesf-train", "--source", "embedded", "--epochs", "1", "--batch-size", "8", "--latent-dim", "8",
      "--position-channels", "16,16", "--species-channels", "16", "--n-global", "16", "--n-local", "4",
      "--n-species", "4", "--max-train", "16", "--max-val", "4", "--quiet"], "nesf-train: 1 epochs in total"),
], ids=["pet-train", "csnn-shapes", "pixel-soap-train", "nesf-train"])
def test_torchrun_rank0_alone_evaluates_and_writes(tmp_path, argv, marker):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "pointsym", *argv, "--out", str(out)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count(marker) == 1, res.stdout  # one process reported (and evaluated)
    (path,) = [p for p in out.glob("*.json")]
    rec = json.loads(path.read_text())
    assert rec["command"].startswith(f"torchrun --nproc_per_node=2 -m pointsym {' '.join(argv[:2])} ")
    assert rec["provenance"]["world_size"] == 2
    assert not list(out.rglob("*.tmp"))


def test_recorded_command_names_the_launcher(monkeypatch):
    from pointsym.experiments.common.results import command_line

    monkeypatch.setattr(sys, "argv", ["/x/pointsym/__main__.py", "pet-train", "--data", "Si"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert command_line() == "pointsym pet-train --data Si"
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert command_line() == "torchrun --nproc_per_node=4 --nnodes=2 -m pointsym pet-train --data Si"


# ------------------------------------------------------------------------------- 2. --restart / --init-from
def test_pet_train_rerun_with_other_settings_restart_and_init_from(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*PET, "--out", str(out)]) == 0
    capsys.readouterr()
    err = _error(capsys, [*PET, "--out", str(out), "--lr", "0.01"])
    assert "lr: 0.003 -> 0.01" in err and "--restart" in err
    err = _error(capsys, [*PET, "--out", str(out), "--d-model", "16"])
    assert "d_model: 8 -> 16" in err and "size mismatch" not in err
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert main([*PET, "--out", str(out), "--lr", "0.01", "--restart"]) == 0
    assert (out / "checkpoints" / "previous" / "1" / "last.pt").read_bytes() == before
    assert (out / "checkpoints" / "previous" / "1" / "best.pt").is_file()
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 1
    # weights only, from a Trainer checkpoint or a model file; another architecture is named
    best = out / "checkpoints" / "best.pt"
    err = _error(capsys, [*PET, "--out", str(tmp_path / "warm"), "--d-model", "16", "--init-from", str(best)])
    assert "--init-from" in err and "d_model: 8 in the file, 16 in this run" in err
    assert main([*PET, "--out", str(tmp_path / "warm"), "--init-from", str(best)]) == 0
    capsys.readouterr()
    from pointsym.experiments.pet.cli import load_model

    load_model(str(best)).save(tmp_path / "pet.pt")
    assert main([*PET, "--out", str(tmp_path / "warm2"), "--init-from", str(tmp_path / "pet.pt")]) == 0


def test_every_training_command_has_restart_and_init_from():
    import argparse

    from pointsym.cli import build_parser

    def sub(parser, name):
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return action.choices[name]

    top = build_parser()
    for parser in (sub(top, "pet-train"), sub(top, "nesf-train"), sub(top, "csnn-shapes"),
                   sub(sub(top, "pixel-soap"), "train")):
        options = {s for a in parser._actions for s in a.option_strings}
        assert {"--restart", "--init-from"} <= options, parser.prog


def test_csnn_shapes_restart_moves_the_run_aside(tmp_path, capsys):
    out = tmp_path / "c"
    assert main([*TINY_CSNN, "--out", str(out)]) == 0
    capsys.readouterr()
    err = _error(capsys, [*TINY_CSNN, "--out", str(out), "--lr", "0.01"])
    assert "lr: 0.001 -> 0.01" in err
    assert main([*TINY_CSNN, "--out", str(out), "--lr", "0.01", "--restart"]) == 0
    assert (out / "checkpoints" / "csnn_z" / "previous" / "1" / "last.pt").is_file()
    best = out / "checkpoints" / "csnn_z" / "best.pt"
    err = _error(capsys, [*TINY_CSNN, "--out", str(tmp_path / "w"), "--base-width", "8", "--init-from", str(best)])
    assert "--init-from" in err and "another architecture" in err


# ------------------------------------------------------------------------------- 3. unreadable structure files
def test_unreadable_structure_files_name_file_format_and_flag(tmp_path, capsys):
    (tmp_path / "junk.xyz").write_text("hello\nworld\n1 2 3\n")
    (tmp_path / "junk.foo").write_text("junk")
    for name, fmt in (("junk.xyz", "extxyz"), ("junk.foo", "foo")):
        path = str(tmp_path / name)
        err = _error(capsys, [*PET, "--data", path, "--out", str(tmp_path / "o")])
        assert path in err and f"format {fmt}" in err and "--format" in err
        err = _error(capsys, ["pet-predict", "--model", "random:0", "--input", path, "--output",
                              str(tmp_path / "p.xyz")])
        assert path in err and f"format {fmt}" in err and "--format" in err
    # --format reads a file whose name says nothing
    ase.io.write(tmp_path / "frames.data", _methane(2), format="extxyz")
    assert main(["pet-predict", "--model", "random:0", "--input", str(tmp_path / "frames.data"), "--format",
                 "extxyz", "--output", str(tmp_path / "p.xyz"), "--quiet", "--r-cut", "3.0"]) == 0
    assert len(ase.io.read(tmp_path / "p.xyz", ":")) == 2


# ------------------------------------------------------------------------------- 4. positions in the user's file
@pytest.mark.parametrize("where", ["positions", "forces", "energy", "overlapping atoms"])
def test_bad_frame_is_reported_by_its_index_in_the_file(tmp_path, capsys, where):
    # before: "frames[3] has NaN ..." / "Overlapping atoms in structure 1: atoms 7 and 8" (shuffled batch positions)
    frames = _methane(12)
    if where == "positions":
        frames[5].positions[2, 1] = np.nan
    elif where == "overlapping atoms":
        frames[5].positions[3] = frames[5].positions[2] + 0.01
    elif where == "forces":
        frames[5].arrays["forces"][1, 0] = np.inf
    else:
        frames[5].info["energy"] = np.nan
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, frames)
    err = _error(capsys, [*PET, "--data", str(path), "--out", str(tmp_path / "o")])
    assert f"Frame 5 of --data '{path}'" in err and where.rstrip("s") in err


# ------------------------------------------------------------------------------- 5. options checked first
NO_DATA = ["--data-dir", "/nonexistent-pointsym-data"]  # any work would fail on the missing data first
EARLY = [
    (["pet-train", "--data", "Si", *NO_DATA, "--discrepancy-rotations", "1"], "--discrepancy-rotations must be >= 2"),
    (["pet-train", "--data", "Si", *NO_DATA, "--val-fraction", "-0.5"], "--val-fraction must be > 0"),
    (["pet-train", "--data", "Si", *NO_DATA, "--d-model", "10", "--n-heads", "4"], "--d-model must be a multiple"),
    (["pet-train", "--data", "Si", *NO_DATA, "--cutoff-delta", "5"], "--cutoff-delta must be smaller than --r-cut"),
    (["pet-train", "--data", "Si", *NO_DATA, "--lr", "0"], "--lr must be > 0"),
    (["pet-predict", "--model", "random:0", "--input", "x.xyz", "--output", "o.xyz", "--r-cut", "-1"],
     "--r-cut must be > 0"),
    (["nesf-train", *NO_DATA, "--epochs", "0"], "--epochs must be >= 1"),
    (["nesf-train", *NO_DATA, "--n-local", "100"], "--n-local must be <= 64"),
    (["nesf-train", *NO_DATA, "--dropout", "1.5"], "--dropout must be < 1"),
    (["nesf-train", *NO_DATA, "--position-channels", "16,x"], "--position-channels must be"),
    (["nesf-eval", "--model", "exact", "--data", "lim_l6", *NO_DATA, "--steps", "0"], "--steps must be >= 1"),
    (["csnn-shapes", *NO_DATA, "--val-fraction", "-0.5"], "--val-fraction must be > 0"),
    (["csnn-shapes", *NO_DATA, "--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["csnn-shapes", *NO_DATA, "--benchmark-shells", "0,2"], "--benchmark-shells must be"),
    (["pixel-soap", "train", *NO_DATA, "--r-cut", "-1"], "--r-cut must be > 0"),
    (["pixel-soap", "train", *NO_DATA, "--epochs", "0"], "--epochs must be >= 1"),
    (["pixel-soap", "noise", *NO_DATA, "--sigma-min", "5", "--sigma-max", "1"],
     "--sigma-min must be smaller than --sigma-max"),
    (["pixel-soap", "noise", *NO_DATA, "--steps", "1"], "--steps must be >= 2"),
    (["pixel-soap", "rotations", *NO_DATA, "--patch-half", "0"], "--patch-half must be >= 3"),
    (["pixel-soap", "compress", *NO_DATA, "--h-e-pca", "0,2"], "--h-e-pca must list"),
    (["soap", "x.xyz", "-o", "o.npz", "--n-max", "0", "--l-max", "2", "--r-cut", "3"], "--n-max must be >= 1"),
    (["soap", "x.xyz", "-o", "o.npz", "--n-max", "2", "--l-max", "2", "--r-cut", "3", "--sigma", "0"],
     "--sigma must be > 0"),
]


@pytest.mark.parametrize("argv,message", EARLY, ids=[f"{a[0]}: {m}" for a, m in EARLY])
def test_options_are_checked_before_any_work(tmp_path, capsys, argv, message):
    err = _error(capsys, [*argv, "--out", str(tmp_path)] if argv[0] not in ("soap", "pet-predict") else argv)
    assert message in err


@pytest.mark.parametrize("argv", [["pet-train", "--data", "Si", "--max-train", "0"],
                                  ["nesf-eval", "--model", "exact", "--data", "x", "--max-test", "-3"],
                                  ["csnn-shapes", "--seed", "-1"], ["csnn-shapes", "--threads", "0"]])
def test_bad_counts_are_parse_errors(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"argument {argv[-2]}" in capsys.readouterr().err


# ------------------------------------------------------------------------------- 6. the right fix
def test_messages_recommend_the_right_fix(tmp_path, capsys):
    ase.io.write(tmp_path / "twelve.extxyz", _methane(12))
    err = _error(capsys, ["soap", str(tmp_path / "twelve.extxyz"), "--index", "50", "--n-max", "2", "--l-max", "1",
                          "--r-cut", "3", "-o", str(tmp_path / "s.npz")])
    assert "--index '50' selects no frame" in err and "12 frame(s)" in err and "--format" not in err
    ase.io.write(tmp_path / "one.extxyz", _methane(1))
    err = _error(capsys, [*PET, "--data", str(tmp_path / "one.extxyz"), "--out", str(tmp_path / "o")])
    assert "holds 1 structure" in err and "--val" in err and "No training structures" not in err
    err = _error(capsys, ["nesf-train", "--source", "embedded", "--epochs", "0", "--out", str(tmp_path / "n")])
    assert "--epochs must be >= 1" in err and "does not exist" not in err
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04junkjunk")
    (tmp_path / "text.npz").write_text("not a zip")
    for bad in ("zip.npz", "text.npz"):
        for argv in (["nesf-eval", "--model", "exact", "--data", str(tmp_path / bad)],
                     ["nesf-train", "--data", str(tmp_path / bad), "--epochs", "1"]):
            err = _error(capsys, [*argv, "--out", str(tmp_path / "n"), "--quiet"])
            assert "is not a readable .npz archive" in err and "NeSF crystal npz" in err
            assert "allow_pickle" not in err and "BadZipFile" not in err
    err = _error(capsys, ["pixel-soap", "rotations", "--patch-half", "0", "--out", str(tmp_path)])
    assert "--patch-half must be >= 3" in err and "'patch'" not in err


# ------------------------------------------------------------------------------- 9. project errors: one line
def test_diverged_training_is_one_line(tmp_path, capsys):
    err = _error(capsys, [*PET, "--lr", "1e6", "--out", str(tmp_path / "o")])
    assert "Loss became" in err and "--lr" in err


def test_unwritable_output_is_one_line(tmp_path, capsys):
    ase.io.write(tmp_path / "in.extxyz", _methane(1))
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    err = _error(capsys, ["pet-predict", "--model", "random:0", "--input", str(tmp_path / "in.extxyz"), "--output",
                          str(tmp_path / "blocker" / "out.xyz"), "--r-cut", "3.0", "--quiet"])
    assert "blocker" in err


# ------------------------------------------------------------------------------- 8. --help
def _help(argv):
    import argparse

    from pointsym.cli import build_parser

    parser = build_parser()
    for name in argv:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return {a.option_strings[0]: " ".join(parser._get_formatter()._get_help_string(a).split())
            for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS}


def _bare(text: str) -> str:
    import re

    return re.sub(r"\((default|required)[^)]*\)|\[[^\]]*\]", "", text).strip()


@pytest.mark.parametrize("argv", [["pet-train"], ["pet-predict"], ["nesf-train"], ["nesf-eval"], ["csnn-shapes"],
                                  ["soap"], ["pixel-soap", "train"], ["pixel-soap", "noise"]])
def test_help_says_more_than_the_option_name(argv):
    for flag, text in _help(argv).items():
        if flag in ("-h", "--version"):
            continue
        what = _bare(text)
        # more than the flag's own words, unless a unit says what it counts ("batch size [structures]")
        assert (len(what.split()) >= 2 and what.lower() != flag.strip("-").replace("-", " ")) or "[" in text, (
            flag, text)
        assert "default" in text or "(required)" in text, (flag, text)


def test_help_of_the_options_named_in_the_issue():
    nesf = _help(["nesf-train"])
    for flag, unit in (("--epochs", "[epochs]"), ("--batch-size", "[structures]"), ("--lr-step", "[epochs]"),
                       ("--max-minutes", "[min]"), ("--latent-dim", "[features]"), ("--n-global", "[queries]"),
                       ("--n-local", "[queries]"), ("--n-species", "[queries]"), ("--patience", "[epochs]")):
        assert unit in nesf[flag], (flag, nesf[flag])
    for flag in ("--lr", "--lr-gamma", "--dropout", "--train-split", "--val-split", "--restart", "--init-from"):
        assert len(_bare(nesf[flag]).split()) >= 5, (flag, nesf[flag])
    assert "precision" in _help(["soap"])["--dtype"]
    assert "L2 penalty" in _help(["csnn-shapes"])["--weight-decay"]


def test_nesf_train_restart_moves_aside_instead_of_deleting(tmp_path, capsys):
    nesf = ["nesf-train", "--source", "embedded", "--epochs", "1", "--batch-size", "8", "--latent-dim", "8",
            "--position-channels", "16,16", "--species-channels", "16", "--n-global", "16", "--n-local", "4",
            "--n-species", "4", "--max-train", "8", "--val-split", "none", "--quiet", "--out", str(tmp_path)]
    assert main(nesf) == 0
    capsys.readouterr()
    assert "lr: 0.001 -> 0.01" in _error(capsys, [*nesf, "--lr", "0.01"])
    assert "extra.nesf.latent_dim: 8 -> 16" in _error(capsys, [*nesf, "--latent-dim", "16"])
    ckpt = tmp_path / "checkpoints" / "lim_l6"
    before = (ckpt / "last.pt").read_bytes()
    assert main([*nesf, "--lr", "0.01", "--restart"]) == 0
    assert (ckpt / "previous" / "1" / "last.pt").read_bytes() == before  # kept, not deleted


def test_pixel_soap_train_restart_and_init_from(tmp_path, capsys):
    train = ["pixel-soap", "train", "--source", "embedded", "--backend", "dscribe", "--r-cut", "10", "--n-max", "3",
             "--l-max", "2", "--sigma", "1.5", "--max-train", "200", "--max-test", "20", "--epochs", "1", "--quiet",
             "--hidden", "8", "--name", "tiny"]
    out = tmp_path / "a"
    assert main([*train, "--out", str(out)]) == 0
    assert main([*train, "--out", str(out), "--restart"]) == 0
    assert len(list((out / "checkpoints").glob("tiny_*/previous/1/last.pt"))) == 1
    bundle = out / "checkpoints" / "tiny" / "model.pt"
    assert main([*train, "--out", str(tmp_path / "b"), "--init-from", str(bundle)]) == 0
    capsys.readouterr()
    err = _error(capsys, [*train[:-4], "--hidden", "16", "--name", "tiny", "--out", str(tmp_path / "c"),
                          "--init-from", str(bundle)])
    assert "--init-from" in err and "another architecture" in err and "hidden" in err
