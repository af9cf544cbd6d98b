"""``pointsym soap``: SOAP features of any ASE-readable structure files, written to .npy / .npz.

Examples::

    pointsym soap frames.xyz --r-cut 5 --n-max 8 --l-max 6 --sigma 0.5 -o soap.npz
    pointsym soap POSCAR --periodic --species Si --r-cut 5 --n-max 8 --l-max 6 -o si.npy
    pointsym soap a.cif b.cif --average inner --compression crossover -o global.npy

The keywords mirror :class:`pointsym.descriptors.SOAP` (``--weighting`` and ``--compression``
take JSON, e.g. ``--weighting '{"function": "poly", "r0": 5, "c": 1, "m": 2}'``).

Output: ``.npy`` holds the array :meth:`SOAP.create` returns for the list of structures (it
must have one shape: equal centre counts, or averaging); ``.npz`` always works and holds
``features`` (all rows concatenated: ``(n_centers_total, n_features)``, or
``(n_structures, n_features)`` when averaged), ``structure`` (the structure index of every
row), ``species`` (atomic numbers of the layout), ``files`` and ``params`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pointsym.experiments.common.cli import RawDescriptionDefaultsHelpFormatter, add_common_arguments, progress

__all__ = ["register", "read_structures", "soap_from_args"]


def _json(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"Could not parse --{name} as JSON ({exc}); e.g. --{name} '{{\"mode\": \"crossover\"}}'."
        ) from exc


def read_structures(paths: list[str], index: str = ":", fmt: str | None = None) -> tuple[list, list[str]]:
    """Read every structure of every file with ``ase.io.read``; returns (atoms list, source file per atom)."""
    from ase.io import read

    atoms, sources = [], []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Input file {path!r} does not exist.")
        try:
            items = read(path, index=index, format=fmt)
        except Exception as exc:  # noqa: BLE001 - ase raises many types; report one clear error
            try:  # readable as a whole? then --index, not the format, is the problem
                n_frames = len(read(path, index=":", format=fmt))
            except Exception:  # noqa: BLE001
                n_frames = None
            if n_frames is not None:
                raise ValueError(f"--index {index!r} selects no frame of {path!r}, which holds {n_frames} frame(s) "
                                 f"(indices 0..{n_frames - 1}, negative from the end, or slices such as 0:5).") from exc
            tried = fmt or "guessed from the file name"
            raise ValueError(f"ASE could not read {path!r} (format {tried}; {type(exc).__name__}: {exc}); pass "
                             "--format with the right ase.io format (e.g. extxyz, vasp, cif), or fix the "
                             "file.") from exc
        items = items if isinstance(items, list) else [items]
        atoms.extend(items)
        sources.extend([path] * len(items))
    if not atoms:
        raise ValueError("No structures were read; check the files and --index.")
    return atoms, sources


def soap_from_args(args: argparse.Namespace, atoms: list) -> Any:
    """The :class:`SOAP` configured by the command-line keywords (species default: all elements present)."""
    from pointsym.descriptors import SOAP

    species = args.species
    if not species:
        species = sorted({int(z) for a in atoms for z in a.get_atomic_numbers()})
    text = args.compression
    compression = {"mode": text} if text and not text.lstrip().startswith("{") else _json("compression", text)
    return SOAP(
        species=species,
        r_cut=args.r_cut,
        n_max=args.n_max,
        l_max=args.l_max,
        sigma=args.sigma,
        rbf=args.rbf,
        weighting=_json("weighting", args.weighting),
        average=args.average,
        compression=compression,
        periodic=args.periodic,
        dtype=args.dtype,
        device=args.device,
        compat=args.compat,
    )


def _main(args: argparse.Namespace) -> int:
    from pointsym.experiments.common.cli import check_option

    out = Path(args.output)
    check_option("--batch-size", args.batch_size, min=1)
    check_option("--n-max", args.n_max, min=1)
    check_option("--l-max", args.l_max, min=0, max=20)
    check_option("--sigma", args.sigma, gt=0.0)
    if args.r_cut is not None:
        check_option("--r-cut", args.r_cut, gt=0.0)
    elif args.weighting is None:
        raise ValueError("Pass --r-cut (the cutoff radius in Å), or a --weighting that sets the cutoff.")
    if out.suffix not in (".npy", ".npz"):
        raise ValueError(f"Expected '--output' to end in .npy or .npz (got {str(out)!r}).")
    atoms, sources = read_structures(args.files, args.index, args.format)
    soap = soap_from_args(args, atoms)
    centres = _json("centers", args.centers)
    t0 = time.perf_counter()
    parts: list[np.ndarray] = []
    batches = range(0, len(atoms), args.batch_size)
    for start in progress(batches, quiet=args.quiet, desc="soap"):
        chunk = atoms[start : start + args.batch_size]
        feats = soap.create(list(chunk) if len(chunk) > 1 else chunk[0],
                            centers=None if centres is None
                            else ([centres] * len(chunk) if len(chunk) > 1 else centres))
        if len(chunk) == 1:
            feats = feats[None]
        parts.extend(list(feats))
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "species": soap.atomic_numbers.tolist(), "r_cut": soap.r_cut, "n_max": soap.n_max, "l_max": soap.l_max,
        "sigma": soap.sigma, "rbf": soap.rbf, "weighting": soap.weighting, "average": soap.average,
        "compression": soap.compression, "periodic": soap.periodic, "dtype": soap.dtype, "compat": soap.compat,
    }
    if out.suffix == ".npy":
        if len({p.shape for p in parts}) != 1:
            raise ValueError("Structures have different numbers of centres; write a .npz instead of a .npy.")
        np.save(out, np.stack(parts))
    else:
        rows = np.concatenate([p.reshape(-1, soap.get_number_of_features()) for p in parts])
        structure = np.concatenate([np.full(p.reshape(-1, rows.shape[1]).shape[0], k) for k, p in enumerate(parts)])
        np.savez(out, features=rows, structure=structure, species=soap.atomic_numbers, files=np.asarray(sources),
                 params=json.dumps(params))
    n_rows = sum(p.reshape(-1, soap.get_number_of_features()).shape[0] for p in parts)
    if not args.quiet:
        print(f"{len(atoms)} structures, {n_rows} feature rows x {soap.get_number_of_features()} features "
              f"in {seconds:.2f} s -> {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("soap", help="SOAP features of ASE-readable files -> .npy/.npz",
                       description=__doc__.split("\n\n")[0],
                       formatter_class=RawDescriptionDefaultsHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("files", nargs="+", help="structure files (anything ase.io.read understands)")
    p.add_argument("-o", "--output", required=True, help="output file, .npy or .npz")
    p.add_argument("--index", default=":", help="ase index of the frames to read from each file (default: all)")
    p.add_argument("--format", default=None, help="ase file format, if it cannot be guessed")
    p.add_argument("--species", nargs="*", default=None,
                   help="elements of the layout (default: every element present in the inputs)")
    p.add_argument("--r-cut", type=float, default=None, help="cutoff radius in Å (may be omitted with --weighting)")
    p.add_argument("--n-max", type=int, required=True, help="number of radial basis functions")
    p.add_argument("--l-max", type=int, required=True, help="largest spherical-harmonics degree (0..20)")
    p.add_argument("--sigma", type=float, default=1.0, help="Gaussian width in Å (default 1.0)")
    p.add_argument("--rbf", default="gto", choices=["gto", "polynomial"],
                   help="radial basis: gto (Gaussian-type orbitals) or polynomial (default gto)")
    p.add_argument("--weighting", default=None, help="weighting dict as JSON (DScribe keys)")
    p.add_argument("--average", default="off", choices=["off", "inner", "outer"],
                   help="averaging: off (one row per centre), inner or outer (one row per structure) (default off)")
    p.add_argument("--compression", default=None, help="compression dict as JSON, or just the mode name")
    p.add_argument("--periodic", action="store_true", help="use the cells and pbc of the structures")
    p.add_argument("--centers", default=None, help="centres for every structure as JSON (atom indices / points)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="floating-point precision of the computation and of the written features (float32 halves "
                        "the file size; default float64)")
    p.add_argument("--compat", action="store_true", help="reproduce DScribe's approximate numerics bit for bit")
    p.add_argument("--batch-size", type=int, default=64, help="structures per evaluation batch (default 64)")
    add_common_arguments(p)
    p.set_defaults(func=_main)
