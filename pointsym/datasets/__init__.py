"""Data access: one data-root resolver and loaders returning numpy arrays or ``ase.Atoms``.

No loader downloads anything. ``source="full"`` reads the data root (``--data-dir`` >
``$POINTSYM_DATA`` > ``../shared/data``); ``source="embedded"`` reads the small subsets
shipped inside the package (used by ``pointsym demo`` and the tests).
"""

from pointsym.datasets._root import DataNotFoundError, check_source, data_file, embedded_file, resolve_data_root
from pointsym.datasets.atomistic import ATOMISTIC_SETS, load_atomistic, read_atomistic
from pointsym.datasets.crystals import CRYSTAL_SETS, load_crystals, read_crystals_csv, read_crystals_npz
from pointsym.datasets.mnist import load_mnist
from pointsym.datasets.modelnet import MODELNET10_CLASSES, load_modelnet10

__all__ = [
    "ATOMISTIC_SETS",
    "CRYSTAL_SETS",
    "DataNotFoundError",
    "MODELNET10_CLASSES",
    "check_source",
    "data_file",
    "embedded_file",
    "load_atomistic",
    "load_crystals",
    "load_mnist",
    "load_modelnet10",
    "read_atomistic",
    "read_crystals_csv",
    "read_crystals_npz",
    "resolve_data_root",
]
