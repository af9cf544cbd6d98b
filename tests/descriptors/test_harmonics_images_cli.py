"""Solid harmonics, the image-to-points lifting and the ``pointsym soap`` command."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.io import write

from helpers import max_rel
from pointsym.descriptors import SOAP, image_to_points, solid_harmonics
from pointsym.experiments.soap import cli as soap_cli
from pointsym.geometry import random_rotation


def test_solid_harmonics_match_scipy():
    from scipy.special import sph_harm_y

    v = np.random.default_rng(0).normal(size=(40, 3)) * 1.7
    L = 12
    Y = solid_harmonics(torch.tensor(v), L).numpy()
    r = np.linalg.norm(v, axis=1)
    theta, phi = np.arccos(v[:, 2] / r), np.arctan2(v[:, 1], v[:, 0])
    for l in range(L + 1):
        for m in range(-l, l + 1):
            c = sph_harm_y(l, abs(m), theta, phi) * (-1) ** m  # scipy includes the Condon-Shortley phase
            ref = np.sqrt(2) * (c.real if m > 0 else c.imag) if m else c.real
            np.testing.assert_allclose(Y[:, l * l + l + m], ref * r**l, rtol=1e-10, atol=1e-12 * r.max() ** l)


def test_solid_harmonics_rotate_within_each_degree():
    """Rotation acts orthogonally inside each l block: norms per degree are invariant."""
    v = torch.tensor(np.random.default_rng(1).normal(size=(30, 3)))
    R = torch.tensor(random_rotation(seed=2))
    a, b = solid_harmonics(v, 8), solid_harmonics(v @ R.T, 8)
    for l in range(9):
        sl = slice(l * l, (l + 1) ** 2)
        torch.testing.assert_close(a[:, sl].norm(dim=1), b[:, sl].norm(dim=1), rtol=1e-12, atol=1e-12)


def test_solid_harmonics_gradients_are_finite_at_the_origin():
    v = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    out = solid_harmonics(v, 5)
    assert out[0, 0].item() == pytest.approx(0.5 / np.sqrt(np.pi)) and torch.all(out[:, 1:] == 0)
    (out**2).sum().backward()
    assert torch.isfinite(v.grad).all()


def test_image_to_points():
    img = np.zeros((5, 6), dtype=np.uint8)
    img[1, 2], img[3, 4], img[4, 0], img[2, 2] = 255, 30, 9, 30
    pts = image_to_points(img)
    # (column, row, floor(I / 10)); I = 9 is dropped (z = 0); row-major order.
    np.testing.assert_array_equal(pts, [[2, 1, 25], [2, 2, 3], [4, 3, 3]])
    # n_points keeps the brightest (255, then the first 30 in row-major order), returned row-major.
    np.testing.assert_array_equal(image_to_points(img, n_points=2), pts[:2])
    with pytest.raises(ValueError, match="image"):
        image_to_points(np.zeros(5))


def test_image_to_points_n_points_keeps_brightest_in_row_major_order():
    img = np.zeros((3, 4), dtype=np.uint8)
    img[0, 1], img[0, 3], img[1, 0], img[2, 2], img[2, 3] = 40, 200, 40, 250, 12
    # Brightest two: (2, 2) I=250 and (0, 3) I=200; returned row-major, so (0, 3) comes first.
    pts, pix = image_to_points(img, n_points=2, return_pixels=True)
    np.testing.assert_array_equal(pts, [[3, 0, 20], [2, 2, 25]])
    np.testing.assert_array_equal(pix, [[0, 3], [2, 2]])
    # The tie at I = 40 is broken row-major: (0, 1) before (1, 0).
    np.testing.assert_array_equal(image_to_points(img, n_points=3), [[1, 0, 4], [3, 0, 20], [2, 2, 25]])
    # More than available keeps every point; intensity_step changes heights and the threshold.
    np.testing.assert_array_equal(image_to_points(img, n_points=99), image_to_points(img))
    np.testing.assert_array_equal(image_to_points(img, intensity_step=50), [[3, 0, 4], [2, 2, 5]])
    with pytest.raises(ValueError, match="n_points"):
        image_to_points(img, n_points=0)
    with pytest.raises(ValueError, match="intensity_step"):
        image_to_points(img, intensity_step=0)
    with pytest.raises(ValueError, match=r"floor\(I / 255\).*intensity_step"):
        image_to_points(img, intensity_step=255)


def test_image_to_points_n_points_is_exactly_the_n_brightest():
    img = np.random.default_rng(0).integers(0, 256, size=(28, 28))
    pts, pix = image_to_points(img, n_points=150, return_pixels=True)
    assert pts.shape == (150, 3)
    flat = pix[:, 0] * 28 + pix[:, 1]
    assert np.all(np.diff(flat) > 0)  # row-major, no duplicates
    # The reference selection: stable sort of all pixels by decreasing intensity (ties row-major).
    ref = np.sort(np.argsort(-img.ravel(), kind="stable")[:150])
    np.testing.assert_array_equal(flat, ref)
    assert img.ravel()[flat].min() >= np.delete(img.ravel(), flat).max()
    np.testing.assert_array_equal(pts[:, 2], img.ravel()[flat] // 10)


def _run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    soap_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_writes_the_same_features_as_the_api(tmp_path):
    mols = [molecule("H2O"), molecule("CH4"), molecule("NH3")]
    path = tmp_path / "mols.xyz"
    write(path, mols)
    out = tmp_path / "f.npz"
    _run_cli(["soap", str(path), "-o", str(out), "--r-cut", "3", "--n-max", "2", "--l-max", "2",
              "--sigma", "0.5", "--quiet", "--batch-size", "2"])
    data = np.load(out)
    soap = SOAP(species=[1, 6, 7, 8], r_cut=3.0, n_max=2, l_max=2, sigma=0.5)
    ref = np.concatenate(soap.create(mols))
    assert max_rel(data["features"], ref) <= 1e-12
    assert data["structure"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    assert json.loads(str(data["params"]))["r_cut"] == 3.0


def test_cli_periodic_npy_and_errors(tmp_path):
    path = tmp_path / "si.xyz"
    write(path, [bulk("Si", "diamond", a=5.43)] * 2)
    out = tmp_path / "si.npy"
    _run_cli(["soap", str(path), "-o", str(out), "--r-cut", "4", "--n-max", "2", "--l-max", "2",
              "--periodic", "--compression", "crossover", "--quiet"])
    assert np.load(out).shape == (2, 2, 2 * 3 // 2 * 3)  # crossover: S n (n + 1) / 2 (l + 1)
    with pytest.raises(ValueError, match="output"):
        _run_cli(["soap", str(path), "-o", str(tmp_path / "x.txt"), "--n-max", "2", "--l-max", "2", "--r-cut", "3"])
    with pytest.raises(FileNotFoundError):
        _run_cli(["soap", str(tmp_path / "missing.xyz"), "-o", str(out), "--n-max", "2", "--l-max", "2",
                  "--r-cut", "3"])
