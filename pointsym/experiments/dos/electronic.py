"""Electronic structure of the DOS set: GFN1-xTB (tblite) for the full set, PBE (GPAW) for a subset.

Both return the Kohn-Sham / tight-binding eigenvalues in eV (absolute, not shifted), their
weights and occupations, the total energy, and the highest occupied / lowest unoccupied levels
from which the energy grid is aligned.

- :func:`xtb_single_point`: tblite's GFN1-xTB, Gamma point only (cells are repeated until the
  DOS is converged, see :mod:`.structures`), electronic temperature 300 K (Fermi smearing),
  periodic for periodic structures and molecular for the cages.
- :func:`gpaw_single_point`: GPAW, PBE, LCAO with the dzp basis, Monkhorst-Pack k-points over
  the periodic axes, Fermi-Dirac smearing 0.05 eV.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

__all__ = ["XTB_METHOD", "gpaw_single_point", "versions", "xtb_single_point"]

XTB_METHOD = "GFN1-xTB"


def _edges(eigenvalues: np.ndarray, occupations: np.ndarray, max_occupation: float) -> tuple[float, float]:
    """(HOMO, LUMO): the highest level holding any electrons and the lowest level not full.

    For a partly filled degenerate level (Ih C20, a metal) both are that level, so their
    midpoint, the alignment energy of the grid, is the Fermi level; with a gap it is midgap.
    """
    tol = 1e-3 * max_occupation
    occ = eigenvalues[occupations > tol]
    empty = eigenvalues[occupations < max_occupation - tol]
    homo = float(occ.max()) if occ.size else float(eigenvalues.min())
    lumo = float(empty.min()) if empty.size else float(eigenvalues.max())
    return min(homo, lumo), max(homo, lumo)


def xtb_single_point(atoms, *, electronic_temperature: float = 300.0, max_iterations: int = 250) -> dict[str, Any]:
    """GFN1-xTB single point of ``atoms`` (ase.Atoms) with tblite.

    Returns a dict: ``eigenvalues`` (n_orb,) eV, ``weights`` (n_orb,) = 2 (spin-degenerate
    Gamma point), ``occupations`` (n_orb,) electrons per level, ``energy`` eV, ``homo`` /
    ``lumo`` eV, ``n_electrons``.
    """
    try:
        from tblite.interface import Calculator
    except ImportError:
        raise ImportError("GFN1-xTB needs tblite: pip install tblite (or pip install 'pointsym[dosdata]').") from None
    from ase.units import Bohr, Hartree

    periodic = bool(np.any(atoms.pbc))
    kwargs: dict[str, Any] = {}
    if periodic:
        kwargs = {"lattice": atoms.cell.array / Bohr, "periodic": np.asarray(atoms.pbc, dtype=bool)}
    calc = Calculator(XTB_METHOD, atoms.numbers, atoms.positions / Bohr, **kwargs)
    calc.set("verbosity", 0)
    calc.set("temperature", electronic_temperature * 3.166808578545117e-06)  # K -> Hartree (k_B)
    calc.set("max-iter", max_iterations)
    res = calc.singlepoint()
    eig = np.asarray(res.get("orbital-energies"), dtype=np.float64).reshape(-1) * Hartree
    occ = np.asarray(res.get("orbital-occupations"), dtype=np.float64).reshape(-1)
    if occ.size != eig.size:  # spin-resolved occupations would have twice the size
        occ = occ.reshape(-1, eig.size).sum(axis=0)
    homo, lumo = _edges(eig, occ, 2.0)
    return {
        "eigenvalues": eig,
        "weights": np.full(eig.shape, 2.0),
        "occupations": occ,
        "energy": float(res.get("energy")) * Hartree,
        "homo": homo,
        "lumo": lumo,
        "n_electrons": float(occ.sum()),
    }


def gpaw_single_point(atoms, *, kpt_density: float = 3.0, basis: str = "dzp", smearing_ev: float = 0.05,
                      txt: str | None = None) -> dict[str, Any]:
    """PBE single point of ``atoms`` with GPAW in LCAO mode (``basis``, default dzp).

    k-points: a Monkhorst-Pack grid with ``kpt_density`` points per inverse Angstrom along each
    periodic axis (Gamma only along non-periodic axes and for molecules). Returns the same keys
    as :func:`xtb_single_point`, with ``eigenvalues`` / ``weights`` of shape (n_k, n_bands),
    weights summing to 2 (spin degeneracy).
    """
    try:
        from gpaw import GPAW, FermiDirac
    except ImportError:
        raise ImportError("The DFT subset needs GPAW: apt-get install libxc-dev libopenblas-dev; "
                          "pip install gpaw gpaw-data (or pip install 'pointsym[dft]').") from None
    atoms = atoms.copy()
    if np.any(atoms.pbc):
        recip = np.linalg.norm(atoms.cell.reciprocal(), axis=1)  # 1/A, without the 2 pi
        kpts = [max(1, int(np.ceil(kpt_density * 2 * np.pi * r))) if p else 1 for r, p in zip(recip, atoms.pbc)]
    else:
        kpts = [1, 1, 1]
    atoms.calc = GPAW(mode="lcao", basis=basis, xc="PBE", kpts={"size": kpts, "gamma": True},
                      occupations=FermiDirac(smearing_ev), txt=txt or os.devnull, symmetry="off")
    energy = atoms.get_potential_energy()
    calc = atoms.calc
    n_k = len(calc.get_ibz_k_points())
    eig = np.array([calc.get_eigenvalues(kpt=k) for k in range(n_k)])
    occ = np.array([calc.get_occupation_numbers(kpt=k) for k in range(n_k)])  # includes the k weight
    w_k = np.asarray(calc.get_k_point_weights())  # sums to 1
    weights = np.repeat((2.0 * w_k)[:, None], eig.shape[1], axis=1)
    e_f = float(calc.get_fermi_level())
    # GPAW's occupation numbers include the k-point weight (summing to 1) and the spin factor 2
    per_level = occ / w_k[:, None]
    homo, lumo = _edges(eig.reshape(-1), per_level.reshape(-1), 2.0)
    return {
        "eigenvalues": eig,
        "weights": weights,
        "occupations": per_level,
        "energy": float(energy),
        "homo": homo,
        "lumo": lumo,
        "e_fermi": e_f,
        "n_electrons": float(calc.get_number_of_electrons()),
        "kpts": kpts,
    }


def versions() -> dict[str, str]:
    """Versions of the codes the generator uses (missing ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ase", "tblite", "matscipy", "passagemath-buckygen", "gpaw", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
