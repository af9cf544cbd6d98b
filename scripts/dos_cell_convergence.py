"""Gamma-point convergence of the GFN1-xTB DOS with the cell size (pristine structures).

tblite is Gamma-point only, so every periodic family is repeated until its per-atom DOS stops
changing. For each family this compares the cell used by ``pointsym dos-data`` with a larger
one: Pearson r of the per-atom DOS, max |difference|, band-energy difference (eV/atom) and the
HOMO-LUMO gap. Writes results/csnn_dos/xtb_cell_convergence.json.

    python scripts/dos_cell_convergence.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from ase.build import graphene, nanotube
from ase.lattice.hexagonal import Graphite

from pointsym.electronic import band_energy, energy_grid, fermi_level, gaussian_dos
from pointsym.experiments.dos.electronic import xtb_single_point
from pointsym.experiments.dos.structures import build_pristine


def dos_of(atoms, energies, sigma=0.2):
    r = xtb_single_point(atoms)
    mid = 0.5 * (r["homo"] + r["lumo"])
    g = gaussian_dos(r["eigenvalues"] - mid, energies, sigma, weights=r["weights"]) / len(atoms)
    return g, r["lumo"] - r["homo"], r["n_electrons"]


def main() -> None:
    energies = energy_grid(-12.0, 2.9, 0.1)
    bigger = {
        "Graphene": (graphene(a=2.46, size=(12, 12, 1), vacuum=7.5), "12x12"),
        "Graphite": (Graphite(symbol="C", latticeconstant={"a": 2.46, "c": 6.70}, size=(6, 6, 2)), "6x6x2"),
        "C_6_4": (nanotube(6, 4, length=2, bond=1.42, vacuum=7.5), "2 cells"),
        "C_8_0": (nanotube(8, 0, length=6, bond=1.42, vacuum=7.5), "6 cells"),
        "C_9_9": (nanotube(9, 9, length=9, bond=1.42, vacuum=7.5), "9 cells"),
    }
    small = {"Graphene": graphene(a=2.46, size=(4, 4, 1), vacuum=7.5)}
    # thermal disorder (0.07 A rattle, about 300 K) smooths the Gamma-point levels: graphene
    # cells compared with 12x12, each DOS averaged over three rattles
    rattled = {}
    for n in (6, 9, 12):
        gs = []
        for seed in range(3):
            a = graphene(a=2.46, size=(n, n, 1), vacuum=7.5)
            a.pbc = True
            a.rattle(0.07, seed=seed)
            gs.append(dos_of(a, energies)[0])
        rattled[n] = np.mean(gs, axis=0)
    out = {}
    for family, (big, label) in bigger.items():
        big.pbc = True
        t = time.perf_counter()
        ref = build_pristine(family)
        g0, gap0, ne0 = dos_of(ref, energies)
        g1, gap1, ne1 = dos_of(big, energies)
        e0 = band_energy(energies, g0 * len(ref), fermi_level(energies, g0 * len(ref), ne0), len(ref))
        e1 = band_energy(energies, g1 * len(big), fermi_level(energies, g1 * len(big), ne1), len(big))
        out[family] = {"used_atoms": len(ref), "larger": label, "larger_atoms": len(big),
                       "pearson_r": float(np.corrcoef(g0, g1)[0, 1]), "max_abs_dos_diff": float(np.abs(g0 - g1).max()),
                       "band_energy_diff_ev_per_atom": float(e0 - e1), "gap_used": gap0, "gap_larger": gap1,
                       "seconds": time.perf_counter() - t}
        print(family, out[family])
    for family, atoms in small.items():
        atoms.pbc = True
        g, gap, _ = dos_of(atoms, energies)
        out[family]["smaller_4x4_gap"] = gap
    out["Graphene"]["rattled_vs_12x12"] = {
        f"{n}x{n}": {"pearson_r": float(np.corrcoef(rattled[n], rattled[12])[0, 1]),
                     "max_abs_dos_diff": float(np.abs(rattled[n] - rattled[12]).max())} for n in (6, 9)}
    path = Path("results/csnn_dos/xtb_cell_convergence.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"sigma_ev": 0.2, "grid": [-12.0, 2.9, 0.1], "families": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
