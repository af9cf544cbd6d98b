"""``pet-train`` and ``pet-predict`` end to end on tiny models and the embedded data."""

from __future__ import annotations

import argparse
import json

import ase.io
import numpy as np
import pytest

from pointsym.datasets import load_atomistic, read_atomistic
from pointsym.experiments.pet import cli as pet_cli

TINY = ["--d-model", "8", "--n-gnn-layers", "1", "--n-trans-layers", "1", "--n-heads", "2", "--dim-feedforward", "16",
        "--head-hidden", "8", "--r-cut", "3.0"]


def run(argv):
    parser = argparse.ArgumentParser()
    pet_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


# Signed permutation matrices: proper and improper O(3) elements that map coordinates
# with few decimals to coordinates with few decimals, so the extxyz text files (8 decimals)
# hold the transformed structures exactly.
Q_ROT = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # det +1, 120 deg about (1, 1, 1)
Q_MIRROR = -np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # det -1


def _rotated_copies(atoms):
    atoms = atoms.copy()
    atoms.positions = np.round(atoms.positions, 5)
    copies = [atoms]
    for q in (Q_ROT, Q_MIRROR):
        a = atoms.copy()
        a.positions = atoms.positions @ q.T
        if a.pbc.any():
            a.set_cell(np.asarray(atoms.cell[:]) @ q.T)
        copies.append(a)
    return copies


@pytest.mark.parametrize("symmetrize", [True, False])
def test_predict_with_a_random_model_is_equivariant_only_when_symmetrized(tmp_path, symmetrize):
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.positions += np.random.default_rng(0).normal(scale=0.1, size=si.positions.shape)
    ch4 = load_atomistic("methane", "test", source="embedded")[0]
    frames = _rotated_copies(ch4) + _rotated_copies(si)
    ase.io.write(tmp_path / "in.extxyz", frames)
    flag = "--symmetrize" if symmetrize else "--no-symmetrize"
    assert run(["pet-predict", "--model", "random:3", "--input", str(tmp_path / "in.extxyz"),
                "--output", str(tmp_path / "out.extxyz"), flag, "--dtype", "float64", "--r-cut", "3.0",
                "--quiet"]) == 0
    out = read_atomistic(tmp_path / "out.extxyz")
    assert len(out) == 6 and all(a.info["pointsym_symmetrized"] == symmetrize for a in out)
    qs = [np.eye(3), Q_ROT, Q_MIRROR]
    worst_e, worst_f = 0.0, 0.0
    for group in (out[:3], out[3:]):
        ref_e, ref_f = group[0].info["energy"], group[0].arrays["forces"]
        for a, q in zip(group[1:], qs[1:], strict=True):
            worst_e = max(worst_e, abs(a.info["energy"] - ref_e) / abs(ref_e))
            worst_f = max(worst_f, np.abs(a.arrays["forces"] - ref_f @ q.T).max() / np.abs(ref_f).max())
    if symmetrize:
        assert worst_e < 1e-10 and worst_f < 1e-10
    else:  # negative control: the bare random PET is visibly not invariant
        assert worst_e > 1e-6 and worst_f > 1e-3


def test_train_resume_and_predict_from_checkpoint(tmp_path):
    out = tmp_path / "run"
    common = ["pet-train", "--data", "methane", "--source", "embedded", "--batch-size", "10", "--max-train", "20",
              "--discrepancy-rotations", "3", "--discrepancy-structures", "2", "--out", str(out), "--quiet", *TINY]
    assert run([*common, "--epochs", "1", "--max-test", "2"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert first["epochs_run"] == 1 and first["n_train"] == 20 and first["n_test"] == 25
    assert first["test"]["ecse"]["rotational_discrepancy"]["forces_rel_max"] < 1e-4  # float32 noise
    assert first["test"]["bare"]["rotational_discrepancy"]["forces_rel_max"] > 1e-3
    bare_disc = first["test"]["bare"]["rotational_discrepancy"]
    assert bare_disc["energy_per_atom_max"] >= bare_disc["energy_per_atom_mad"] > 0
    assert first["test"]["ecse"]["mean_frames_kept"] >= 1 and first["test"]["ecse_cost_ratio"] > 0
    assert "command" in first and "provenance" in first
    # A second invocation resumes from checkpoints/last.pt instead of starting over.
    assert (out / "learning_curve.png").is_file() and (out / "errors_test.png").is_file()
    assert run([*common, "--epochs", "2", "--no-eval-ecse", "--max-test", "1", "--no-plots"]) == 0
    second = json.loads((out / "results.json").read_text())
    assert second["epochs_run"] == 2 and second["history"][0] == first["history"][0]
    assert "ecse" not in second["test"]
    inp = tmp_path / "in.extxyz"
    ase.io.write(inp, load_atomistic("methane", "test", source="embedded")[:2])
    assert run(["pet-predict", "--model", str(out / "checkpoints" / "best.pt"), "--input", str(inp),
                "--output", str(tmp_path / "pred.extxyz"), "--quiet"]) == 0
    pred = read_atomistic(tmp_path / "pred.extxyz")
    assert len(pred) == 2 and pred[0].arrays["forces"].shape == (5, 3)


def test_cli_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="--discrepancy-structures must be >= 1"):
        run(["pet-train", "--data", "methane", "--source", "embedded", "--discrepancy-structures", "0",
             "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="neither an existing structure file nor a data set name"):
        run(["pet-train", "--data", "no-such-set", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(["pet-predict", "--model", "random:0", "--input", str(tmp_path / "nope.xyz"), "--output",
             str(tmp_path / "o.xyz")])
    ase.io.write(tmp_path / "in.xyz", load_atomistic("methane", "test", source="embedded")[:1])
    with pytest.raises(ValueError, match="random:SEED"):
        run(["pet-predict", "--model", "random:x", "--input", str(tmp_path / "in.xyz"), "--output",
             str(tmp_path / "o.xyz")])


def test_training_data_can_be_an_extxyz_path(tmp_path):
    frames = load_atomistic("Si", "train", source="embedded")[:12]
    path = tmp_path / "si.extxyz"
    ase.io.write(path, frames)
    args = argparse.Namespace(data=str(path), val=None, test=None, val_fraction=0.25, max_train=None, seed=0,
                              source="full", data_dir=None)
    train, val, test = pet_cli._splits(args)
    assert (len(train), len(val), len(test)) == (9, 3, 0)  # no test split: evaluation falls back to val
    assert np.allclose(train[0].arrays["forces"], frames[[f.info["energy"] for f in frames].index(
        train[0].info["energy"])].arrays["forces"])
