"""SOAP refuses bad input by name instead of truncating, casting or failing deep inside torch."""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch

from pointsym.descriptors import SOAP, create_dask


@pytest.fixture(scope="module")
def soap():
    return SOAP(species=["H", "O"], r_cut=3.0, n_max=2, l_max=2)


def _water():
    return ase.Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])


def test_fractional_atomic_number_is_refused(soap):
    with pytest.raises(ValueError, match=r"integer atomic numbers \(got 1.5 at index 1\)"):
        soap.create([_water(), (np.eye(3)[:2], [1, 1.5])])
    # whole-number floats are atomic numbers
    np.testing.assert_allclose(soap.create((np.eye(3)[:2], [1.0, 8.0])), soap.create((np.eye(3)[:2], [1, 8])))


@pytest.mark.parametrize("numbers", [[True, False], [1 + 0j, 8 + 0j]])
def test_bool_or_complex_numbers_are_refused(soap, numbers):
    with pytest.raises(TypeError, match="integer atomic numbers"):
        soap.create((np.eye(3)[:2], np.asarray(numbers)))


@pytest.mark.parametrize("positions", [np.array([[0, 0, 0], [1, 1, 1j]]), np.ones((2, 3), dtype=bool)])
def test_complex_or_bool_positions_are_refused(soap, positions):
    with pytest.raises(TypeError, match="real-valued float array"):
        soap.create([_water(), (positions, [1, 1])])


def test_unknown_species_number_is_refused():
    with pytest.raises(ValueError, match=r"\[1, 118\]"):
        SOAP(species=[200], r_cut=3.0, n_max=2, l_max=2)
    with pytest.raises(TypeError, match="integer atomic numbers"):
        SOAP(species=[1.5], r_cut=3.0, n_max=2, l_max=2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, "float16", "double"])
def test_create_tensor_dtype_is_checked(soap, dtype):
    with pytest.raises(TypeError, match="torch.float32 or torch.float64"):
        soap.create_tensor(_water(), dtype=dtype)


def test_create_tensor_accepts_dtype_strings(soap):
    assert soap.create_tensor(_water(), dtype="float32").dtype == torch.float32
    assert soap.create_tensor(_water(), dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_create_dask_reports_the_users_index(soap, chunk_size):
    pytest.importorskip("dask")
    bad = _water()
    bad.positions[1, 0] = np.nan
    systems = [_water()] * 5 + [bad] + [_water()] * 3
    with pytest.raises(ValueError, match=r"system(s)?\[5\]"):
        create_dask(soap, systems, chunk_size=chunk_size).compute(scheduler="synchronous")
