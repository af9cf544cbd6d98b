"""Loaders on the embedded subsets (always) and on the full data root (when present)."""

from __future__ import annotations

import numpy as np
import pytest

from pointsym.datasets import (
    DataNotFoundError,
    load_atomistic,
    load_crystals,
    load_mnist,
    load_modelnet10,
    read_atomistic,
    resolve_data_root,
)


def test_embedded_mnist():
    x, y = load_mnist("train", source="embedded")
    assert x.shape == (2000, 28, 28) and x.dtype == np.uint8 and y.shape == (2000,)
    assert y[:5].tolist() == [5, 0, 4, 1, 9]  # first MNIST labels
    xt, yt = load_mnist("test", source="embedded")
    assert xt.shape == (500, 28, 28) and set(np.unique(yt)) == set(range(10))


def test_embedded_modelnet10():
    pts, labels, names = load_modelnet10("train", source="embedded")
    assert pts.shape == (200, 1024, 3) and pts.dtype == np.float32
    assert np.bincount(labels).tolist() == [20] * 10 and names[0] == "bathtub" and len(names) == 10
    assert np.abs(pts).max() <= 1.0
    # points lie on the 1/16 voxel-centre lattice
    np.testing.assert_allclose(((pts + 1) * 16 - 0.5) % 1, 0, atol=1e-5)
    sub, _, _ = load_modelnet10("test", n_points=256, source="embedded")
    assert sub.shape == (100, 256, 3)
    # the subsample is a subset of the full cloud of each shape
    full, _, _ = load_modelnet10("test", source="embedded")
    assert all({tuple(p) for p in sub[k]} <= {tuple(p) for p in full[k]} for k in range(3))


def test_embedded_crystals_and_atomistic():
    crystals = load_crystals("lim_l6", "train", source="embedded")
    assert len(crystals) == 60 and all(a.pbc.all() for a in crystals)
    frac = np.concatenate([a.get_scaled_positions(wrap=False) for a in crystals])
    assert frac.min() > -1e-6 and frac.max() < 1 + 1e-6  # positions inside the stated cell
    perov = load_crystals("perov_5", "val", source="embedded")
    assert len(perov) == 20 and all(len(a) == 5 for a in perov) and "heat_ref" in perov[0].info
    frames = load_atomistic("Si", "train", source="embedded")
    assert len(frames) == 50
    for a in frames:
        assert set(a.get_chemical_symbols()) == {"Si"}
        assert a.arrays["forces"].shape == (len(a), 3) and np.isfinite(a.info["energy"])
        assert -5.5 < a.info["energy"] / len(a) < -4.5  # eV/atom, as in SOURCE.md
    methane = load_atomistic("methane", "val", source="embedded")
    assert len(methane) == 25 and methane[0].get_chemical_formula() == "CH4"


def test_bad_names_and_splits():
    with pytest.raises(ValueError, match="'split'"):
        load_mnist("validation", source="embedded")
    with pytest.raises(ValueError, match="'source'"):
        load_mnist("train", source="web")
    with pytest.raises(ValueError, match="'name'"):
        load_crystals("lim_l7", "train")
    with pytest.raises(ValueError, match="'split'"):
        load_atomistic("Cu", "train")
    with pytest.raises(ValueError, match="No embedded subset"):
        load_crystals("mp_20", "train", source="embedded")
    with pytest.raises(ValueError, match="'n_points'"):
        load_modelnet10("train", n_points=2048, source="embedded")


def test_missing_data_root_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("POINTSYM_DATA", str(tmp_path))
    assert resolve_data_root() == tmp_path
    with pytest.raises(DataNotFoundError) as info:
        load_mnist("train")
    msg = str(info.value)
    assert "mnist/mnist.npz" in msg and str(tmp_path) in msg and "POINTSYM_DATA" in msg and "embedded" in msg
    monkeypatch.setenv("POINTSYM_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match="POINTSYM_DATA"):
        resolve_data_root()
    with pytest.raises(DataNotFoundError, match="not a directory"):
        resolve_data_root(tmp_path / "missing")


def test_read_atomistic_unifies_force_key_and_units(tmp_path):
    import ase.io
    from ase import Atoms

    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    a.info["energy"] = -10.0
    a.arrays["force"] = np.array([[0, 0, 1.0], [0, 0, -1.0]])
    ase.io.write(tmp_path / "f.xyz", [a], format="extxyz")
    (b,) = read_atomistic(tmp_path / "f.xyz")
    np.testing.assert_allclose(b.arrays["forces"], a.arrays["force"])
    assert "force" not in b.arrays and b.info["energy"] == -10.0
    (c,) = read_atomistic(tmp_path / "f.xyz", kcal=True)
    np.testing.assert_allclose(c.info["energy"], -10.0 * 0.0433641042)


@pytest.mark.dataset
def test_full_data_shapes(data_root):
    x, y = load_mnist("train", data_dir=data_root)
    assert x.shape == (60000, 28, 28) and np.bincount(y)[0] == 5923
    pts, labels, names = load_modelnet10("test", data_dir=data_root)
    assert pts.shape == (908 - 7, 1024, 3) and len(names) == 10
    pts_all, _, _ = load_modelnet10("train", data_dir=data_root, drop_empty=False)
    assert pts_all.shape == (3991, 1024, 3)
    assert len(load_crystals("lim_l6", "val", data_dir=data_root)) == 286
    assert len(load_crystals("ICSG3D", "val", data_dir=data_root)) == 342
    assert len(load_crystals("carbon_24", "test", data_dir=data_root)) == 2030
    si = load_atomistic("Si", "test", data_dir=data_root)
    assert len(si) == 25
    eth = load_atomistic("ethanol", "all", data_dir=data_root)
    # converted from kcal/mol: about -97070 kcal/mol = -4209 eV
    assert -4300 < eth[0].info["energy"] < -4100 and np.abs(eth[0].arrays["forces"]).max() < 10
    carbon = load_atomistic("carbon", "all", data_dir=data_root)
    assert carbon[0].arrays["forces"].shape == (4, 3)
    with pytest.raises(DataNotFoundError, match="ICSG3D_test"):
        load_crystals("ICSG3D", "test", data_dir=data_root)


def test_nesf_species_indices_are_mapped_to_elements(tmp_path):
    import json

    # lim_l6 stores species indices; the embedded subset ships its index -> Z map.
    crystals = load_crystals("lim_l6", "train", source="embedded")
    assert all(a.numbers.min() >= 1 for a in crystals)
    # a file whose map is missing and that uses index 0 cannot be read as atomic numbers
    np.savez(tmp_path / "x.npz", positions=np.zeros((1, 3)), numbers=np.array([0]), offsets=np.array([0, 1]),
             lengths=np.ones((1, 3)) * 3, angles_rad=np.full((1, 3), np.pi / 2))
    from pointsym.datasets import read_crystals_npz

    with pytest.raises(ValueError, match="sidx_to_z"):
        read_crystals_npz(tmp_path / "x.npz")
    (tmp_path / "x.attr.json").write_text(json.dumps({"sidx_to_z": [26]}))
    assert read_crystals_npz(tmp_path / "x.npz")[0].get_chemical_formula() == "Fe"


@pytest.mark.dataset
def test_full_nesf_elements(data_root):
    by_id = {a.info["mpid"]: a for a in load_crystals("lim_l6", "train", data_dir=data_root)}
    assert by_id["mp-23"].get_chemical_formula() == "Ni4"  # Materials Project mp-23 is Ni
    assert by_id["mp-5229"].get_chemical_formula() == "O3SrTi"  # SrTiO3


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_read_structures_compressed_equals_plain(tmp_path, suffix):
    import ase.io
    from ase.build import bulk, molecule

    from pointsym.structures import read_structures

    frames = [bulk("Si", "diamond", a=5.43) * (2, 1, 1), molecule("H2O")]
    frames[0].info["eigenvalues"] = np.linspace(-5.0, 1.0, 7)
    frames[1].info["charge_state"] = -1.5
    plain = tmp_path / "set.extxyz"
    ase.io.write(plain, frames, format="extxyz")
    packed = tmp_path / f"set.extxyz{suffix}"
    ase.io.write(packed, frames, format="extxyz")  # ASE compresses by the suffix
    for path in (plain, packed):
        got = read_structures(path)  # the format from the name without the compression suffix
        assert [len(a) for a in got] == [4, 3]
        np.testing.assert_allclose(got[0].positions, frames[0].positions, atol=1e-8)
        np.testing.assert_allclose(got[0].info["eigenvalues"], frames[0].info["eigenvalues"])
        assert got[1].info["charge_state"] == pytest.approx(-1.5)
        assert got[1].get_chemical_symbols() == ["O", "H", "H"]
