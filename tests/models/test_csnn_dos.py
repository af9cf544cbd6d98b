"""Atomic-environment grids (pointsym.nn) and the CSNN DOS model: closed forms, invariance, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from pointsym.electronic import dos_loss
from pointsym.geometry import icosahedral_rotations, icosphere, random_rotation
from pointsym.models import CSNNDOS
from pointsym.nn import atomic_environment_grid, atoms_environment_grid


def _tiny(**kw) -> CSNNDOS:
    args = dict(level=2, n_bins=8, n_energies=40, base_width=8, hidden=(16, 16))
    args.update(kw)
    return CSNNDOS(**args)


def _reference_grid(atoms: Atoms, level: int, n_bins: int, r_min: float, r_cut: float,
                    species: list[int] | None = None) -> np.ndarray:
    """Independent fingerprint: ASE neighbour list, brute-force nearest vertex, spec 3.3 bin formula."""
    verts = icosphere(level).vertices
    i, j, d = ase_neighbor_list("ijD", atoms, r_cut)
    dist = np.linalg.norm(d, axis=1)
    groups = [None] if species is None else species
    out = np.zeros((len(atoms), 1, len(verts), n_bins * len(groups)))
    for k, z in enumerate(groups):
        for a, b, vec, r in zip(i, j, d, dist):
            if r <= r_min or r > r_cut or (z is not None and atoms.numbers[b] != z):
                continue
            v = int(np.argmax(verts @ (vec / r)))
            out[a, 0, v, k * n_bins + int(np.ceil((r - r_min) * n_bins / (r_cut - r_min))) - 1] += 1.0 / r
    return out


# ---------------------------------------------------------------------------- environment grids
def test_environment_grid_dimer_closed_form():
    v = icosphere(3).vertices[100]
    pos = np.stack([np.zeros(3), 1.5 * v])  # |d| = 1.5 A -> bin ceil(0.5 * 32 / 6) - 1 = 2
    grid = atomic_environment_grid(pos, [6, 6])
    assert grid.shape == (2, 1, 642, 32) and grid.dtype == torch.float64
    opposite = int(np.argmax(icosphere(3).vertices @ -v))  # the icosphere is centrally symmetric
    expected = torch.zeros(2, 1, 642, 32, dtype=torch.float64)
    expected[0, 0, 100, 2] = expected[1, 0, opposite, 2] = 1 / 1.5
    torch.testing.assert_close(grid, expected, rtol=1e-14, atol=0)
    # Closer than r_min: no contribution (the reference wrapped it into the last bin).
    assert atomic_environment_grid(0.5 * pos, [6, 6]).abs().sum() == 0


def test_environment_grid_periodic_and_per_species_against_ase():
    diamond = bulk("C", "diamond", a=3.567, cubic=True)
    diamond.rattle(0.05, seed=1)
    kw = dict(level=2, n_bins=16, r_min=1.0, r_cut=5.0)
    got = atomic_environment_grid(diamond.positions, diamond.numbers, diamond.cell[:], True, **kw)
    np.testing.assert_allclose(got.numpy(), _reference_grid(diamond, 2, 16, 1.0, 5.0), rtol=1e-12, atol=1e-15)
    assert got.sum() > 8 * 16 / 2.0  # every atom has its 16 nearest neighbours within 3.6 A
    # Two elements: one grid per neighbour element on the channel axis, [Z=1 bins | Z=6 bins].
    mixed = diamond.copy()
    mixed.numbers[[1, 4]] = 1
    sp = atomic_environment_grid(mixed.positions, mixed.numbers, mixed.cell[:], True, species=["C", "H"], **kw)
    assert sp.shape == (8, 1, 162, 32)
    np.testing.assert_allclose(sp.numpy(), _reference_grid(mixed, 2, 16, 1.0, 5.0, species=[1, 6]), rtol=1e-12,
                               atol=1e-15)
    torch.testing.assert_close(sp[..., :16] + sp[..., 16:], got)
    # ase.Atoms helper: several frames concatenated, with their batch index.
    grid, batch = atoms_environment_grid([diamond, mixed], **kw)
    assert batch.tolist() == [0] * 8 + [1] * 8
    torch.testing.assert_close(grid, torch.cat([got, got]))


def test_environment_grid_torch_gradient_and_errors():
    c = molecule("C6H6")
    pos = torch.as_tensor(c.positions, dtype=torch.float64).requires_grad_()
    grid = atomic_environment_grid(pos, torch.as_tensor(c.numbers), level=1, n_bins=4, r_cut=3.0)
    torch.testing.assert_close(grid, atomic_environment_grid(c.positions, c.numbers, level=1, n_bins=4, r_cut=3.0))
    grid.sum().backward()  # the 1/|d| values are differentiable in the positions
    assert pos.grad is not None and float(pos.grad.abs().sum()) > 0
    assert atomic_environment_grid(pos.detach().float(), c.numbers, level=1, n_bins=4).dtype == torch.float32
    with pytest.raises(ValueError, match=r"elements \[1\] that are not in 'species' = \[6\]"):
        atomic_environment_grid(c.positions, c.numbers, species=["C"])
    with pytest.raises(ValueError, match="'r_cut' > 'r_min'"):
        atomic_environment_grid(c.positions, c.numbers, r_min=3.0, r_cut=2.0)
    with pytest.raises(ValueError, match="'scaling'"):
        atomic_environment_grid(c.positions, c.numbers, scaling="log")
    with pytest.raises(ValueError, match=r"'positions' of shape \(n_atoms, 3\)"):
        atomic_environment_grid(c.positions[:, :2], c.numbers)
    with pytest.raises(ValueError, match="'numbers'"):
        atomic_environment_grid(c.positions, c.numbers[:3])
    with pytest.raises(ValueError, match="Overlapping atoms"):
        atomic_environment_grid(np.zeros((2, 3)), [6, 6])


# ---------------------------------------------------------------------------- the model
def test_csnn_dos_invariant_under_the_60_icosahedral_rotations():
    torch.manual_seed(0)
    model = _tiny().double()
    c60 = molecule("C60")
    c60.rattle(0.05, seed=3)  # no residual symmetry
    pos = c60.positions - c60.positions.mean(0)
    # A generic rotation first, so that no displacement direction is a tie between two vertices; then all
    # 60 rotations of the group in the icosphere's frame, batched as 60 structures.
    r0 = random_rotation(seed=7)
    group = icosahedral_rotations()
    rotated = np.einsum("gij,jk,nk->gni", group, r0, pos).reshape(-1, 3)
    batch = torch.arange(60).repeat_interleave(60)
    grid = atomic_environment_grid(rotated, np.tile(c60.numbers, 60), None, None, batch, level=2, n_bins=8)
    model.train()
    model(grid[:120], batch[:120])  # one training step's batch statistics, so eval mode is not the identity BN
    model.eval()
    with torch.no_grad():
        out = model(grid, batch)
    assert out.shape == (60, 40) and bool((out >= 0).all())
    scale = float(out.abs().max())
    assert scale > 1e-3
    err = float((out - out[0]).abs().max())
    assert err <= 1e-10 * scale, err
    # Not trivially invariant: the grids themselves differ between rotations, and a generic rotation
    # (not in the group) changes the output.
    assert float((grid[60:120] - grid[:60]).abs().max()) > 0.1
    other = atomic_environment_grid(pos @ random_rotation(seed=8).T, c60.numbers, level=2, n_bins=8)
    with torch.no_grad():
        assert float((model(other) - out[0]).abs().max()) > 1e-6 * scale


def test_csnn_dos_shapes_segment_mean_and_backward():
    torch.manual_seed(1)
    model = _tiny(base_width=16, hidden=(32, 32))  # the CPU-sized model: graph widths 16/32/64
    assert model.gconv_dims == [16, 32, 64] and model.radial_dims == [32, 64, 128]
    grid = torch.rand(12, 1, 162, 8)
    batch = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    model.train()
    out = model(grid, batch)
    assert out.shape == (3, 40) and out.dtype == torch.float32 and bool((out >= 0).all())
    ref = torch.rand(3, 40)
    loss = dos_loss(out, ref, 0.1)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        atoms = model.forward_atoms(grid)
        out = model(grid, batch)
        assert atoms.shape == (12, 40)
        torch.testing.assert_close(out, torch.stack([atoms[:5].mean(0), atoms[5:8].mean(0), atoms[8:].mean(0)]))
        perm = torch.randperm(12)
        torch.testing.assert_close(model(grid[perm], batch[perm]), out)  # atom order does not matter
        assert model(grid[:5]).shape == (1, 40)  # batch=None: one structure
    assert model.energies.shape == (40,) and float(model.energies[1] - model.energies[0]) == pytest.approx(0.1)


def test_csnn_dos_paper_configuration():
    model = CSNNDOS()
    assert model.gconv_dims == [32, 64, 128, 256] and model.radial_dims == [64, 128, 256, 512]
    assert model.gconv_layers == [2, 2, 2, 1] and model.radial_layers == [2, 2, 2, 1]
    assert model.n_vertices == 642 and model.n_channels == 32 and model.n_energies == 310
    assert model.head[0].in_features == 512 and model.head[-4].out_features == 310
    assert float(model.energies[0]) == -30.0 and abs(float(model.energies[-1]) - 0.9) < 1e-12
    n = sum(p.numel() for p in model.parameters())
    assert 1.0e6 < n < 1.1e6, n  # 1,061,998 with this layout
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(3, 1, 642, 32)).shape == (1, 310)


def test_csnn_dos_checkpoint_and_structure_entry(tmp_path):
    torch.manual_seed(2)
    model = _tiny(species=["H", "C"], r_cut=4.0).double()
    assert model.hypers["species"] == [1, 6] and model.n_channels == 16
    ch4 = molecule("CH4")
    c2h6 = molecule("C2H6")
    pos = np.concatenate([ch4.positions, c2h6.positions + 20.0])
    numbers = np.concatenate([ch4.numbers, c2h6.numbers])
    batch = torch.tensor([0] * 5 + [1] * 8)
    model.train()
    model.forward_structures(pos, numbers, batch=batch)
    model.eval()
    with torch.no_grad():
        out = model.forward_structures(pos, numbers, batch=batch)
        grid = atomic_environment_grid(pos, numbers, None, None, batch, level=2, n_bins=8, r_cut=4.0,
                                       species=[1, 6])
        torch.testing.assert_close(out, model(grid, batch))
    assert out.shape == (2, 40)
    path = model.save(tmp_path / "dos.pt", meta={"note": "test"})
    loaded = CSNNDOS.from_checkpoint(path)
    assert loaded.hypers == model.hypers and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(grid, batch), out, rtol=0, atol=0)
    assert CSNNDOS(**model.hypers).hypers == model.hypers


def test_csnn_dos_bad_input():
    model = _tiny()
    grid = torch.rand(4, 1, 162, 8)
    with pytest.raises(ValueError, match=r"'grid' of shape \(n_atoms, 1, 162, 8\)"):
        model(torch.rand(4, 1, 42, 8))
    with pytest.raises(ValueError, match="'grid' of shape"):
        model(torch.rand(4, 1, 162, 9))
    with pytest.raises(ValueError, match="'grid' of shape"):
        model.forward_atoms(torch.rand(162, 8))
    with pytest.raises(ValueError, match=r"'batch' to be an integer tensor of shape \(4,\)"):
        model(grid, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="'batch'"):
        model(grid, torch.zeros(4))
    with pytest.raises(ValueError, match="'n_structures'=2"):
        model(grid, torch.tensor([0, 1, 2, 2]), n_structures=2)
    with pytest.raises(ValueError, match="Structure 1 has no atoms"):
        model(grid, torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="level \\+ 1 = 3"):
        _tiny(gconv_dims=[4, 8])
    with pytest.raises(ValueError, match="'dropout'"):
        _tiny(dropout=1.0)
    with pytest.raises(ValueError, match="'pool'"):
        _tiny(pool="sum")
    with pytest.raises(ValueError, match="'r_cut' > 'r_min'"):
        _tiny(r_min=7.0)
    assert "parameters=" in repr(model) and "n_energies=40" in repr(model)
