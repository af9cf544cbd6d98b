"""Pixel-wise SOAP pipeline (paper 000): Algorithm 1, data set, invariance, models, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from pointsym.datasets import load_mnist
from pointsym.experiments.pixel_soap import cli as ps
from pointsym.testing import assert_invariant

# Small SOAP settings keep every test fast; the invariance does not depend on the size.
SMALL = ps.SOAPParams(r_cut=10.0, n_max=3, l_max=3, sigma=1.5)


def _backends() -> list[str]:
    out = ["dscribe"]
    try:
        ps.make_soap(SMALL, "pointsym")
    except Exception:  # noqa: BLE001 - pointsym's SOAP is optional here
        return out
    return out + ["pointsym"]


# ---------------------------------------------------------------------------- Algorithm 1
def test_image_to_points_hand_made_exact() -> None:
    image = np.array([[0, 9, 10, 255],
                      [19, 20, 0, 99],
                      [5, 100, 101, 0]], dtype=np.uint8)
    expected = np.array([[2, 0, 1], [3, 0, 25],  # row 0: x = column, y = row, z = floor(I / 10)
                         [0, 1, 1], [1, 1, 2], [3, 1, 9],
                         [1, 2, 10], [2, 2, 10]], dtype=np.float64)
    points, pixels = ps.image_to_points(image, return_pixels=True)
    assert points.dtype == np.float64
    np.testing.assert_array_equal(points, expected)
    np.testing.assert_array_equal(pixels, expected[:, [1, 0]].astype(np.int64))
    for k, (r, c) in enumerate(pixels):
        assert ps.pixel_point_index(image, int(r), int(c)) == k


def test_z_floor_and_zero_pixel_rule_on_float_non_square_image() -> None:
    image = np.array([[9.999, 10.0, 19.99, -50.0, 0.0],
                      [20.0, 255.0, 0.5, 30.7, 10.0 - 1e-9]])
    points = ps.image_to_points(image)
    # 9.999, -50, 0, 0.5 and 10 - 1e-9 floor to z <= 0 and are dropped.
    np.testing.assert_array_equal(points, [[1, 0, 1], [2, 0, 1], [0, 1, 2], [1, 1, 25], [3, 1, 3]])
    with pytest.raises(ValueError, match="not a point"):
        ps.pixel_point_index(image, 0, 0)


def test_gaussian_displacement_matches_algorithm_order_and_seed() -> None:
    image = np.array([[0, 200, 50], [120, 0, 90]], dtype=np.uint8)
    clean = ps.image_to_points(image)
    noisy = ps.image_to_points(image, 0.7, np.random.default_rng(3))
    # One N(0, sigma^2) draw per coordinate, x then y then z for each kept pixel in row-major order.
    np.testing.assert_allclose(noisy, clean + np.random.default_rng(3).normal(0.0, 0.7, size=clean.shape), rtol=0,
                               atol=0)
    np.testing.assert_array_equal(noisy, ps.image_to_points(image, 0.7, 3))
    assert not np.array_equal(noisy, ps.image_to_points(image, 0.7, 4))


@pytest.mark.parametrize(
    ("image", "exc", "match"),
    [
        (np.array([[0.0, np.nan], [20.0, 30.0]]), ValueError, "NaN"),
        (np.zeros((2, 3, 3)), ValueError, r"2D grayscale.*\(2, 3, 3\)"),
        (np.full((4, 4, 3), 200.0), ValueError, "RGB"),
        (np.arange(5.0) * 30, ValueError, r"shape \(5,\)"),
        (np.zeros((28, 28), dtype=np.uint8), ValueError, "no pixel with floor"),
        (np.full((5, 5), 0.9), ValueError, "multiply those by 255"),
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.array([["a", "b"]]), TypeError, "image"),
    ],
)
def test_bad_images_raise_clear_errors(image: np.ndarray, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        ps.image_to_points(image)


def test_bad_sigma_disturbance() -> None:
    with pytest.raises(ValueError, match="sigma_disturbance"):
        ps.image_to_points(np.full((3, 3), 100.0), -0.1)


def test_one_image_to_points_shared_with_descriptors() -> None:
    from pointsym import descriptors
    from pointsym.experiments.pixel_soap import data as _pixel_data

    assert ps.image_to_points is descriptors.image_to_points
    assert _pixel_data.image_to_points is descriptors.image_to_points


def test_n_points_keeps_the_brightest_in_row_major_order_with_pixels_and_noise() -> None:
    image = np.array([[0, 9, 10, 255],
                      [19, 20, 0, 99],
                      [5, 100, 101, 0]], dtype=np.uint8)
    # The 3 brightest: 255 at (0, 3), 101 at (2, 2), 100 at (2, 1); returned row-major.
    points, pixels = ps.image_to_points(image, n_points=3, return_pixels=True)
    np.testing.assert_array_equal(pixels, [[0, 3], [2, 1], [2, 2]])
    np.testing.assert_array_equal(points, [[3, 0, 25], [1, 2, 10], [2, 2, 10]])
    all_points = ps.image_to_points(image)
    kept = [ps.pixel_point_index(image, int(r), int(c)) for r, c in pixels]
    np.testing.assert_array_equal(points, all_points[kept])
    # The displacement is drawn for the selected points only, in row-major order.
    noisy = ps.image_to_points(image, 0.5, 7, n_points=3)
    np.testing.assert_array_equal(noisy, points + np.random.default_rng(7).normal(0.0, 0.5, size=(3, 3)))


# ---------------------------------------------------------------------------- transforms and invariance
@pytest.mark.parametrize("name", ps.TRANSFORMS)
def test_transform_pixels_follow_transform_image(name: str) -> None:
    image = np.random.default_rng(0).integers(0, 1000, size=(5, 7))
    pixels = np.argwhere(np.ones_like(image, dtype=bool))
    new = ps.transform_pixels(pixels, image.shape, name)
    moved = ps.transform_image(image, name)
    np.testing.assert_array_equal(moved[new[:, 0], new[:, 1]], image[pixels[:, 0], pixels[:, 1]])


@pytest.mark.parametrize("backend", _backends())
def test_pixel_spectrum_invariant_under_image_rotation_and_mirror(backend: str) -> None:
    x, _ = load_mnist("test", source="embedded")
    images = x[:3]
    rng = np.random.default_rng(1)
    idx, pixels = ps.sample_pixels(images, 6, rng)
    soap, info = ps.make_soap(SMALL, backend)
    assert info["backend"] == backend
    ref = ps.pixel_spectra(images, idx, pixels, soap)
    assert ref.shape == (6, SMALL.n_features) and ref.dtype == np.float64
    assert np.all(np.abs(ref).max(axis=1) > 0)
    for name in ps.TRANSFORMS[1:]:
        moved = ps.pixel_spectra(ps.transform_image(images, name), idx,
                                 ps.transform_pixels(pixels, images.shape[1:], name), soap)
        np.testing.assert_allclose(moved, ref, rtol=0, atol=1e-9 * np.abs(ref).max(), err_msg=name)
    # A different pixel of the same digit has a different spectrum (the check above is not vacuous).
    far = []
    for k, (r, c) in zip(idx, pixels, strict=True):
        kept = np.argwhere(images[k] >= 10)
        far.append(kept[np.argmax(np.abs(kept - [r, c]).sum(1))])
    other = ps.pixel_spectra(images, idx, np.array(far), soap)
    assert np.abs(other - ref).max() > 1e-3 * np.abs(ref).max()


def test_pixel_spectrum_invariant_under_3d_rotations_and_reflections() -> None:
    x, _ = load_mnist("test", source="embedded")
    points = ps.image_to_points(x[1])
    soap, _ = ps.make_soap(SMALL, "dscribe")
    centre = len(points) // 2

    def spectrum(positions: np.ndarray) -> np.ndarray:
        from pointsym.experiments.pixel_soap.data import _create

        return _create(soap, [positions], [centre])[0]

    for kind in ("rotation", "reflection", "translation"):
        assert_invariant(spectrum, points, kind, n_trials=3)


# ---------------------------------------------------------------------------- data set (Algorithm 3)
def test_spectra_dataset_scaler_fitted_on_train_only(tmp_path) -> None:  # noqa: ANN001
    ds = ps.build_spectra_dataset(SMALL, n_train_val=60, n_test=20, seed=3, source="embedded", backend="dscribe",
                                  cache_dir=tmp_path)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (48, 12, 20)
    np.testing.assert_allclose(ds.scaler.center_, np.median(ds.train.X, axis=0))
    q75, q25 = np.percentile(ds.train.X, [75, 25], axis=0)
    np.testing.assert_allclose(ds.scaler.scale_, np.where(q75 - q25 > 0, q75 - q25, 1.0))
    everything = np.concatenate([ds.train.X, ds.val.X, ds.test.X])
    assert not np.allclose(ds.scaler.center_, np.median(everything, axis=0))
    X_tr, y_tr = ds.scaled("train")
    assert X_tr.dtype == np.float32 and X_tr.shape == (48, SMALL.n_features)
    np.testing.assert_allclose(np.median(X_tr, axis=0), 0.0, atol=1e-5)
    # Labels are the digits of the sampled images; centres are kept pixels; test images are distinct.
    x_tr, yl_tr = load_mnist("train", source="embedded")
    x_te, _ = load_mnist("test", source="embedded")
    np.testing.assert_array_equal(y_tr, yl_tr[ds.train.image_index])
    assert np.all(x_tr[ds.train.image_index, ds.train.pixels[:, 0], ds.train.pixels[:, 1]] >= 10)
    assert np.all(x_te[ds.test.image_index, ds.test.pixels[:, 0], ds.test.pixels[:, 1]] >= 10)
    assert len(np.unique(ds.test.image_index)) == 20
    # Second build: every spectrum comes from the cache and is identical.
    assert len(list(tmp_path.glob("spectra_*.npz"))) == 2
    again = ps.build_spectra_dataset(SMALL, n_train_val=60, n_test=20, seed=3, source="embedded", backend="dscribe",
                                     cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train.X, ds.train.X)
    np.testing.assert_array_equal(again.test.X, ds.test.X)


def test_pixel_spectra_cache_resumes_from_chunks(tmp_path) -> None:  # noqa: ANN001
    x, _ = load_mnist("test", source="embedded")
    idx, pixels = ps.sample_pixels(x[:10], 10, 0)
    soap, _ = ps.make_soap(SMALL, "dscribe")
    direct = ps.pixel_spectra(x, idx, pixels, soap)
    # Interrupt after the first chunk: the partial chunk stays, the final file is not written.
    calls = {"n": 0}

    class Interrupting:
        def create(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            calls["n"] += 1
            if calls["n"] > 1:
                raise KeyboardInterrupt
            return soap.create(*a, **k)

    with pytest.raises(KeyboardInterrupt):
        ps.pixel_spectra(x, idx, pixels, Interrupting(), cache_dir=tmp_path, chunk_size=4, batch_size=4)
    assert len(list(tmp_path.glob("*.partial/chunk_*.npy"))) == 1
    resumed = ps.pixel_spectra(x, idx, pixels, soap, cache_dir=tmp_path, chunk_size=4, batch_size=4)
    np.testing.assert_allclose(resumed, direct, rtol=1e-6)
    assert not list(tmp_path.glob("*.partial"))


def test_sample_pixels_errors() -> None:
    with pytest.raises(ValueError, match="no pixel"):
        ps.sample_pixels(np.zeros((2, 4, 4)), 3, 0)
    with pytest.raises(ValueError, match="n_samples <= len"):
        ps.sample_pixels(np.full((2, 4, 4), 200), 3, 0, one_per_image=True)


# ---------------------------------------------------------------------------- models and metrics
def test_models_shapes_and_input_checks() -> None:
    mlp = ps.PixelMLP(12, (8, 6, 4))
    assert mlp(torch.randn(5, 12)).shape == (5, 10)
    assert "dropout=0.1" in repr(mlp)
    with pytest.raises(ValueError, match=r"\(batch, 12\)"):
        mlp(torch.randn(5, 11))
    with pytest.raises(ValueError, match="dropout"):
        ps.PixelMLP(12, dropout=1.0)
    deep = ps.DeepAutoencoder(308, 20, h_m=4)
    assert deep.encoder[0].out_features == 1232 and deep.encode(torch.randn(3, 308)).shape == (3, 20)
    assert ps.LinearAutoencoder(308, 7)(torch.randn(2, 308)).shape == (2, 308)
    cnn = ps.PatchCNN(11)
    assert cnn(torch.rand(4, 1, 11, 11)).shape == (4, 10)


def test_classification_metrics_against_hand_computation() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 2, 2])
    m = ps.classification_metrics(y, p, n_classes=3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["precision_macro"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert m["recall_weighted"] == pytest.approx(m["accuracy"])
    np.testing.assert_allclose(m["confusion"].sum(axis=1), 1.0)


# ---------------------------------------------------------------------------- CLI end to end (tiny)
def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    ps.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_train_noise_rotations_compress_end_to_end(tmp_path) -> None:  # noqa: ANN001
    out = str(tmp_path)
    small = ["--r-cut", "10", "--n-max", "3", "--l-max", "2", "--sigma", "1.5"]
    common = ["--out", out, "--quiet", "--seed", "1"]
    assert _run(["pixel-soap", "train", *common, *small, "--source", "embedded", "--backend", "dscribe",
                 "--max-train", "300", "--max-test", "40", "--epochs", "2", "--hidden", "16,8", "--name", "tiny"]) == 0
    rec = json.loads((tmp_path / "tiny.json").read_text())
    for key in ("test_accuracy", "test_recall", "test_precision", "test_f1", "params", "epochs", "command"):
        assert key in rec
    assert rec["epochs"] == 2 and rec["backend"]["backend"] == "dscribe"
    assert rec["params"]["n_features"] == 18 and 0.0 <= rec["test_accuracy"] <= 1.0
    assert (tmp_path / "tiny_confusion.png").stat().st_size > 1000
    bundle = ps.load_pixel_model(tmp_path / "checkpoints" / "tiny" / "model.pt")
    assert bundle["model"].n_features == 18
    # Resume: a second call with more epochs continues from the checkpoint (3 epochs in total).
    assert _run(["pixel-soap", "train", *common, *small, "--source", "embedded", "--backend", "dscribe",
                 "--max-train", "300", "--max-test", "40", "--epochs", "3", "--hidden", "16,8", "--name", "tiny"]) == 0
    rec2 = json.loads((tmp_path / "tiny.json").read_text())
    assert rec2["epochs"] == 3 and rec2["history"][:2] == rec["history"]

    assert _run(["pixel-soap", "noise", *common, "--model", "tiny", "--max-test", "10", "--steps", "2"]) == 0
    noise = json.loads((tmp_path / "noise.json").read_text())
    assert [round(r["sigma_disturbance"], 6) for r in noise["curve"]] == [0.1, 5.0]
    assert _run(["pixel-soap", "rotations", *common, "--model", "tiny", "--max-test", "10", "--cnn-train", "40",
                 "--cnn-epochs", "1", "--patch-half", "5"]) == 0
    rot = json.loads((tmp_path / "rotations.json").read_text())
    soap_acc = {r["transform"]: r["soap_mlp_accuracy"] for r in rot["results"]}
    assert len(set(soap_acc.values())) == 1  # invariant features -> identical predictions
    assert max(r["soap_max_rel_spectrum_change"] for r in rot["results"]) < 1e-9
    assert _run(["pixel-soap", "compress", *common, "--model", "tiny", "--h-e-pca", "2,18", "--h-e-linear", "4",
                 "--deep-grid", "2:4", "--ae-train", "100", "--ae-epochs", "1", "--ae-lr", "1e-3"]) == 0
    comp = json.loads((tmp_path / "compress.json").read_text())
    pca = {r["h_e"]: r for r in comp["curves"]["PCA"]}
    # Keeping all 18 principal components reconstructs exactly and keeps the baseline accuracy.
    assert pca[18]["val_mse"] < 1e-8 and pca[18]["test_accuracy"] == comp["baseline_test_accuracy"]
    assert pca[2]["val_mse"] > pca[18]["val_mse"]
    assert set(comp["curves"]) == {"PCA", "linear AE", "deep AE h_m=2"}
