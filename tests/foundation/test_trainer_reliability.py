"""Trainer reliability: resumes never mix settings, bad checkpoints are named, NaN is a clear error."""

from __future__ import annotations

import os

import pytest
import torch

from pointsym.core import CheckpointError, ConfigMismatchError, PointsymError, TrainingDivergedError
from pointsym.training import TrainConfig, Trainer, config_changes, load_checkpoint, move_aside


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return list(zip(x, x.sum(1, keepdim=True), strict=True))


def _loss(model, batch):
    x, y = batch
    loss = torch.nn.functional.mse_loss(model(x), y)
    return loss, {}


def _fit(out, width=1, **kw):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 1))
    cfg = TrainConfig(out_dir=str(out), quiet=True, batch_size=16, **{"epochs": 2, "lr": 0.01, **kw})
    Trainer(model, _loss, cfg).fit(_data())
    return model


def test_resume_with_other_lr_names_the_changed_key(tmp_path):
    _fit(tmp_path)
    with pytest.raises(ConfigMismatchError, match=r"lr: 0\.01 -> 0\.5.*--restart.*--init-from"):
        _fit(tmp_path, lr=0.5, epochs=4)
    # more epochs alone is a legitimate resume
    _fit(tmp_path, epochs=3)
    assert len(load_checkpoint(tmp_path / "last.pt")["history"]) == 3


def test_resume_with_other_extra_and_architecture(tmp_path):
    _fit(tmp_path, extra={"model": {"d_model": 8}})
    with pytest.raises(ConfigMismatchError, match=r"extra\.model"):
        _fit(tmp_path, extra={"model": {"d_model": 16}}, epochs=3)
    # the same settings but another architecture: named, not a torch size-mismatch traceback
    with pytest.raises(ConfigMismatchError, match="another architecture"):
        _fit(tmp_path, width=3, extra={"model": {"d_model": 8}}, epochs=3)


def test_restart_moves_old_checkpoints_aside(tmp_path):
    _fit(tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    _fit(tmp_path, lr=0.5, restart=True)
    kept = tmp_path / "previous" / "1" / "last.pt"
    assert kept.read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["config"]["lr"] == 0.5
    _fit(tmp_path, lr=0.2, restart=True)
    assert (tmp_path / "previous" / "2" / "best.pt").is_file()
    assert move_aside(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", os.urandom(256), b"not a checkpoint at all"])
def test_unreadable_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="last.pt.*--restart"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="last.pt"):
        _fit(tmp_path)


def test_truncated_real_checkpoint_is_named(tmp_path):
    _fit(tmp_path)
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable pointsym checkpoint"):
        _fit(tmp_path)


def test_non_pointsym_torch_file(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="no 'format_version'"):
        load_checkpoint(tmp_path / "last.pt")


def test_nan_loss_is_a_project_error(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"learning rate \('lr'") as info:
        _fit(tmp_path, lr=1e12, epochs=5)
    assert isinstance(info.value, PointsymError) and isinstance(info.value, FloatingPointError)


def test_config_changes_rules():
    stored = {"lr": 0.1, "epochs": 3, "extra": {"model": [1, 2], "epochs": 3}}
    assert config_changes(stored, {"lr": 0.1, "epochs": 9, "extra": {"model": (1, 2), "epochs": 7}}) == {}
    assert config_changes(stored, {"lr": 0.2, "epochs": 3, "extra": {"model": [1, 2]}}) == {"lr": (0.1, 0.2)}
    # keys the stored run does not know (added by a later version) are not compared
    assert config_changes({"lr": 0.1}, {"lr": 0.1, "new_option": True}) == {}


def test_pointsym_quiet_silences_progress_bars(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POINTSYM_QUIET", "1")
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, batch_size=16, quiet=False)
    Trainer(torch.nn.Linear(4, 1), _loss, cfg).fit(_data())
    err = capsys.readouterr().err
    assert "epoch 1/1 train" not in err


def test_model_file_given_as_trainer_checkpoint(tmp_path):
    from pointsym.symmetrize import NeighborMLP

    NeighborMLP(r_cut=3.0, hidden=4).save(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="NeighborMLP model file.*from_checkpoint"):
        load_checkpoint(tmp_path / "model.pt")
