"""Energy/force data sets (extended XYZ) for interatomic potentials, in eV and eV/Å."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pointsym.datasets._root import check_source, data_file, embedded_file
from pointsym.structures import read_structures

__all__ = ["ATOMISTIC_SETS", "KCAL_PER_MOL_TO_EV", "load_atomistic", "read_atomistic"]

KCAL_PER_MOL_TO_EV = 0.0433641042

_MLEARN = {
    el: {"train": f"mlip_small/mlearn/{el}_training.extxyz.gz", "test": f"mlip_small/mlearn/{el}_test.extxyz.gz"}
    for el in ("Si", "Ge", "Li", "Mo")
}
# mlearn's Cu and Ni training sets are not available (see mlip_small/SOURCE.md).
_MLEARN.update({el: {"test": f"mlip_small/mlearn/{el}_test.extxyz.gz"} for el in ("Cu", "Ni")})
ATOMISTIC_SETS: dict[str, dict[str, str]] = {
    **_MLEARN,
    "methane": {s: f"mlip_small/pet_methane/methane_{s}.xyz" for s in ("train", "val", "test")},
    "water": {"all": "mlip_small/pet_methane/water_bulk_single.xyz"},
    "ethanol": {"all": "mlip_small/metatrain/ethanol_reduced_100.xyz"},
    "carbon": {"all": "mlip_small/metatrain/carbon_reduced_100.xyz"},
}
# Files whose energies/forces are in kcal/mol and kcal/mol/Å (rMD17 native units).
_KCAL = {"ethanol"}
_EMBEDDED = {
    ("Si", "train"): "Si_train_subset.xyz.gz",
    ("Si", "test"): "Si_test_subset.xyz.gz",
    ("methane", "train"): "methane_train_subset.xyz.gz",
    ("methane", "val"): "methane_val_subset.xyz.gz",
    ("methane", "test"): "methane_test_subset.xyz.gz",
}


def read_atomistic(path: str | os.PathLike[str], *, kcal: bool = False) -> list:
    """Read an extxyz file into ``ase.Atoms`` with unified labels.

    Every frame gets ``info["energy"]`` (eV) and ``arrays["forces"]`` (eV/Å), whichever of
    ``energy``/calculator, ``force``/``forces`` the file uses; ``kcal=True`` converts from
    kcal/mol. Frames keep their calculator-free form (labels are plain data).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Structure file {str(path)!r} does not exist.")
    frames = read_structures(path)
    scale = KCAL_PER_MOL_TO_EV if kcal else 1.0
    out = []
    for atoms in frames:
        energy = atoms.info.get("energy")
        forces = atoms.arrays.get("forces", atoms.arrays.get("force"))
        if atoms.calc is not None:
            results = atoms.calc.results
            energy = results.get("energy", energy)
            forces = results.get("forces", forces)
        clean = atoms.copy()  # drops the calculator
        clean.calc = None
        for key in ("force", "forces"):
            if key in clean.arrays:
                del clean.arrays[key]
        if energy is not None:
            clean.info["energy"] = float(energy) * scale
        if forces is not None:
            clean.arrays["forces"] = np.asarray(forces, dtype=np.float64) * scale
        out.append(clean)
    return out


def load_atomistic(
    name: str, split: str = "train", *, source: str = "full", data_dir: str | os.PathLike[str] | None = None
) -> list:
    """Load an energy/force set from ``mlip_small`` as ``ase.Atoms`` (eV, eV/Å).

    Args:
        name: mlearn element ``"Si" | "Ge" | "Li" | "Mo"`` (train/test), ``"Cu" | "Ni"``
            (test only), ``"methane"`` (train/val/test, PET's set), ``"water"``,
            ``"ethanol"`` (rMD17 subset, converted from kcal/mol) or ``"carbon"`` (split "all").
        split: see ``name``.
        source: ``"full"`` or ``"embedded"`` (Si 50 train / 25 test; methane 50/25/25).
        data_dir: data root override.

    Returns:
        list of ``ase.Atoms`` with ``info["energy"]`` and ``arrays["forces"]``.
    """
    if name not in ATOMISTIC_SETS:
        raise ValueError(f"Expected 'name' to be one of {sorted(ATOMISTIC_SETS)} (got {name!r}).")
    splits = ATOMISTIC_SETS[name]
    if split not in splits:
        raise ValueError(f"Expected 'split' to be one of {sorted(splits)} for {name!r} (got {split!r}).")
    if check_source(source) == "embedded":
        if (name, split) not in _EMBEDDED:
            have = sorted(f"{n}/{s}" for n, s in _EMBEDDED)
            raise ValueError(f"No embedded subset for {name}/{split}; embedded sets are {have}.")
        return read_atomistic(embedded_file(_EMBEDDED[(name, split)]))
    path = data_file(splits[split], data_dir, what=f"Atomistic set {name}/{split}")
    return read_atomistic(path, kcal=name in _KCAL)
