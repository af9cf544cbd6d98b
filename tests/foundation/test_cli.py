"""The command line: help, data listing, demo on embedded data, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pointsym.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "data" in out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--quiet" in capsys.readouterr().out


def test_console_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "pointsym", "--version"], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("pointsym ")


def test_demo_data_stage_writes_report(tmp_path):
    assert main(["demo", "--stages", "data", "--out", str(tmp_path), "--quiet"]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "data_mnist.png" in html and (tmp_path / "data_mnist.png").stat().st_size > 1000
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sections"][0]["metrics"]["distinct_vertex_permutations"] == 60


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["demo", "--stages", "nope", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Unknown demo stage" in err and "Traceback" not in err
    assert main(["demo", "--device", "cuda:7", "--out", str(tmp_path), "--quiet"]) in (0, 1, 2)


def test_report_tables_use_readable_names_and_rounding():
    from pointsym.experiments.common.report import format_value, readable_name

    assert readable_name("bare_forces_mae_ev_per_A") == "Bare forces MAE (eV/Å)"
    assert readable_name("ecse_energy_mae_mev_per_atom") == "ECSE energy MAE (meV/atom)"
    assert readable_name("train_seconds") == "Training time (s)"
    assert readable_name("model_position_error_actual").endswith("(Å)")
    assert format_value(0.435958) == "0.436"
    assert format_value(1.2e-14) == "1.20e-14"
    assert format_value(123456.7) == "123,457"
    assert format_value(12) == "12"
