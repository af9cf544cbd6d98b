"""create_dask / SOAP.create_dask: lazy chunked fan-out equals SOAP.create, on any Dask scheduler."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("dask")
import dask  # noqa: E402
import dask.array as da  # noqa: E402

from helpers import random_crystal, random_molecule, rattled_silicon  # noqa: E402
from pointsym.descriptors import SOAP, create_dask  # noqa: E402

KW = dict(species=["H", "C", "O"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5)
PKW = dict(species=["Na", "Cl", "K", "Si"], r_cut=3.0, n_max=2, l_max=2, sigma=0.6, periodic=True)
# Molecules of 2..7 atoms, deliberately unsorted by size.
MOLS = [random_molecule(s, seed=i) for i, s in enumerate(["H2O", "CH4", "CO", "H3COH", "H2", "C2H2O", "HCO", "OH"])]
CRYSTALS = [random_crystal(seed) for seed in range(5)]  # 5 atoms each, triclinic, periodic
MIXED_CELLS = CRYSTALS[:3] + [rattled_silicon(1)] + CRYSTALS[3:]  # 5, 5, 5, 8, 5, 5 atoms
CHUNKS = [1, 3, 100]


def assert_same(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(ref).max())))


def expected_chunks(n: int, chunk_size: int) -> tuple[int, ...]:
    return tuple(min(chunk_size, n - s) for s in range(0, n, chunk_size))


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_per_atom_variable_sizes_concatenate(chunk_size):
    soap = SOAP(**KW)
    ref = soap.create(MOLS)
    assert isinstance(ref, list)  # create: a list for structures of different sizes
    x = create_dask(soap, MOLS, chunk_size=chunk_size)
    counts = [len(m) for m in MOLS]
    assert isinstance(x, da.Array) and x.shape == (sum(counts), soap.get_number_of_features())
    assert x.chunks[0] == tuple(sum(counts[s : s + chunk_size]) for s in range(0, len(MOLS), chunk_size))
    got = x.compute()
    assert_same(got, np.concatenate(ref))
    for part, r in zip(np.split(got, np.cumsum(counts)[:-1]), ref, strict=True):  # the documented split
        assert_same(part, r)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_per_atom_equal_size_periodic_cells_stack(chunk_size):
    soap = SOAP(**PKW)
    ref = soap.create(CRYSTALS)
    x = soap.create_dask(CRYSTALS, chunk_size=chunk_size)
    assert x.shape == ref.shape == (5, 5, soap.get_number_of_features())
    assert x.chunks[0] == expected_chunks(5, chunk_size)
    assert_same(x.compute(), ref)


@pytest.mark.parametrize("average", ["inner", "outer"])
@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_averaged_molecules_and_cells(average, chunk_size):
    for kw, systems in [(KW, MOLS), (PKW, MIXED_CELLS)]:
        soap = SOAP(average=average, **kw)
        ref = soap.create(systems)
        x = create_dask(soap, systems, chunk_size=chunk_size)
        assert x.shape == ref.shape == (len(systems), soap.get_number_of_features())
        assert x.chunks[0] == expected_chunks(len(systems), chunk_size)
        assert_same(x.compute(), ref)


def test_per_atom_variable_size_periodic_cells():
    soap = SOAP(**PKW)
    ref = soap.create(MIXED_CELLS)
    assert isinstance(ref, list)
    assert_same(create_dask(soap, MIXED_CELLS, chunk_size=3).compute(), np.concatenate(ref))


def test_centers_are_split_with_their_structures():
    soap = SOAP(**KW)
    systems = MOLS[:5]
    centers = [[0], None, [1, [0.3, 0.2, 0.1]], np.array([0, 2, 3]), [[1.0, 1.0, 1.0]]]
    ref = soap.create(systems, centers=centers)
    for chunk_size in (1, 2, 100):
        x = create_dask(soap, systems, centers=centers, chunk_size=chunk_size)
        assert x.shape == (1 + len(systems[1]) + 2 + 3 + 1, soap.get_number_of_features())
        assert_same(x.compute(), np.concatenate(ref))
    # Equal centre counts on structures of different sizes stack, as create does.
    same = [[0, 1]] * 5
    assert_same(create_dask(soap, systems, centers=same, chunk_size=2).compute(), soap.create(systems, centers=same))


def test_one_structure_has_the_single_system_layout():
    for average in ("off", "inner"):
        soap = SOAP(average=average, **KW)
        ref = soap.create([MOLS[3]])
        x = create_dask(soap, [MOLS[3]], chunk_size=4)
        assert x.shape == ref.shape
        assert_same(x.compute(), ref)


def test_lazy_until_compute_and_kwargs_forwarded(monkeypatch):
    soap = SOAP(**KW)
    ref = np.concatenate(soap.create(MOLS))
    calls = []
    original = SOAP.create

    def counting(self, system, centers=None, n_jobs=None, only_physical_cores=False, verbose=False):
        calls.append((len(system), n_jobs))
        return original(self, system, centers=centers, n_jobs=n_jobs)

    monkeypatch.setattr(SOAP, "create", counting)
    x = soap.create_dask(MOLS, chunk_size=3, n_jobs=1)
    assert calls == []  # building the graph computes nothing
    assert_same(x.compute(scheduler="sync"), ref)
    assert sorted(calls) == [(2, 1), (3, 1), (3, 1)]
    assert_same(x[:4].compute(scheduler="threads"), ref[:4])  # only the first chunk's task runs
    assert len(calls) == 4


def test_float32_and_generators():
    soap = SOAP(dtype="float32", average="outer", **KW)
    x = create_dask(soap, (m for m in MOLS), chunk_size=3)
    assert x.dtype == np.float32
    got = x.compute()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, soap.create(MOLS), rtol=1e-6, atol=1e-6)


def test_sparse_blocks():
    sparse = pytest.importorskip("sparse")
    soap = SOAP(sparse=True, **KW)
    x = create_dask(soap, MOLS, chunk_size=3)
    got = x.compute()
    assert isinstance(got, sparse.COO)
    assert_same(got.todense(), np.concatenate([r.todense() for r in soap.create(MOLS)]))


def test_soap_pickles_before_and_after_use():
    soap = SOAP(average="inner", **PKW)
    fresh = pickle.loads(pickle.dumps(soap))
    ref = soap.create(CRYSTALS)
    used = pickle.loads(pickle.dumps(soap))
    assert repr(fresh) == repr(used) == repr(soap)
    # The tensor cache built by create() is not pickled (workers rebuild it).
    assert len(pickle.dumps(soap)) == len(pickle.dumps(SOAP(average="inner", **PKW)))
    assert_same(fresh.create(CRYSTALS), ref)
    assert_same(used.create(CRYSTALS), ref)


def test_processes_scheduler():
    # Two spawned worker processes (each imports torch: a few seconds).
    soap = SOAP(**KW)
    systems = MOLS[:4]
    x = create_dask(soap, systems, chunk_size=2)
    got = x.compute(scheduler="processes", num_workers=2)
    assert_same(got, np.concatenate(soap.create(systems)))


def test_matches_dscribe_descriptor_too():
    pytest.importorskip("dscribe")
    from helpers import dscribe_soap

    d = dscribe_soap(species=["H", "C", "O"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5, average="inner")
    assert_same(create_dask(d, MOLS, chunk_size=3).compute(), d.create(MOLS))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad", [0, -2])
def test_chunk_size_below_one(bad):
    with pytest.raises(ValueError, match=rf"'chunk_size' >= 1 .*got {bad}.*chunk_size=100"):
        create_dask(SOAP(**KW), MOLS, chunk_size=bad)


@pytest.mark.parametrize("bad", [2.5, True, "3"])
def test_chunk_size_not_an_integer(bad):
    with pytest.raises(TypeError, match="'chunk_size' to be an integer"):
        create_dask(SOAP(**KW), MOLS, chunk_size=bad)


def test_empty_and_wrong_inputs():
    soap = SOAP(**KW)
    with pytest.raises(ValueError, match="'systems' is empty"):
        create_dask(soap, [])
    with pytest.raises(ValueError, match="'systems' is empty"):
        soap.create_dask(iter([]))
    with pytest.raises(TypeError, match="single structure"):
        create_dask(soap, MOLS[0])
    with pytest.raises(TypeError, match="list of structures"):
        create_dask(soap, 3)
    with pytest.raises(ValueError, match="one entry per structure"):
        create_dask(soap, MOLS, centers=[[0]])
    with pytest.raises(TypeError, match="create_kwargs do not fit"):
        create_dask(soap, MOLS, n_job=2)
    with pytest.raises(TypeError, match=r"systems\[1\]"):
        create_dask(soap, [MOLS[0], object()])


def test_errors_inside_a_task_surface_at_compute():
    soap = SOAP(**KW)
    x = create_dask(soap, [MOLS[0], random_molecule("NaH", seed=0)], chunk_size=1)  # Na not in species: lazy
    with pytest.raises(ValueError, match="not in this descriptor's species"):
        x.compute(scheduler="sync")


def test_missing_dask_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "dask" or m.startswith("dask.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pointsym\[dask\]"):
        create_dask(SOAP(**KW), MOLS)
    assert dask is not None  # the real module is untouched (monkeypatch restores sys.modules)
