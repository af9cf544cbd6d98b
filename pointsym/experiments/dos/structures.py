"""Carbon-allotrope structures of the CSNN DOS set and their molecular dynamics.

The eight families of the CSNN carbon database (papers 001/003): graphene, graphite, the
fullerenes C20, C40 and C60, and the nanotubes (6,4), (8,0) and (9,9). Pristine structures
come from ASE (graphene, graphite, nanotubes, C60) or, for the C20 and C40 cages, from the
fullerene generator ``buckygen`` (PyPI ``passagemath-buckygen``): its graphs are embedded in
3-D by topological coordinates (eigenvectors of the adjacency matrix, Manolopoulos & Fowler
1992) and relaxed with the Brenner potential. Thermal snapshots come from Langevin molecular
dynamics with matscipy's Brenner (1990, parameter set I) carbon potential; graphite adds a
Lennard-Jones interlayer term (Girifalco et al. 2000, eps = 2.39 meV, sigma = 3.41 A) between
atoms of different layers, which the short-ranged bond-order potential lacks.

Cell sizes are chosen for the Gamma-point-only xTB calculation (see :mod:`.electronic`):
graphene 9x9 (162 atoms: a 4x4 cell shows a false gap, and with thermal disorder the 6x6 DOS
still correlates only r = 0.92 with 12x12, 9x9 r = 0.989), graphite 6x6 AB bilayer cell (144;
r = 0.994 against 6x6x2), nanotubes repeated to >= 14 A along the axis (128-216; r >= 0.955
against twice or 1.5 times the length, pristine). ``scripts/dos_cell_convergence.py`` measures it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

__all__ = [
    "FAMILIES",
    "InterlayerLJ",
    "MDSettings",
    "build_pristine",
    "buckygen_fullerenes",
    "md_snapshots",
]

# family -> short description; names follow the CSNN database folders.
FAMILIES: dict[str, str] = {
    "Graphene": "graphene 9x9 (162 atoms), 15 A vacuum",
    "Graphite": "AB graphite 6x6x1 (144 atoms, 2 layers)",
    "C20": "C20 dodecahedral cage (buckygen, Brenner-relaxed), isolated",
    "C40": "C40 cage (buckygen isomer with fewest pentagon adjacencies, lowest xTB energy), isolated",
    "C60": "C60 Ih buckminsterfullerene (ASE), isolated",
    "C_6_4": "(6,4) nanotube, 1 translational cell (152 atoms, 18.6 A)",
    "C_8_0": "(8,0) nanotube, 4 cells (128 atoms, 17.0 A)",
    "C_9_9": "(9,9) nanotube, 6 cells (216 atoms, 14.8 A)",
}
MOLECULES = ("C20", "C40", "C60")
_VACUUM = 7.5  # A on each side: the 7 A fingerprint never sees a periodic image across vacuum


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"Expected 'family' to be one of {list(FAMILIES)} (got {family!r}).")
    return family


# --------------------------------------------------------------------------- fullerene cages
def _buckygen_binary() -> str:
    try:
        import sage_wheels  # type: ignore[import-not-found]  # ships the buckygen executable
    except ImportError:
        path = shutil.which("buckygen")
        if path:
            return path
        raise ImportError(
            "The C20 and C40 cages need the fullerene generator buckygen: pip install passagemath-buckygen "
            "(or the dos extra: pip install 'pointsym[dosdata]')."
        ) from None
    path = os.path.join(list(sage_wheels.__path__)[0], "bin", "buckygen")
    if not os.path.isfile(path):  # pragma: no cover - broken install
        raise ImportError(f"buckygen executable not found at {path!r}; reinstall passagemath-buckygen.")
    return path


def _parse_planar_code(data: bytes) -> list[list[list[int]]]:
    """Graphs of a ``planar_code`` stream: per graph, per vertex, its neighbours (0-based, cyclic order)."""
    header = b">>planar_code<<"
    if not data.startswith(header):
        raise ValueError("buckygen output is not planar_code (missing header).")
    pos, graphs = len(header), []
    while pos < len(data):
        n = data[pos]
        pos += 1
        graph = []
        for _ in range(n):
            nbrs = []
            while data[pos] != 0:
                nbrs.append(data[pos] - 1)
                pos += 1
            pos += 1
            graph.append(nbrs)
        graphs.append(graph)
    return graphs


def buckygen_fullerenes(n_atoms: int) -> list[list[list[int]]]:
    """All fullerene isomers C_n as adjacency lists (buckygen ``-d``: the fullerene, not its dual).

    Returns a list (one per isomer, in buckygen's order) of per-atom neighbour lists.
    """
    if n_atoms < 20 or n_atoms % 2 or n_atoms == 22:
        raise ValueError(f"Expected 'n_atoms' to be an even number >= 20 other than 22 (got {n_atoms}).")
    exe = _buckygen_binary()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "graphs.pc")
        # buckygen counts the vertices of the dual triangulation: n_atoms / 2 + 2 faces.
        subprocess.run([exe, "-d", str(n_atoms // 2 + 2), out], check=True, capture_output=True)
        with open(out, "rb") as fh:
            graphs = _parse_planar_code(fh.read())
    return [g for g in graphs if len(g) == n_atoms]


def planar_faces(adj: list[list[int]]) -> list[list[int]]:
    """Faces of an embedded planar graph from its rotation system (neighbours in cyclic order)."""
    seen, faces = set(), []
    for u in range(len(adj)):
        for v in adj[u]:
            if (u, v) in seen:
                continue
            face, a, b = [], u, v
            while (a, b) not in seen:
                seen.add((a, b))
                face.append(a)
                nb = adj[b]
                # next edge of the face: the neighbour of b that follows a in b's cyclic order
                c = nb[(nb.index(a) - 1) % len(nb)]
                a, b = b, c
            faces.append(face)
    return faces


def pentagon_adjacencies(adj: list[list[int]]) -> int:
    """Number of edges shared by two pentagons (fewer is more stable for small fullerenes)."""
    pent = [set(f) for f in planar_faces(adj) if len(f) == 5]
    return sum(len(pent[i] & pent[j]) == 2 for i in range(len(pent)) for j in range(i + 1, len(pent)))


def topological_coordinates(adj: list[list[int]], bond: float = 1.42) -> np.ndarray:
    """3-D coordinates of a fullerene graph from the adjacency eigenvectors (Manolopoulos & Fowler).

    The eigenvectors of the 2nd-4th largest adjacency eigenvalues are the three p-like
    "Hueckel" orbitals; scaled by 1 / sqrt(lambda_1 - lambda_k) they place the atoms on a
    near-spherical cage. Scaled to a mean bond length ``bond`` (A).
    """
    n = len(adj)
    a = np.zeros((n, n))
    for i, nb in enumerate(adj):
        a[i, nb] = 1.0
    w, v = np.linalg.eigh(a)
    order = np.argsort(w)[::-1]
    lam1 = w[order[0]]
    xyz = np.stack([v[:, order[k]] / np.sqrt(max(lam1 - w[order[k]], 1e-9)) for k in (1, 2, 3)], axis=1)
    edges = [(i, j) for i, nb in enumerate(adj) for j in nb if i < j]
    mean = np.mean([np.linalg.norm(xyz[i] - xyz[j]) for i, j in edges])
    return xyz * (bond / mean)


def _brenner():
    try:
        from matscipy.calculators.manybody import Manybody
        from matscipy.calculators.manybody.explicit_forms import TersoffBrenner
        from matscipy.calculators.manybody.explicit_forms.tersoff_brenner import Brenner_PRB_42_9458_C_I
    except ImportError:
        raise ImportError("The DOS data generator needs matscipy: pip install matscipy "
                          "(or the dos extra: pip install 'pointsym[dosdata]').") from None
    import warnings

    # matscipy's Tersoff-Brenner form calls np.power(..., where=) without out=, which warns at
    # every call; the masked entries are overwritten by the enclosing np.where.
    warnings.filterwarnings("ignore", message="'where' used without 'out'", category=UserWarning)
    return Manybody(**TersoffBrenner(Brenner_PRB_42_9458_C_I))


def _relax(atoms, calc, fmax: float = 0.01, steps: int = 2000):
    from ase.optimize import FIRE

    atoms = atoms.copy()
    if not atoms.pbc.any():
        atoms.center(vacuum=_VACUUM)  # matscipy's neighbour list needs a cell, also for molecules
    atoms.calc = calc
    FIRE(atoms, logfile=None).run(fmax=fmax, steps=steps)
    atoms.calc = None
    return atoms


def _cage(n_atoms: int):
    from ase import Atoms

    from pointsym.experiments.dos.electronic import xtb_single_point

    graphs = buckygen_fullerenes(n_atoms)
    adjacency = np.array([pentagon_adjacencies(g) for g in graphs])
    candidates = [graphs[i] for i in np.flatnonzero(adjacency == adjacency.min())]
    best, best_e = None, np.inf
    for g in candidates:
        atoms = _relax(Atoms(f"C{n_atoms}", positions=topological_coordinates(g)), _brenner())
        energy = xtb_single_point(atoms)["energy"]
        if energy < best_e:
            best, best_e = atoms, energy
    assert best is not None
    return best


def build_pristine(family: str):
    """The pristine (0 K) structure of ``family`` as an ``ase.Atoms``.

    Periodic families have ``pbc=True`` on all axes with vacuum where the material is not
    periodic; the cages are isolated molecules (``pbc=False``) centred in a box.
    """
    from ase.build import graphene, molecule, nanotube
    from ase.lattice.hexagonal import Graphite

    _check_family(family)
    if family == "Graphene":
        atoms = graphene(a=2.46, size=(9, 9, 1), vacuum=_VACUUM)
    elif family == "Graphite":
        atoms = Graphite(symbol="C", latticeconstant={"a": 2.46, "c": 6.70}, size=(6, 6, 1))
    elif family == "C60":
        atoms = molecule("C60")
    elif family in ("C20", "C40"):
        atoms = _cage(int(family[1:]))
    else:
        n, m = (int(x) for x in family.split("_")[1:])
        length = {(6, 4): 1, (8, 0): 4, (9, 9): 6}[(n, m)]
        atoms = nanotube(n, m, length=length, bond=1.42, vacuum=_VACUUM)
    if family in MOLECULES:
        atoms.center(vacuum=_VACUUM)
        atoms.pbc = False
    else:
        atoms.pbc = True
    if family == "Graphite":
        # layer label per atom (0 / 1) for the interlayer term
        z = atoms.positions[:, 2]
        atoms.set_tags((z > z.mean()).astype(int))
    atoms.info["family"] = family
    return atoms


# --------------------------------------------------------------------------- interlayer term
class InterlayerLJ(Calculator):
    """Lennard-Jones energy between atoms of different layers (``atoms.get_tags()``), ASE calculator.

    ``E = sum_{i<j, tag_i != tag_j, r < r_cut} 4 eps [(s/r)^12 - (s/r)^6]``, each pair shifted
    to zero at ``r_cut``. Units: eV, A.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, epsilon: float = 0.00239, sigma: float = 3.41, r_cut: float = 8.5) -> None:
        super().__init__()
        self.epsilon, self.sigma, self.r_cut = epsilon, sigma, r_cut

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from matscipy.neighbours import neighbour_list  # 30x faster than ASE's here

        i, j, d, vec = neighbour_list("ijdD", self.atoms, self.r_cut)
        tags = self.atoms.get_tags()
        keep = tags[i] != tags[j]
        i, d, vec = i[keep], d[keep], vec[keep]
        s6 = (self.sigma / d) ** 6
        sc6 = (self.sigma / self.r_cut) ** 6
        e_pair = 4 * self.epsilon * ((s6 * s6 - s6) - (sc6 * sc6 - sc6))
        de_dr = 4 * self.epsilon * (-12 * s6 * s6 + 6 * s6) / d
        forces = np.zeros((len(self.atoms), 3))
        # every pair is listed twice (i->j and j->i): half the energy; the force on i is
        # -dE/dr_i = +dE/dr * D / r with D = r_j - r_i
        np.add.at(forces, i, (de_dr / d)[:, None] * vec)
        self.results = {"energy": 0.5 * float(e_pair.sum()), "forces": forces}


def potential_for(atoms):
    """The MD potential: Brenner, plus the interlayer term for layered structures (tags set)."""
    calc = _brenner()
    if atoms.info.get("family") == "Graphite":
        from ase.calculators.mixing import SumCalculator

        return SumCalculator([calc, InterlayerLJ()])
    return calc


# --------------------------------------------------------------------------- molecular dynamics
@dataclass(frozen=True)
class MDSettings:
    """Langevin MD: time step (fs), friction (1/fs), equilibration and sampling interval (steps)."""

    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    equilibration_steps: int = 2000
    interval_steps: int = 50


def md_snapshots(atoms, temperature_k: float, n_snapshots: int, *, seed: int,
                 settings: MDSettings = MDSettings()) -> Iterator:
    """Yield ``n_snapshots`` thermal snapshots (``ase.Atoms`` copies) of a Langevin trajectory.

    Velocities start from a Maxwell-Boltzmann distribution at ``temperature_k`` (seeded), the
    trajectory is equilibrated for ``settings.equilibration_steps`` and sampled every
    ``settings.interval_steps``. Deterministic for a given seed.
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    try:  # ASE >= 3.29; MaxwellBoltzmannDistribution (the same draw) before
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        def thermalize_momenta(atoms, temperature_K, *, rng=None):  # noqa: N803 - ASE's keyword
            MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)

    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.calc = potential_for(atoms)
    thermalize_momenta(atoms, temperature_k, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    # the centre of mass stays put (FixCom; Langevin's own fixcm is deprecated in ASE 3.28)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, settings.timestep_fs * units.fs, temperature_K=temperature_k,
                   friction=settings.friction_per_fs / units.fs, rng=rng, fixcm=False)
    dyn.run(settings.equilibration_steps)
    for _ in range(n_snapshots):
        dyn.run(settings.interval_steps)
        snap = atoms.copy()
        snap.calc = None
        snap.set_constraint()
        snap.arrays.pop("momenta", None)
        yield snap
