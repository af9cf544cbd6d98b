"""Fault injection: a training run killed at random points (SIGINT and SIGKILL) and resumed ends
exactly where an uninterrupted run ends, and never leaves an unreadable checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pointsym.training import load_checkpoint

SCRIPT = Path(__file__).with_name("_fault_train.py")


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _run_to_end(out: Path) -> None:
    proc = _start(out)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err


def _final(out: Path) -> tuple[dict, list]:
    weights = torch.load(out / "final.pt")
    history = json.loads((out / "metrics.json").read_text())["history"]
    return weights, history


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = _start(out)
    t0 = time.perf_counter()  # from "ready": the training itself
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return _final(out), time.perf_counter() - t0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, reference, sig, seed):
    (ref_weights, ref_history), duration = reference
    rng = np.random.default_rng(seed + 100 * int(sig))
    out = tmp_path / "run"
    kills = 0
    # Two interruptions at random points of the run, then let it finish. The delays are
    # fractions of the reference run's training time; a signal that arrives after the run
    # has finished (a slow start, a loaded machine) is retried with a shorter delay.
    fraction_max = 0.6
    for _ in range(8):
        if kills == 2:
            break
        proc = _start(out)
        time.sleep(float(rng.uniform(0.02, fraction_max)) * duration)
        if proc.poll() is None:
            proc.send_signal(sig)
            kills += 1
        proc.communicate(timeout=240)
        # Whatever moment the signal hit, every checkpoint on disk is readable.
        for name in ("last.pt", "best.pt"):
            if (out / name).exists():
                load_checkpoint(out / name)
        if (out / "final.pt").exists():  # it finished before the signal: start this try afresh
            shutil.rmtree(out)
            fraction_max /= 2
    _run_to_end(out)
    weights, history = _final(out)
    assert kills >= 1
    for key, value in ref_weights.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in ref_history]
