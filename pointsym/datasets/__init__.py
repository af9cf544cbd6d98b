"""Data access: one data-root resolver and loaders returning numpy arrays or ``ase.Atoms``.

No loader downloads anything. ``source="full"`` reads the data root (``--data-dir`` >
``$POINTSYM_DATA`` > ``../shared/data``); ``source="embedded"`` reads the small subsets
shipped inside the package (used by ``pointsym demo`` and the tests).
"""

from pointsym.datasets._root import DataNotFoundError, check_source, data_file, embedded_file, resolve_data_root
from pointsym.datasets.atomistic import ATOMISTIC_SETS, load_atomistic, read_atomistic
from pointsym.datasets.carbon_dos import (
    CARBON_DOS_FAMILIES,
    DOSSet,
    EnergyWindowError,
    carbon_dos_file,
    energy_window,
    load_carbon_dos,
)
from pointsym.datasets.crystals import CRYSTAL_SETS, load_crystals, read_crystals_csv, read_crystals_npz
from pointsym.datasets.mnist import load_mnist
from pointsym.datasets.modelnet import MODELNET10_CLASSES, load_modelnet10

__all__ = [
    "ATOMISTIC_SETS",
    "CARBON_DOS_FAMILIES",
    "CRYSTAL_SETS",
    "DOSSet",
    "DataNotFoundError",
    "EnergyWindowError",
    "MODELNET10_CLASSES",
    "carbon_dos_file",
    "energy_window",
    "check_source",
    "data_file",
    "embedded_file",
    "load_atomistic",
    "load_carbon_dos",
    "load_crystals",
    "load_mnist",
    "load_modelnet10",
    "read_atomistic",
    "read_crystals_csv",
    "read_crystals_npz",
    "resolve_data_root",
]
