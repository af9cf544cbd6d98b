"""Every renamed keyword / positional form / attribute still works for one release: it warns
(DeprecationWarning naming old and new) and gives exactly the result of the new spelling."""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch

from helpers import tiny_pet
from pointsym.core import renamed_kwargs
from pointsym.geometry import neighbor_list
from pointsym.structures import (
    StructureBatch,
    autograd_energy_forces,
    batch_structures,
    batched_neighbor_list,
    check_structure_inputs,
    energy_and_forces,
)
from pointsym.symmetrize import ECSE, NeighborMLP

METHANE = ase.Atoms("CH4", positions=[[0, 0, 0], [.63, .63, .63], [-.63, -.63, .63], [-.63, .63, -.63],
                                      [.63, -.63, -.63]])


def _si() -> ase.Atoms:
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=0)
    return atoms


def _same(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a.detach(), b.detach())
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_renamed_kwargs_helper():
    @renamed_kwargs(cutoff="r_cut")
    def search(x, *, r_cut):
        return x, r_cut

    with pytest.warns(DeprecationWarning, match=r"search\(\): the keyword 'cutoff=' is deprecated, use 'r_cut='"):
        assert search(1, cutoff=2.0) == (1, 2.0)
    assert search(1, r_cut=2.0) == (1, 2.0)
    with pytest.raises(TypeError, match="both"):
        search(1, cutoff=2.0, r_cut=2.0)
    with pytest.raises(ValueError):
        renamed_kwargs(a="a")


def test_renamed_kwargs_attributes_the_warning_to_the_caller():
    @renamed_kwargs(old="new")
    def f(*, new):
        return new

    with pytest.warns(DeprecationWarning) as record:
        f(old=1)
    assert record[0].filename == __file__


# ---------------------------------------------------------------------------------- neighbour lists
def test_neighbor_list_old_call_forms():
    si = _si()
    pos, cell = si.get_positions(), np.asarray(si.cell[:])
    new = neighbor_list(pos, cell, True, r_cut=3.0)
    assert len(new) > 0
    _same(neighbor_list(pos, cell=cell, pbc=True, r_cut=3.0).i, new.i)
    for call in (lambda: neighbor_list(pos, 3.0, cell, True),
                 lambda: neighbor_list(pos, 3.0, cell=cell, pbc=True),
                 lambda: neighbor_list(pos, np.float64(3.0), cell, pbc=True),
                 lambda: neighbor_list(pos, cell, True, cutoff=3.0)):
        with pytest.warns(DeprecationWarning, match="r_cut"):
            old = call()
        for field in ("i", "j", "shifts", "vectors", "distances"):
            _same(getattr(old, field), getattr(new, field))
    with pytest.warns(DeprecationWarning, match="r_cut"):
        _same(neighbor_list(si, 3.0).vectors, neighbor_list(si, r_cut=3.0).vectors)


def test_neighbor_list_signature_errors():
    pos = np.zeros((2, 3))
    with pytest.raises(TypeError, match="r_cut"):
        neighbor_list(pos)
    with pytest.raises(TypeError, match="multiple values"):
        neighbor_list(pos, None, cell=None, r_cut=1.0)
    with pytest.raises(TypeError, match="positional"):
        neighbor_list(pos, None, False, 3, r_cut=1.0)
    with pytest.raises(TypeError, match="both"):
        neighbor_list(pos, 1.0, r_cut=1.0)


def test_batched_neighbor_list_old_call_forms():
    b = batch_structures([_si(), METHANE], dtype=torch.float64)
    args = (b.positions, b.cell, b.pbc, b.batch)
    new = batched_neighbor_list(*args, r_cut=3.0)
    with pytest.warns(DeprecationWarning, match="r_cut"):
        _same(batched_neighbor_list(*args, 3.0), new)
    with pytest.warns(DeprecationWarning, match="'cutoff=' is deprecated, use 'r_cut='"):
        _same(batched_neighbor_list(*args, cutoff=3.0), new)
    with pytest.raises(TypeError, match="r_cut"):
        batched_neighbor_list(*args)


# ---------------------------------------------------------------------------------- structures
def test_structure_batch_species_alias():
    b = batch_structures([METHANE, _si()])
    with pytest.warns(DeprecationWarning, match=r"StructureBatch\.species is deprecated, use StructureBatch\.numbers"):
        assert b.species is b.numbers
    assert set(b.inputs()) == {"positions", "numbers", "cell", "pbc", "batch"}
    with pytest.warns(DeprecationWarning, match="'species=' is deprecated, use 'numbers='"):
        old = StructureBatch(positions=b.positions, species=b.numbers, cell=b.cell, pbc=b.pbc, batch=b.batch)
    assert old == StructureBatch(positions=b.positions, numbers=b.numbers, cell=b.cell, pbc=b.pbc, batch=b.batch)


def test_structure_functions_accept_species_keyword():
    b = batch_structures([METHANE], dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="'species=' is deprecated, use 'numbers='"):
        old = check_structure_inputs(b.positions, species=b.numbers)
    _same(old, check_structure_inputs(b.positions, numbers=b.numbers))
    model = tiny_pet([1, 6])
    new = energy_and_forces(model, b.positions, b.numbers, stress=False)
    for fn in (energy_and_forces, autograd_energy_forces):
        with pytest.warns(DeprecationWarning, match="'species=' is deprecated, use 'numbers='"):
            _same(fn(model, b.positions, species=b.numbers), new)


# ---------------------------------------------------------------------------------- models
def test_pet_and_mlp_accept_species_keyword():
    b = batch_structures([METHANE, _si()], dtype=torch.float64)
    pet = tiny_pet([1, 6, 14])
    kw = {"cell": b.cell, "pbc": b.pbc, "batch": b.batch}
    with torch.no_grad():
        for method in (pet, pet.atomic_energies):
            new = method(b.positions, numbers=b.numbers, **kw)
            with pytest.warns(DeprecationWarning, match="'species=' is deprecated, use 'numbers='"):
                _same(method(b.positions, species=b.numbers, **kw), new)
        torch.manual_seed(0)
        mlp = NeighborMLP(r_cut=3.0, hidden=4, n_features=4).double()
        with pytest.warns(DeprecationWarning, match="numbers="):
            _same(mlp(b.positions, species=b.numbers, **kw), mlp(b.positions, b.numbers, **kw))


def test_ecse_accepts_species_keyword():
    b = batch_structures([METHANE], dtype=torch.float64)
    sym = ECSE(tiny_pet([1, 6]), r_cut=3.0)
    new = sym.energy_and_forces(b.positions, b.numbers)
    with pytest.warns(DeprecationWarning, match="'species=' is deprecated, use 'numbers='"):
        _same(sym.energy_and_forces(b.positions, species=b.numbers), new)
    with torch.no_grad(), pytest.warns(DeprecationWarning, match="numbers="):
        _same(sym(b.positions, species=b.numbers), sym(b.positions, b.numbers))
    with pytest.warns(DeprecationWarning, match="numbers="):
        old = sym.frames(b.positions, species=b.numbers)
    _same(old.rotations, sym.frames(b.positions, b.numbers).rotations)


def test_pet_parse_species_alias():
    import pointsym.models.pet as pet_module
    from pointsym.core import parse_species

    assert "parse_species" not in pet_module.__all__
    with pytest.warns(DeprecationWarning, match=r"pointsym\.models\.pet\.parse_species is deprecated, use "
                                                r"pointsym\.core\.parse_species"):
        old = pet_module.parse_species
    assert old is parse_species and old(["O", "H", 1]) == [1, 8]
    with pytest.raises(AttributeError):
        pet_module.no_such_name  # noqa: B018


def test_nesf_species_index_keyword():
    from pointsym.fields import CrystalBatch, NeSF, PointNetEncoder

    torch.manual_seed(0)
    model = NeSF(species=("O", 22, "Sr"), latent_dim=8, box_min=(0, 0, 0), box_max=(4, 4, 4),
                 position_channels=(8,), species_channels=(8,)).eval()
    assert model.species == (8, 22, 38)  # symbols accepted, order kept (it defines the class indices)
    idx = model.species_index(torch.tensor([38, 22, 8]))
    args = {"positions": torch.rand(3, 3), "batch": torch.zeros(3, dtype=torch.long),
            "lengths": torch.full((1, 3), 3.9), "angles": torch.full((1, 3), 1.5708)}
    with torch.no_grad():
        for fn in (model.encode, model, model.encoder):
            new = fn(species_index=idx, **args)
            with pytest.warns(DeprecationWarning, match="'species=' is deprecated, use 'species_index='"):
                _same(fn(species=idx, **args), new)
    assert isinstance(model.encoder, PointNetEncoder)
    crystal = {"positions": args["positions"], "batch": args["batch"], "lengths": args["lengths"],
               "angles": args["angles"], "index": torch.zeros(1, dtype=torch.long)}
    batch = CrystalBatch(species_index=idx, **crystal)
    with pytest.warns(DeprecationWarning, match=r"CrystalBatch\.species is deprecated, use CrystalBatch\.species_i"):
        assert batch.species is batch.species_index
    with pytest.warns(DeprecationWarning, match="species_index="):
        assert CrystalBatch(species=idx, **crystal) == batch


def test_soap_compute_system_keyword():
    from pointsym.descriptors import SOAP

    soap = SOAP(species=["H", "C"], r_cut=3.0, n_max=2, l_max=2, sigma=0.5)
    two = [METHANE, METHANE.copy()]
    pos = torch.tensor(np.concatenate([a.get_positions() for a in two]))
    numbers = np.concatenate([a.numbers for a in two])
    batch = np.repeat([0, 1], 5)
    new = soap.compute(pos, numbers, batch=batch)
    with pytest.warns(DeprecationWarning, match="'system=' is deprecated, use 'batch='"):
        _same(soap.compute(pos, numbers, system=batch), new)
