"""Crystal-structure sets: the NeSF npz sets and the CDVAE CSV (CIF) sets, as ``ase.Atoms``."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from pointsym.datasets._root import check_source, data_file, embedded_file

__all__ = ["CRYSTAL_SETS", "load_crystals", "read_crystals_csv", "read_crystals_npz", "read_nesf_arrays",
           "resolve_species_map"]

# name -> split -> file relative to the data root
_NSF = {
    "lim_l6": {s: f"nsf_crystals/lim_l6_{s}.npz" for s in ("train", "val", "test")},
    "ICSG3D": {"val": "nsf_crystals/ICSG3D_val.npz", "test": "nsf_crystals/ICSG3D_test.npz",
               "train": "nsf_crystals/ICSG3D_train.npz"},
    "YBCO13": {s: f"nsf_crystals/YBCO13_fold0_{s}.npz" for s in ("train", "val", "test")},
}
_CDVAE = {
    "perov_5": {"train": "cdvae_crystals/perov_5/train_subset_cosmosyou.csv.gz",
                "val": "cdvae_crystals/perov_5/val.csv.gz", "test": "cdvae_crystals/perov_5/test.csv.gz"},
    "carbon_24": {"train": "cdvae_crystals/carbon_24/train.csv.gz",
                  "val": "cdvae_crystals/carbon_24/val.csv.gz", "test": "cdvae_crystals/carbon_24/test.csv.gz"},
    "mp_20": {s: f"cdvae_crystals/mp_20/{s}_subset.csv.gz" for s in ("train", "val", "test")},
}
CRYSTAL_SETS = {**_NSF, **_CDVAE}
_EMBEDDED = {("lim_l6", s): f"lim_l6_{s}_subset.npz" for s in ("train", "val", "test")}
_EMBEDDED[("perov_5", "val")] = "perov_5_val_subset.csv.gz"


def _attr_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npz")] + ".attr.json")


def resolve_species_map(path: str | os.PathLike[str], raw: np.ndarray, sidx_to_z: Any = "auto") -> np.ndarray:
    """Turn the ``numbers`` stored in a NeSF npz into atomic numbers.

    The NeSF files store each atom's *species index* (position in the data set's sorted list
    of elements), not its atomic number; the map is ``sidx_to_z`` in ``<stem>.attr.json``
    beside the npz, and it differs between data sets.

    Args:
        path: the npz file (used to find ``<stem>.attr.json``).
        raw: the stored ``numbers``.
        sidx_to_z: ``"auto"`` (default): the map in ``<stem>.attr.json`` when present, else
            ``numbers`` are taken as atomic numbers with a warning (an error when an index 0
            shows they cannot be); a sequence: that map; ``None``: ``numbers`` as they are.

    Returns:
        int64 atomic numbers, same shape as ``raw``.
    """
    path = Path(path)
    raw = np.asarray(raw, dtype=np.int64)
    if isinstance(sidx_to_z, str):
        if sidx_to_z != "auto":
            raise ValueError(
                f"Expected 'sidx_to_z' to be 'auto', None or a sequence of atomic numbers (got {sidx_to_z!r})."
            )
        attr = _attr_path(path)
        if attr.is_file():
            sidx_to_z = json.loads(attr.read_text())["sidx_to_z"]
        elif raw.size and raw.min() < 1:
            raise ValueError(
                f"{str(path)!r} stores species index 0, so its 'numbers' are species indices, but "
                f"{attr.name!r} (with 'sidx_to_z') is not beside it; put it there or pass sidx_to_z=[...]."
            )
        else:
            warnings.warn(f"No {attr.name!r} beside {str(path)!r}: taking its 'numbers' as atomic numbers.",
                          stacklevel=3)
            return raw
    if sidx_to_z is None:
        return raw
    table = np.asarray(sidx_to_z, dtype=np.int64)
    if raw.size and (raw.min() < 0 or raw.max() >= len(table)):
        raise ValueError(f"{str(path)!r} has species indices up to {int(raw.max())} but 'sidx_to_z' has only "
                         f"{len(table)} entries; is it the map of another data set?")
    return table[raw]


def read_nesf_arrays(path: str | os.PathLike[str], *, sidx_to_z: Sequence[int] | str | None = "auto") -> dict:
    """Flat arrays of a NeSF-format npz, with ``numbers`` mapped to atomic numbers.

    Returns a dict with ``positions`` float64 ``(sum N, 3)`` Å, ``numbers`` int64 ``(sum N,)``
    atomic numbers (via :func:`resolve_species_map`), ``offsets`` int64 ``(M + 1,)``,
    ``lengths`` float64 ``(M, 3)`` Å, ``angles_rad`` float64 ``(M, 3)`` and ``mpid`` (M strings,
    the structure index when the file has none).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Crystal file {str(path)!r} does not exist.")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, "pickled (object) data", EOFError, OSError, ...
        why = ("a truncated or corrupt zip archive" if type(exc).__name__ == "BadZipFile" else
               "not a numpy file at all" if "pickled" in str(exc) else f"{type(exc).__name__}: {exc}")
        raise ValueError(f"{str(path)!r} is not a readable .npz archive ({why}); expected a NeSF "
                         "crystal npz with the arrays positions, numbers, offsets, lengths and angles_rad "
                         "(as written by numpy.savez or pointsym's write_npz).") from exc
    if not hasattr(archive, "files"):
        raise ValueError(f"{str(path)!r} holds a single numpy array, not a NeSF crystal npz with the arrays "
                         "positions, numbers, offsets, lengths and angles_rad.")
    with archive as d:
        missing = {"positions", "numbers", "offsets", "lengths", "angles_rad"} - set(d.files)
        if missing:
            raise ValueError(f"{str(path)!r} is not a NeSF crystal npz: missing arrays {sorted(missing)}.")
        off = np.asarray(d["offsets"], np.int64)
        arrays = {
            "positions": np.asarray(d["positions"], np.float64),
            "numbers": resolve_species_map(path, d["numbers"], sidx_to_z),
            "offsets": off,
            "lengths": np.asarray(d["lengths"], np.float64),
            "angles_rad": np.asarray(d["angles_rad"], np.float64),
            "mpid": [str(m) for m in d["mpid"]] if "mpid" in d.files else [str(k) for k in range(len(off) - 1)],
        }
    return arrays


def read_crystals_npz(path: str | os.PathLike[str], *, sidx_to_z: Sequence[int] | str | None = "auto") -> list:
    """Read a NeSF-format npz (``positions, numbers, offsets, lengths, angles_rad[, mpid]``).

    ``numbers`` in these files are species indices; they are mapped to atomic numbers with
    :func:`resolve_species_map` (``sidx_to_z`` has the same meaning there).

    Returns periodic ``ase.Atoms`` (cell from lengths in Å and angles converted to degrees,
    ase's ``cellpar_to_cell`` convention), with ``info["mpid"]``.
    """
    from ase import Atoms

    d = read_nesf_arrays(path, sidx_to_z=sidx_to_z)
    pos, num, off, mpid = d["positions"], d["numbers"], d["offsets"], d["mpid"]
    lengths, angles = d["lengths"], np.degrees(d["angles_rad"])
    out = []
    for k in range(len(off) - 1):
        a = Atoms(numbers=num[off[k]:off[k + 1]], positions=pos[off[k]:off[k + 1]],
                  cell=np.r_[lengths[k], angles[k]], pbc=True)
        a.info["mpid"] = mpid[k]
        out.append(a)
    return out


def read_crystals_csv(path: str | os.PathLike[str]) -> list:
    """Read a CDVAE-format CSV (optionally gzipped) with a ``cif`` column into ``ase.Atoms``.

    All other columns go into ``atoms.info`` (numbers parsed as float where possible).
    """
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Crystal file {str(path)!r} does not exist.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "cif" not in reader.fieldnames:
            raise ValueError(f"{str(path)!r} has no 'cif' column; is it a CDVAE CSV?")
        out = []
        for row in reader:
            atoms = cast("ase.Atoms", ase.io.read(io.StringIO(row.pop("cif")), format="cif"))  # one image
            for key, value in row.items():
                if key == "":
                    key = "row_index"
                try:
                    atoms.info[key] = float(value)
                except (TypeError, ValueError):
                    atoms.info[key] = value
            out.append(atoms)
    return out


def load_crystals(
    name: str, split: str = "train", *, source: str = "full", data_dir: str | os.PathLike[str] | None = None
) -> list:
    """Load a crystal data set as a list of periodic ``ase.Atoms``.

    Args:
        name: ``"lim_l6"``, ``"ICSG3D"``, ``"YBCO13"`` (fold 0) -- NeSF npz sets -- or
            ``"perov_5"``, ``"carbon_24"``, ``"mp_20"`` -- CDVAE CSV sets. Several splits are
            subsets or missing in the shared data (see ``SOURCE.md``); a missing one raises
            an error naming the file.
        split: ``"train"``, ``"val"`` or ``"test"``.
        source: ``"full"`` (data root) or ``"embedded"`` (lim_l6 60/20/20 and perov_5 val 20).
        data_dir: data root override.
    """
    if name not in CRYSTAL_SETS:
        raise ValueError(f"Expected 'name' to be one of {sorted(CRYSTAL_SETS)} (got {name!r}).")
    splits = CRYSTAL_SETS[name]
    if split not in splits:
        raise ValueError(f"Expected 'split' to be one of {sorted(splits)} for {name!r} (got {split!r}).")
    if check_source(source) == "embedded":
        if (name, split) not in _EMBEDDED:
            have = sorted(f"{n}/{s}" for n, s in _EMBEDDED)
            raise ValueError(f"No embedded subset for {name}/{split}; embedded crystal sets are {have}.")
        path = embedded_file(_EMBEDDED[(name, split)])
    else:
        path = data_file(splits[split], data_dir, what=f"Crystal set {name}/{split}")
    return read_crystals_npz(path) if path.name.endswith(".npz") else read_crystals_csv(path)
