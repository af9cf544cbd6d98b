"""The carbon DOS data set: generator (cages, MD, xTB, cache, determinism) and loader."""

from __future__ import annotations

import numpy as np
import pytest

from pointsym.datasets import CARBON_DOS_FAMILIES, energy_window, load_carbon_dos
from pointsym.electronic import band_energy, fermi_level

pytest.importorskip("tblite", reason="the DOS generator needs the dosdata extra (tblite)")
pytest.importorskip("matscipy", reason="the DOS generator needs the dosdata extra (matscipy)")


def _tiny_config(**kw):
    from pointsym.experiments.dos.generate import DOSDataConfig
    from pointsym.experiments.dos.structures import MDSettings

    base = dict(families=("C20",), temperatures=(300.0,), n_train=2, n_val=1, n_test=1,
                md=MDSettings(equilibration_steps=20, interval_steps=5))
    base.update(kw)
    return DOSDataConfig(**base)


def test_c20_cage_is_a_fullerene():
    pytest.importorskip("sage_wheels", reason="the C20/C40 cages need passagemath-buckygen")
    from pointsym.experiments.dos.structures import buckygen_fullerenes, build_pristine, planar_faces

    graphs = buckygen_fullerenes(40)
    assert len(graphs) == 40  # the 40 isomers of C40 (Fowler & Manolopoulos)
    assert len(buckygen_fullerenes(20)) == 1
    faces = planar_faces(buckygen_fullerenes(20)[0])
    assert sorted(len(f) for f in faces) == [5] * 12
    atoms = build_pristine("C20")
    d = atoms.get_all_distances()
    nearest = np.sort(d + 1e3 * np.eye(20), axis=1)[:, :3]
    assert np.all(nearest < 1.6) and np.all(np.sort(d, axis=1)[:, 4] > 2.0)  # 3-coordinated, bonds ~1.45 A


def test_generator_deterministic_and_resumable(tmp_path):
    pytest.importorskip("sage_wheels", reason="the C20 cage needs passagemath-buckygen")
    import ase.io

    from pointsym.experiments.dos.generate import generate

    cfg = _tiny_config()
    m1 = generate(cfg, tmp_path / "a", quiet=True)
    m2 = generate(cfg, tmp_path / "b", quiet=True)
    assert m1["n_structures"] == m2["n_structures"] == 4 and m1["missing"] == 0
    a = ase.io.read(tmp_path / "a" / "carbon_dos_xtb.extxyz.gz", ":")
    b = ase.io.read(tmp_path / "b" / "carbon_dos_xtb.extxyz.gz", ":")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_allclose(x.info["eigenvalues"], y.info["eigenvalues"], rtol=0, atol=1e-9)
        assert x.info["split"] == y.info["split"]
        assert x.info["n_electrons"] == pytest.approx(80.0)  # 4 valence electrons per carbon
    assert sorted(x.info["split"] for x in a) == ["test", "train", "train", "val"]
    # the test snapshot comes from another trajectory than the training ones
    assert {x.info["traj"] for x in a if x.info["split"] == "test"} == {"b"}
    # rerun: everything is cached, nothing is recomputed
    cache = sorted((tmp_path / "a" / "cache").rglob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cache]
    m3 = generate(cfg, tmp_path / "a", quiet=True)
    assert m3["n_structures"] == 4
    assert [p.stat().st_mtime_ns for p in cache] == stamps


def test_interlayer_forces_match_finite_differences():
    from pointsym.experiments.dos.structures import InterlayerLJ, build_pristine

    atoms = build_pristine("Graphite")
    atoms.rattle(0.05, seed=3)
    atoms.calc = InterlayerLJ()
    f = atoms.get_forces()
    h = 1e-5
    for k, axis in ((0, 2), (7, 0)):
        e = []
        for sign in (1, -1):
            b = atoms.copy()
            b.calc = InterlayerLJ()
            b.positions[k, axis] += sign * h
            e.append(b.get_potential_energy())
        assert f[k, axis] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-9)
    # layers bind: about -35 meV/atom with the 8.5 A cutoff
    assert -0.05 < atoms.get_potential_energy() / len(atoms) < -0.02


def test_bad_config_names_the_field():
    from pointsym.experiments.dos.generate import DOSDataConfig

    with pytest.raises(ValueError, match="family"):
        DOSDataConfig(families=("Diamond",))
    with pytest.raises(ValueError, match="method"):
        DOSDataConfig(method="vasp")


def test_embedded_subset_loads_every_family():
    d = load_carbon_dos(source="embedded")
    assert set(d.family) == set(CARBON_DOS_FAMILIES)
    assert {"train", "val", "test"} <= set(d.split)
    assert d.dos.shape == (len(d), d.energies.size) and np.all(d.dos >= 0)
    # the window holds every occupied state: 4 electrons per carbon reached inside it
    total = d.dos * d.n_atoms[:, None]
    e_f = fermi_level(d.energies, total, d.n_electrons)
    assert np.all(np.abs(e_f) < 0.5)  # aligned at (HOMO + LUMO) / 2
    e_b = band_energy(d.energies, total, e_f, d.n_atoms)
    assert np.all((e_b > -30) & (e_b < -15))
    np.testing.assert_allclose(d.idos, np.cumsum(d.dos, axis=1) * d.step)
    sub = d.subset(d.split == "test")
    assert set(sub.split) == {"test"} and len(sub) == int((d.split == "test").sum())


def test_absolute_alignment_shifts_the_band_energy_by_four_times_midgap():
    # same eigenvalues on two grids: with every occupied state inside both windows the band energy
    # on the absolute scale is the midgap one plus (N_e / N) * (HOMO + LUMO) / 2 (sigma << the windows)
    mid = load_carbon_dos(source="embedded", families=["C60", "Graphene"])
    absolute = load_carbon_dos(source="embedded", families=["C60", "Graphene"], align="none")
    assert absolute.align == "none" and mid.align == "midgap"
    assert (absolute.energies[0], absolute.energies[-1]) == pytest.approx((-21.0, -6.1))
    assert np.all(absolute.e_align == 0.0) and np.all(mid.e_align < -8.0)
    results = []
    for d in (mid, absolute):
        total = d.dos * d.n_atoms[:, None]
        e_f = fermi_level(d.energies, total, d.n_electrons)
        results.append((e_f, band_energy(d.energies, total, e_f, d.n_atoms)))
    (ef_mid, eb_mid), (ef_abs, eb_abs) = results
    np.testing.assert_allclose(ef_abs, ef_mid + mid.e_align, atol=0.011)  # the 0.01 eV Fermi search grid
    np.testing.assert_allclose(eb_abs, eb_mid + mid.n_electrons / mid.n_atoms * mid.e_align, atol=0.05)
    with pytest.raises(ValueError, match="default energy window"):
        load_carbon_dos(source="embedded", method="gpaw", align="none")
    # one given end keeps the other default; both given need no default
    assert energy_window("xtb", "none", e_max=-5.0) == (-21.0, -5.0)
    assert energy_window("gpaw", "none", -30.0, 0.0) == (-30.0, 0.0)


def test_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="align"):
        load_carbon_dos(source="embedded", align="fermi")
    with pytest.raises(ValueError, match="split"):
        load_carbon_dos("training", source="embedded")
    with pytest.raises(ValueError, match="families"):
        load_carbon_dos(source="embedded", families=["Diamond"])
    with pytest.raises(ValueError, match="sigma"):
        load_carbon_dos(source="embedded", sigma=0.0)
    # a window that cuts into the occupied band is refused, with the window that would hold it
    with pytest.raises(ValueError, match=r"e_min=-8 eV cuts into the occupied band.*pass e_min <= -1\d\.\d"):
        load_carbon_dos(source="embedded", e_min=-8.0)
    with pytest.raises(ValueError, match=r"e_max=0.2 eV cuts into the occupied band.*pass e_max >= 0\.[6-9]"):
        load_carbon_dos(source="embedded", e_max=0.2)


def test_resume_from_the_assembled_file(tmp_path, monkeypatch):
    """A fresh checkout has only the committed extxyz: the cache is rebuilt from it and the MD replayed."""
    pytest.importorskip("sage_wheels", reason="the C20 cage needs passagemath-buckygen")
    import shutil

    import pointsym.experiments.dos.generate as gen

    cfg = _tiny_config()
    gen.generate(cfg, tmp_path, quiet=True)
    shutil.rmtree(tmp_path / "cache")
    calls = []
    real = gen._compute
    monkeypatch.setattr(gen, "_compute", lambda atoms, method: calls.append(1) or real(atoms, method))
    assert gen.generate(cfg, tmp_path, quiet=True)["n_structures"] == 4
    assert calls == []  # everything restored, nothing recomputed
    bigger = _tiny_config(n_train=3)  # one more snapshot: the replayed MD must match the stored ones
    m = gen.generate(bigger, tmp_path, quiet=True)
    assert m["n_structures"] == 5 and len(calls) >= 1
