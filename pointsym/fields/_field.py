"""The analytic structure field of a set of atoms: position field and species field.

For atoms ``{(p_k, z_k)}`` and a query point ``q`` (NeSF, Chiba et al. 2023):

- position field ``v(q) = p_{k*} - q`` with ``k* = argmin_k |p_k - q|`` (vector to the
  nearest atom, Å);
- species field: one-hot of the nearest atom's species ``e_{z_{k*}}``.

NeSF itself uses no periodicity (the atoms of one unit cell, nothing else). ``periodic=True``
is an extension: the nearest atom is searched over all lattice images (minimum image).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from pointsym.core import check_finite_array, check_int, check_points, to_numpy

__all__ = ["StructureField", "batched_nearest_atoms", "species_one_hot", "structure_field"]

# Brute-force torch search works on chunks of this many (query, atom) pairs to bound memory.
_TORCH_PAIR_CHUNK = 4_000_000


class StructureField(NamedTuple):
    """Value of the structure field at a set of queries.

    Attributes:
        vectors: position field, vector from each query to its nearest atom, shape ``(Q, 3)``
            (Å; numpy float64 or a torch tensor of the input dtype).
        species: species label of the nearest atom, shape ``(Q,)`` (integer); the argmax of
            the species field.
        nearest: index of the nearest atom in ``positions``, shape ``(Q,)`` (in periodic mode
            the index of the atom whose image is nearest).
    """

    vectors: Any
    species: Any
    nearest: Any

    @property
    def distances(self) -> Any:
        """Distance to the nearest atom, shape ``(Q,)`` (Å)."""
        if isinstance(self.vectors, torch.Tensor):
            return torch.linalg.vector_norm(self.vectors, dim=-1)
        return np.linalg.norm(self.vectors, axis=-1)

    def one_hot(self, num_species: int) -> Any:
        """Species field as one-hot vectors, shape ``(Q, num_species)`` (labels must be < S)."""
        return species_one_hot(self.species, num_species)


def species_one_hot(labels: Any, num_species: int) -> Any:
    """One-hot encode integer species labels ``(Q,)`` into ``(Q, num_species)`` floats."""
    num_species = check_int("num_species", num_species, minimum=1)
    if isinstance(labels, torch.Tensor):
        _check_label_range(labels.detach().cpu().numpy(), num_species)
        return torch.nn.functional.one_hot(labels.long(), num_species).to(torch.get_default_dtype())
    arr = np.asarray(labels)
    _check_label_range(arr, num_species)
    out = np.zeros((arr.shape[0], num_species))
    out[np.arange(arr.shape[0]), arr.astype(np.int64)] = 1.0
    return out


def _check_label_range(arr: np.ndarray, num_species: int) -> None:
    if arr.size and (arr.min() < 0 or arr.max() >= num_species):
        bad = arr[(arr < 0) | (arr >= num_species)][0]
        raise ValueError(
            f"Species label {int(bad)} is outside [0, {num_species}); map species to class indices "
            "first or increase 'num_species'."
        )


def _check_species(species: Any, n_atoms: int) -> np.ndarray:
    arr = to_numpy("species", species)
    if arr.ndim != 1 or arr.shape[0] != n_atoms:
        raise ValueError(f"Expected 'species' of shape ({n_atoms},), one label per atom (got shape {arr.shape}).")
    if arr.dtype.kind == "f":
        check_finite_array("species", arr)
        if not np.all(arr == np.round(arr)):
            raise TypeError("Expected integer species labels in 'species' (got non-integer floats).")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"Expected integer species labels in 'species' (got dtype {arr.dtype}).")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"Species labels must be >= 0 (got {int(arr.min())}); use atomic numbers or class indices.")
    return arr


def _check_cell(cell: Any) -> np.ndarray:
    if cell is None:
        raise ValueError("periodic=True needs 'cell', the (3, 3) matrix whose rows are the lattice vectors (Å).")
    arr = check_finite_array("cell", to_numpy("cell", cell, dtype=np.float64))
    if arr.shape != (3, 3):
        raise ValueError(f"Expected 'cell' of shape (3, 3), rows = lattice vectors (got shape {arr.shape}).")
    vol = abs(np.linalg.det(arr))
    if vol < 1e-8:
        raise ValueError(f"'cell' is singular (volume {vol:.3g} Å^3); pass three independent lattice vectors.")
    return arr


def _image_shifts(cell: np.ndarray) -> np.ndarray:
    """Integer lattice shifts that contain the nearest image of any atom for queries in the cell.

    A query and an atom both wrapped into the cell are at most the cell's longest body
    diagonal ``D`` apart, so only images with ``|n_i| <= ceil(D / d_i) + 1`` can be nearer,
    ``d_i`` being the spacing of the lattice planes normal to reciprocal vector ``i``.
    """
    a, b, c = cell
    diag = max(np.linalg.norm(v) for v in (a + b + c, a + b - c, a - b + c, -a + b + c))
    vol = abs(np.linalg.det(cell))
    spacing = np.array([vol / np.linalg.norm(np.cross(b, c)), vol / np.linalg.norm(np.cross(c, a)),
                        vol / np.linalg.norm(np.cross(a, b))])
    reach = np.ceil(diag / spacing).astype(int) + 1
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def _wrap(points: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = points @ np.linalg.inv(cell)
    return points - np.floor(frac) @ cell


def structure_field(
    positions: Any,
    species: Any,
    queries: Any,
    *,
    cell: Any = None,
    periodic: bool = False,
) -> StructureField:
    """Evaluate the exact structure field of one structure at many query points.

    numpy inputs use a KD-tree (scipy ``cKDTree``; millions of queries in seconds); torch
    inputs use a chunked brute-force search on the inputs' device and return tensors (the
    vectors are differentiable with respect to positions and queries).

    Args:
        positions: atom positions, shape ``(n, 3)`` (Å), ``n >= 1``.
        species: integer species label of each atom (atomic number or class index), ``(n,)``.
        queries: query points, shape ``(Q, 3)`` (Å); ``Q = 0`` is allowed.
        cell: lattice vectors as rows, ``(3, 3)`` (Å); only used when ``periodic``.
        periodic: search the nearest atom over all lattice images (minimum image) instead of
            the atoms as given (NeSF's definition, the default).

    Returns:
        A :class:`StructureField` ``(vectors (Q, 3), species (Q,), nearest (Q,))``.

    Raises:
        ValueError: empty structure, wrong shapes, NaN/inf, negative species, bad cell.
    """
    use_torch = any(isinstance(x, torch.Tensor) for x in (positions, queries))
    pos = check_points("positions", positions)
    spec = _check_species(species, pos.shape[0])
    qry = check_points("queries", queries, allow_empty=True)
    cell_arr = _check_cell(cell) if periodic else None
    if use_torch:
        return _field_torch(positions, spec, queries, cell_arr)
    if cell_arr is not None:
        q_wrapped = _wrap(qry, cell_arr)
        images, owner = _periodic_images(_wrap(pos, cell_arr), cell_arr)
        idx = _kdtree_nearest(images, q_wrapped)
        vectors = images[idx] - q_wrapped
        nearest = owner[idx]
    else:
        nearest = _kdtree_nearest(pos, qry)
        vectors = pos[nearest] - qry
    return StructureField(vectors, spec[nearest], nearest)


def _periodic_images(pos: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shifts = _image_shifts(cell).astype(np.float64) @ cell
    images = (pos[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    owner = np.tile(np.arange(pos.shape[0]), shifts.shape[0])
    return images, owner


def _kdtree_nearest(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    if queries.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, idx = cKDTree(points).query(queries, k=1, workers=1)
    return np.asarray(idx, dtype=np.int64)


def _field_torch(positions: Any, spec: np.ndarray, queries: Any, cell: np.ndarray | None) -> StructureField:
    ref = positions if isinstance(positions, torch.Tensor) else queries
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    pos = torch.as_tensor(positions, dtype=dtype, device=ref.device)
    qry = torch.as_tensor(queries, dtype=dtype, device=ref.device)
    n = pos.shape[0]
    owner = torch.arange(n, device=ref.device)
    if cell is not None:
        cell_t = torch.as_tensor(cell, dtype=dtype, device=ref.device)
        inv = torch.linalg.inv(cell_t)
        qry = qry - torch.floor(qry @ inv) @ cell_t
        pos_w = pos - torch.floor(pos @ inv) @ cell_t
        shifts = torch.as_tensor(_image_shifts(cell), dtype=dtype, device=ref.device) @ cell_t
        pos = (pos_w[None] + shifts[:, None]).reshape(-1, 3)
        owner = owner.repeat(shifts.shape[0])
    idx = _brute_nearest(pos, qry)
    vectors = pos[idx] - qry
    spec_t = torch.as_tensor(spec, device=ref.device)
    nearest = owner[idx]
    return StructureField(vectors, spec_t[nearest], nearest)


def _brute_nearest(points: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Index of the nearest point for each query (exact squared differences, no cdist matmul trick)."""
    chunk = max(1, _TORCH_PAIR_CHUNK // max(points.shape[0], 1))
    out = []
    with torch.no_grad():
        for start in range(0, queries.shape[0], chunk):
            q = queries[start:start + chunk]
            d2 = ((q[:, None, :] - points[None, :, :]) ** 2).sum(-1)
            out.append(d2.argmin(dim=1))
    if not out:
        return torch.zeros(0, dtype=torch.long, device=queries.device)
    return torch.cat(out)


def batched_nearest_atoms(
    positions: torch.Tensor, batch: torch.Tensor, queries: torch.Tensor, query_batch: torch.Tensor,
    num_structures: int | None = None,
) -> torch.Tensor:
    """Nearest atom of each query among the atoms of the query's own structure.

    The batched counterpart of :func:`structure_field` used in training (what
    ``torch_geometric.nn.pool.nearest`` does in the reference code).

    Args:
        positions: atoms of all structures, ``(N, 3)``.
        batch: structure index of each atom, ``(N,)`` long, sorted (atoms of a structure
            contiguous), every structure non-empty.
        queries: ``(Q, 3)``.
        query_batch: structure index of each query, ``(Q,)`` long.
        num_structures: ``B`` (default ``batch.max() + 1``).

    Returns:
        Global atom index (into ``positions``) of each query's nearest atom, ``(Q,)`` long.
    """
    if positions.ndim != 2 or positions.shape[-1] != 3 or queries.ndim != 2 or queries.shape[-1] != 3:
        raise ValueError(f"Expected positions (N, 3) and queries (Q, 3) (got {tuple(positions.shape)} and "
                         f"{tuple(queries.shape)}).")
    if batch.shape != positions.shape[:1] or query_batch.shape != queries.shape[:1]:
        raise ValueError("'batch' and 'query_batch' must give one structure index per atom / per query.")
    n_struct = int(batch.max()) + 1 if num_structures is None else int(num_structures)
    counts = torch.bincount(batch, minlength=n_struct)
    if bool((counts == 0).any()):
        raise ValueError(f"Structure {int(torch.nonzero(counts == 0)[0])} of the batch has no atoms.")
    start = torch.cumsum(counts, 0) - counts
    n_max = int(counts.max())
    slot = torch.arange(positions.shape[0], device=positions.device) - start[batch]
    padded = positions.new_full((n_struct, n_max, 3), float("inf"))
    padded[batch, slot] = positions.detach()
    out = []
    chunk = max(1, _TORCH_PAIR_CHUNK // n_max)
    with torch.no_grad():
        for s in range(0, queries.shape[0], chunk):
            q, qb = queries[s:s + chunk].detach(), query_batch[s:s + chunk]
            d2 = ((padded[qb] - q[:, None, :]) ** 2).sum(-1)
            d2 = torch.nan_to_num(d2, nan=float("inf"))  # inf - inf in padding slots
            out.append(d2.argmin(dim=1) + start[qb])
    if not out:
        return torch.zeros(0, dtype=torch.long, device=queries.device)
    return torch.cat(out)
