"""Lazy, chunked descriptor computation over many structures with Dask (the ``dask`` extra).

:func:`create_dask` cuts a list of structures into chunks, makes one ``dask.delayed`` call of
``descriptor.create`` per chunk, and assembles the chunks into one ``dask.array.Array``. Nothing
runs until ``.compute()`` (or ``dask.compute``, ``.to_zarr``, ...), and then on whatever scheduler
is active: the threaded default, ``scheduler="processes"``, or a ``dask.distributed.Client`` the
user has started. This module never creates a cluster.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np

from pointsym.core import check_int
from pointsym.descriptors._systems import is_single_system

__all__ = ["create_dask"]

_INSTALL_HINT = "pip install 'pointsym[dask]' (or pip install dask)"


def _import_dask() -> tuple[Any, Any]:
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError(f"create_dask needs the optional dependency Dask: {_INSTALL_HINT}.") from exc
    return dask, da


def _n_atoms(item: Any, k: int) -> int:
    """Atom count of one structure in any form ``SOAP.create`` accepts, without converting it."""
    if hasattr(item, "get_positions"):  # ase.Atoms
        return len(item)
    if isinstance(item, dict):
        positions = item.get("positions")
    elif isinstance(item, tuple):
        positions = item[0] if item else None
    else:
        positions = item  # (n, 3) array / tensor of a single-species descriptor
    try:
        return len(positions)
    except TypeError:
        raise TypeError(
            f"Cannot count the atoms of systems[{k}] ({type(item).__name__}); expected an ase.Atoms, a dict "
            "with 'positions', a (positions, numbers[, cell[, pbc]]) tuple or an (n, 3) array."
        ) from None


def _n_centres(centres: Any, n_atoms: int) -> int:
    """Rows ``create`` returns for one system: every atom, or one per entry of its ``centers``."""
    if centres is None:
        return n_atoms
    try:
        return len(centres)
    except TypeError:  # a 0-d array: one atom index
        return 1


def _global_positions(message: str, start: int, n: int) -> str:
    """Rewrite the chunk-local ``system[k]`` / ``centers[k]`` of an error message to the user's index.

    A chunk of one structure is passed to ``create`` as a single system, whose messages carry
    no index: the index is then put in front.
    """
    shifted, count = re.subn(r"\b(system|systems|centers)\[(\d+)\]",
                             lambda m: f"{m.group(1)}[{start + int(m.group(2))}]", message)
    if count:
        return shifted
    where = f"systems[{start}]" if n == 1 else f"one of systems[{start}:{start + n}]"
    return f"{where}: {message}"


def _create_block(descriptor: Any, systems: list[Any], centres: list[Any] | None, create_kwargs: dict[str, Any],
                  shape: tuple[int, ...], counts: tuple[int, ...] | None, start: int = 0) -> Any:
    """``descriptor.create`` on one chunk, reshaped to the chunk's block of the global layout.

    ``create`` treats a one-element list as a single system and returns a list for systems of
    different sizes; both are brought to ``shape`` here (rows in input order).
    """
    try:
        out = descriptor.create(systems, centers=centres, **create_kwargs)
    except (ValueError, TypeError) as exc:
        raise type(exc)(_global_positions(str(exc), start, len(systems))) from exc
    if isinstance(out, list):
        rows = tuple(int(p.shape[0]) for p in out)
        if counts is not None and rows != counts:
            raise RuntimeError(f"descriptor.create returned {rows} rows per system where {counts} were expected.")
        out = np.concatenate(out, axis=0)  # dispatches to sparse.concatenate for sparse.COO parts
    if int(np.prod(out.shape)) != int(np.prod(shape)):
        raise RuntimeError(
            f"descriptor.create returned shape {tuple(out.shape)} for a chunk of {len(systems)} systems where a block "
            f"of shape {shape} was expected (per-system centre counts {counts})."
        )
    return out.reshape(shape)


def create_dask(descriptor: Any, systems: Any, *, centers: Any = None, chunk_size: int = 100,
                **create_kwargs: Any) -> Any:
    """Descriptor features of many structures as a lazy, chunked ``dask.array.Array``.

    The structures are cut, in order, into chunks of ``chunk_size``; each chunk becomes one task
    ``descriptor.create(chunk, centers=chunk_centers, **create_kwargs)``, and the blocks are
    joined along the first axis. The computed array equals ``descriptor.create(systems, centers)``
    (same values, dtype and layout), except that the per-centre output of structures with
    different centre counts is one concatenated array instead of a list (below). The descriptor
    is one shared node of the graph, so it is pickled once per worker by ``dask.distributed``
    (pointsym's :class:`~pointsym.descriptors.SOAP` pickles; so does DScribe's).

    Nothing is computed here: call ``.compute()`` (optionally ``scheduler="threads"`` /
    ``"processes"``, or inside a ``dask.distributed.Client`` you created), ``dask.compute``,
    ``.to_zarr`` and so on. With the threaded scheduler leave ``n_jobs`` unset: it sets torch's
    process-wide thread count, which concurrent tasks would fight over.

    Args:
        descriptor: a pointsym ``SOAP`` or any object with DScribe's ``create(system, centers=...)``,
            ``get_number_of_features()``, ``average`` and ``dtype`` (and optional ``sparse``).
        systems: a list (or other iterable) of structures, each in any form ``create`` accepts
            (``ase.Atoms``, dict, ``(positions, numbers[, cell[, pbc]])`` tuple, ``(n, 3)`` array);
            positions and cells in Å.
        centers: ``None`` (every atom is a centre) or a list with one entry per structure (``None``,
            or that structure's atom indices and/or Cartesian points in Å), as for ``create``.
        chunk_size: structures per task (>= 1). Each task should take well over a millisecond
            (Dask's per-task overhead), and its output, ``chunk_size x centres x n_features``
            floats, should fit comfortably in a worker's memory.
        **create_kwargs: passed on to every ``descriptor.create`` call (e.g. ``n_jobs``);
            checked against its signature here.

    Returns:
        A ``dask.array.Array`` of the descriptor's dtype (``sparse.COO`` blocks when the
        descriptor has ``sparse=True``), chunked along axis 0 by structure chunks:

        - averaged (``average != "off"``): ``(n_structures, n_features)``;
        - per centre, every structure with the same number of centres ``C``:
          ``(n_structures, C, n_features)``;
        - per centre, different counts: ``(total_centres, n_features)``, the structures' rows one
          after the other, where ``create`` would return a list. Split the computed array with
          ``np.split(x, np.cumsum(counts)[:-1])``, ``counts`` being each structure's number of
          atoms (``len(atoms)``) or of ``centers`` entries;
        - a single structure (one-element list), as ``create``: ``(n_features,)`` averaged, else
          ``(C, n_features)``.

    Raises:
        ImportError: Dask is not installed (install the ``dask`` extra).
        TypeError: ``systems`` is a single structure or not iterable, a structure's atoms cannot
            be counted, ``chunk_size`` is not an integer, or ``create_kwargs`` do not fit
            ``descriptor.create``.
        ValueError: ``systems`` is empty, ``chunk_size < 1``, or ``centers`` has not one entry per
            structure.

    Example:
        >>> import numpy as np
        >>> from ase.build import molecule
        >>> from pointsym.descriptors import SOAP, create_dask
        >>> soap = SOAP(species=["H", "C", "O"], r_cut=4.0, n_max=3, l_max=3, sigma=0.5, average="inner")
        >>> systems = [molecule(name) for name in ("H2O", "CH4", "CH3OH", "CO2", "H2CO")]
        >>> x = create_dask(soap, systems, chunk_size=2)  # lazy: three tasks of <= 2 structures
        >>> x.shape, x.chunks[0]
        ((5, 180), (2, 2, 1))
        >>> bool(np.allclose(x.compute(scheduler="threads"), soap.create(systems)))
        True
    """
    dask, da = _import_dask()
    chunk_size = check_int("chunk_size", chunk_size)
    if chunk_size < 1:
        raise ValueError(
            f"Expected 'chunk_size' >= 1 structures per task (got {chunk_size}); pass a positive integer, "
            "e.g. chunk_size=100."
        )
    if is_single_system(systems):
        raise TypeError(
            "create_dask expects a list of structures (got a single structure); wrap it in a list, or call "
            "descriptor.create for one structure."
        )
    try:
        items = list(systems)
    except TypeError:
        raise TypeError(
            f"Expected 'systems' to be a list of structures (got {type(systems).__name__})."
        ) from None
    if not items:
        raise ValueError("'systems' is empty; pass at least one structure.")
    n = len(items)
    if centers is not None:
        if not isinstance(centers, (list, tuple)) or len(centers) != n:
            got = f"{type(centers).__name__} of length {len(centers)}" if hasattr(centers, "__len__") else repr(centers)
            raise ValueError(
                f"With {n} structures, 'centers' must be None or a list with one entry per structure (got {got})."
            )
        centers = list(centers)
    try:
        inspect.signature(descriptor.create).bind(items, centers=centers, **create_kwargs)
    except TypeError as exc:
        raise TypeError(f"create_kwargs do not fit descriptor.create: {exc}.") from None

    n_features = int(descriptor.get_number_of_features())
    dtype = np.dtype(getattr(descriptor, "dtype", "float64"))
    averaged = getattr(descriptor, "average", "off") != "off"
    counts: list[int] | None = None
    if not averaged:
        counts = [
            _n_centres(None if centers is None else centers[k], _n_atoms(item, k)) for k, item in enumerate(items)
        ]
    equal = counts is not None and len(set(counts)) == 1

    sparse_out = bool(getattr(descriptor, "sparse", False))
    if sparse_out:
        import sparse

    # One graph node for the descriptor: shipped once per worker, not once per task.
    desc = dask.delayed(descriptor, pure=True)
    blocks = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        k = stop - start
        chunk_counts = None if counts is None else tuple(counts[start:stop])
        if n == 1:
            shape: tuple[int, ...] = (n_features,) if averaged else (counts[0], n_features)  # type: ignore[index]
        elif averaged:
            shape = (k, n_features)
        elif equal:
            shape = (k, counts[0], n_features)  # type: ignore[index]
        else:
            shape = (sum(chunk_counts), n_features)  # type: ignore[arg-type]
        # pure=False: random task keys, so the structures are never hashed (tokenised) here.
        task = dask.delayed(_create_block, pure=False)(
            desc, items[start:stop], None if centers is None else centers[start:stop], dict(create_kwargs),
            shape, chunk_counts, start,
        )
        meta = sparse.COO.from_numpy(np.zeros((0,) * len(shape), dtype=dtype)) if sparse_out else None
        blocks.append(da.from_delayed(task, shape=shape, dtype=dtype, meta=meta))
    return blocks[0] if len(blocks) == 1 else da.concatenate(blocks, axis=0)
