"""The shared trainer: learning, checkpoint/resume equivalence, early stopping, errors."""

from __future__ import annotations

import json

import pytest
import torch

from pointsym.training import TrainConfig, Trainer, load_checkpoint


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    return list(zip(x, y, strict=True))


def _loss(model, batch):
    x, y = batch
    loss = torch.nn.functional.mse_loss(model(x), y)
    return loss, {"mse": loss.item()}


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1)


def test_trainer_learns_and_writes_metrics(tmp_path):
    cfg = TrainConfig(epochs=30, batch_size=16, lr=0.05, out_dir=str(tmp_path), quiet=True)
    hist = Trainer(_model(), _loss, cfg).fit(_data(), _data(32, seed=1))
    assert len(hist) == 30 and hist[-1]["val_mse"] < 1e-2 < hist[0]["val_mse"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] >= 25 and len(metrics["history"]) == 30
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()


def test_resume_gives_identical_result(tmp_path):
    def run(out, epochs):
        cfg = TrainConfig(epochs=epochs, batch_size=16, lr=0.02, out_dir=str(out), quiet=True, seed=3)
        model = _model()
        Trainer(model, _loss, cfg).fit(_data(), _data(32, seed=1))
        return model

    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)  # interrupted after 3 epochs ...
    resumed = run(tmp_path / "b", 6)  # ... and resumed to 6
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
    hist = json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]


def test_early_stopping_and_load_best(tmp_path):
    cfg = TrainConfig(epochs=50, batch_size=96, lr=5.0, patience=2, out_dir=str(tmp_path), quiet=True)
    trainer = Trainer(_model(), _loss, cfg)
    hist = trainer.fit(_data(), _data(32, seed=1))
    assert len(hist) < 50  # lr too large: validation gets worse, training stops early
    best = load_checkpoint(tmp_path / "best.pt")
    trainer.load_best()
    torch.testing.assert_close(trainer.model.state_dict()["weight"], best["model"]["weight"])


def test_trainer_errors(tmp_path):
    with pytest.raises(ValueError, match="'lr'"):
        Trainer(_model(), _loss, TrainConfig(lr=-1))
    with pytest.raises(ValueError, match="'mode'"):
        Trainer(_model(), _loss, TrainConfig(mode="best"))
    with pytest.raises(ValueError, match="val_accuracy"):
        Trainer(_model(), _loss, TrainConfig(epochs=1, monitor="accuracy", quiet=True)).fit(_data(), _data(8))

    def nan_loss(model, batch):
        return model(batch[0]).sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="lr"):
        Trainer(_model(), nan_loss, TrainConfig(epochs=1, quiet=True)).fit(_data())
    torch.save({"format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="upgrade pointsym"):
        load_checkpoint(tmp_path / "new.pt")


def test_load_best_in_memory_without_out_dir():
    cfg = TrainConfig(epochs=20, batch_size=96, lr=5.0, quiet=True)
    trainer = Trainer(_model(), _loss, cfg)
    hist = trainer.fit(_data(), _data(32, seed=1))
    best = min(hist, key=lambda h: h["val_loss"])
    trainer.load_best()
    x, y = zip(*_data(32, seed=1), strict=True)
    with torch.no_grad():
        val = torch.nn.functional.mse_loss(trainer.model(torch.stack(x)), torch.stack(y)).item()
    assert abs(val - best["val_loss"]) < 1e-5 * max(1.0, val)


_DDP_SCRIPT = '''
import json, os, sys, torch
from pointsym.training import TrainConfig, Trainer
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 4, generator=g); y = x.sum(1, keepdim=True)
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
def loss_fn(m, b):
    l = torch.nn.functional.mse_loss(m(b[0]), b[1]); return l, {"mse": l.item()}
hist = Trainer(model, loss_fn, TrainConfig(epochs=3, batch_size=8, lr=0.05, out_dir=sys.argv[1], quiet=True)).fit(
    list(zip(x, y)), list(zip(x[:16], y[:16])))
w = model.weight.detach().flatten().tolist()
with open(os.path.join(sys.argv[1], f"rank{os.environ.get('RANK', '0')}.json"), "w") as fh:
    json.dump({"w": w, "world": os.environ.get("WORLD_SIZE")}, fh)
'''


def test_runs_unchanged_under_torchrun(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["world"] == "2"
    assert r0["w"] == pytest.approx(r1["w"], abs=1e-7)  # DDP keeps replicas in sync
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert len(hist) == 3 and hist[-1]["train_mse"] < hist[0]["train_mse"]


def test_plateau_scheduler_gets_the_monitored_metric():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # too small to improve: a plateau
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0, threshold=0.5)
    hist = Trainer(model, _loss, TrainConfig(epochs=4, batch_size=32, quiet=True), optimizer=opt,
                   scheduler=sched).fit(_data(), _data(32, seed=1))
    lrs = [h["lr"] for h in hist]
    # the first epoch sets the scheduler's baseline; every later epoch is a plateau and halves lr
    assert lrs == pytest.approx([1e-6, 5e-7, 2.5e-7, 1.25e-7])


# --------------------------------------------------------------------------- weight averaging, stops


def _constant_gradient_run(out, epochs, decay, *, batch_size=16):
    """One weight, loss = w * mean(x) with x = 1: every SGD step lowers w by exactly lr."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    data = [(torch.ones(1), torch.zeros(1))] * 32

    def loss_fn(m, batch):
        x, _ = batch
        loss = m(x).mean()
        return loss, {}

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.1, out_dir=None if out is None else str(out),
                      quiet=True, ema_decay=decay)
    trainer = Trainer(model, loss_fn, cfg, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.fit(data, data)
    return trainer


def test_ema_follows_the_closed_form_and_is_what_validation_and_best_use(tmp_path):
    decay, epochs, steps_per_epoch = 0.9, 3, 2
    trainer = _constant_gradient_run(tmp_path, epochs, decay)
    w, avg = 2.0, 2.0
    for t in range(1, epochs * steps_per_epoch + 1):
        w -= 0.1
        d = min(decay, (1 + t) / (10 + t))
        avg = d * avg + (1 - d) * w
    assert trainer.ema_steps == epochs * steps_per_epoch
    assert trainer.model.weight.item() == pytest.approx(w, abs=1e-6)  # raw weights train on
    assert trainer.ema_state["weight"].item() == pytest.approx(avg, abs=1e-6)
    # validation loss = w; it is the averaged weight's value, not the raw one's
    assert trainer.history[-1]["val_loss"] == pytest.approx(avg, abs=1e-6)
    best = load_checkpoint(tmp_path / "best.pt")
    last = load_checkpoint(tmp_path / "last.pt")
    assert best["model"]["weight"].item() == pytest.approx(avg, abs=1e-6)
    assert last["model"]["weight"].item() == pytest.approx(w, abs=1e-6)
    assert last["ema"]["weight"].item() == pytest.approx(avg, abs=1e-6)
    trainer.load_best()
    assert trainer.model.weight.item() == pytest.approx(avg, abs=1e-6)
    # in memory (no out_dir) load_best gives the average too
    mem = _constant_gradient_run(None, epochs, decay)
    mem.load_best()
    assert mem.model.weight.item() == pytest.approx(avg, abs=1e-6)


def test_ema_resume_is_identical_to_one_run(tmp_path):
    straight = _constant_gradient_run(tmp_path / "a", 4, 0.95)
    _constant_gradient_run(tmp_path / "b", 2, 0.95)
    resumed = _constant_gradient_run(tmp_path / "b", 4, 0.95)
    assert resumed.ema_steps == straight.ema_steps == 8
    assert resumed.ema_state["weight"].item() == straight.ema_state["weight"].item()
    assert resumed.model.weight.item() == straight.model.weight.item()


def test_ema_errors(tmp_path):
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="ema_decay"):
            TrainConfig(ema_decay=bad).validate()
    _constant_gradient_run(tmp_path, 1, None)
    from pointsym.core import ConfigMismatchError

    with pytest.raises(ConfigMismatchError, match="ema_decay"):
        _constant_gradient_run(tmp_path, 2, 0.9)  # a run without averaging cannot resume with it


def test_max_minutes_and_min_lr_stop_at_an_epoch_boundary(tmp_path):
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.02, quiet=True, max_minutes=1e-9)
    trainer = Trainer(_model(), _loss, cfg)
    assert len(trainer.fit(_data(), _data(32, seed=1))) == 1 and trainer.stopped_by == "max_minutes"
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)  # 1e-2, 1e-2, 1e-3, 1e-3, 1e-4
    cfg = TrainConfig(epochs=9, batch_size=16, quiet=True, min_lr=5e-4, out_dir=str(tmp_path))
    trainer = Trainer(model, _loss, cfg, optimizer=opt, scheduler=sched)
    hist = trainer.fit(_data(), _data(32, seed=1))
    assert [h["lr"] for h in hist] == pytest.approx([1e-2, 1e-3, 1e-3, 1e-4])
    assert trainer.stopped_by == "min_lr"
    full = Trainer(_model(), _loss, TrainConfig(epochs=2, batch_size=16, quiet=True))
    full.fit(_data())
    assert full.stopped_by == "epochs"
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(max_minutes=0).validate()
