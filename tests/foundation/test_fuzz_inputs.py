"""Property-based fuzz of the public input checks of SOAP, PET/ECSE and NeSF.

Random shapes, dtypes, NaN/inf values and species: every call either returns finite output
or raises ``ValueError``/``TypeError`` (never another exception, a NaN or a silent wrong shape).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pointsym.descriptors import SOAP  # noqa: E402
from pointsym.fields import NeSF  # noqa: E402
from pointsym.models import PET  # noqa: E402
from pointsym.symmetrize import ECSE, NeighborMLP  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = ["float64", "float32", "float16", "int64", "bool", "complex128"]


DEFECTS = ("shape", "nan", "inf", "dtype", "unknown", "fraction", "bool", "count")


@st.composite
def structures(draw, *, max_atoms=5, scale=3.0):
    """``(positions, numbers)``: well-formed about half of the time, else with one defect (shape,
    NaN/inf, dtype, an unknown or non-integer atomic number, a count mismatch)."""
    n = draw(st.integers(0, max_atoms))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    defect = draw(st.sampled_from((None,) * len(DEFECTS) + DEFECTS))
    # Spread the atoms out (about 1.3 Å apart along x) so that a well-formed input is a valid structure.
    x = rng.uniform(-1.0, 1.0, size=(n, 3)) * scale / 3 + np.arange(n)[:, None] * np.array([1.3, 0.0, 0.0])
    numbers = list(rng.choice([1, 6, 8], size=n))
    if defect == "shape":
        x = draw(st.sampled_from([x[:, :2], x.reshape(-1), x[None], np.zeros((n, 0))]))
    elif defect in ("nan", "inf") and n:
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, 2))] = np.nan if defect == "nan" else np.inf
    elif defect == "dtype":
        x = draw(st.sampled_from(["float16", "int64", "bool", "complex128"]))
        x = (rng.uniform(size=(n, 3)) > 0.5) if x == "bool" else (np.arange(n * 3).reshape(n, 3) * 1.5).astype(x)
    elif defect == "count":
        numbers = numbers + [1]
    elif defect in ("unknown", "fraction", "bool") and n:
        numbers[draw(st.integers(0, n - 1))] = {"unknown": draw(st.sampled_from([0, -1, 2, 119, 300])),
                                                  "fraction": 1.5, "bool": True}[defect]
    return x, np.asarray(numbers)


def _finite(out) -> bool:
    if isinstance(out, dict):
        return all(_finite(v) for v in out.values())
    if isinstance(out, (list, tuple)):
        return all(_finite(v) for v in out)
    if isinstance(out, torch.Tensor):
        return bool(torch.isfinite(out).all())
    return bool(np.all(np.isfinite(np.asarray(out))))


def _call(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. numpy's ComplexWarning must not matter: the call must refuse
        try:
            out = fn()
        except (ValueError, TypeError):
            return None
    assert _finite(out), "returned non-finite output instead of raising"
    return out


@pytest.fixture(scope="module")
def soap():
    return SOAP(species=["H", "C", "O"], r_cut=3.0, n_max=2, l_max=2)


@FUZZ
@given(structure=structures())
def test_soap_create(soap, structure):
    _call(lambda: soap.create(structure))


@FUZZ
@given(structure=structures(), dtype=st.sampled_from([None, None, torch.float32, torch.float16, "float32", "half",
                                                     torch.int64]))
def test_soap_create_tensor(soap, structure, dtype):
    _call(lambda: soap.create_tensor(structure, dtype=dtype))


@pytest.fixture(scope="module")
def pet():
    torch.manual_seed(0)
    return PET(["H", "C", "O"], r_cut=3.0, d_model=8, n_gnn_layers=1, n_trans_layers=1, n_heads=2,
               dim_feedforward=8, head_hidden=8).double()


def _tensor(x):
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        return x


@FUZZ
@given(structure=structures(), cell=st.sampled_from([None, None, None, "eye", "eye", "nan", "bad"]),
       pbc=st.sampled_from([None, None, None, True, False, (True, False, True), "bad"]))
def test_pet_forward(pet, structure, cell, pbc):
    positions, numbers = structure
    cell_v = {None: None, "eye": torch.eye(3, dtype=torch.float64) * 6, "nan": torch.full((3, 3), float("nan")),
              "bad": torch.ones(2, 2)}[cell]
    pbc_v = torch.ones(2, dtype=torch.bool) if pbc == "bad" else pbc
    _call(lambda: pet(_tensor(positions), _tensor(np.asarray(numbers)), cell_v, pbc_v))


@pytest.fixture(scope="module")
def ecse():
    torch.manual_seed(0)
    return ECSE(NeighborMLP(r_cut=3.0, hidden=4, n_features=4), r_cut=3.0).double()


@FUZZ
@given(structure=structures(max_atoms=4))
def test_ecse_forward(ecse, structure):
    positions, numbers = structure
    _call(lambda: ecse(_tensor(positions), _tensor(np.asarray(numbers))))


@pytest.fixture(scope="module")
def nesf():
    torch.manual_seed(0)
    return NeSF(species=(1, 6, 8), latent_dim=8, box_min=(0, 0, 0), box_max=(4, 4, 4),
                encoder_kwargs={}, position_channels=(8,), species_channels=(8,)).double().eval()


@FUZZ
@given(structure=structures())
def test_nesf_encode(nesf, structure):
    positions, numbers = structure
    def run():
        idx = nesf.species_index(_tensor(np.asarray(numbers)))
        pos = _tensor(positions)
        n = len(numbers)
        return nesf.encode(pos, idx, torch.zeros(n, dtype=torch.long), torch.full((1, 3), 3.9, dtype=torch.float64),
                           torch.full((1, 3), 1.5708, dtype=torch.float64))
    _call(run)
