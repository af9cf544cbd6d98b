"""Invariance and equivariance checks under rotations, reflections, permutations, translations.

The function under test is called on the original inputs and on transformed copies; its
outputs are transformed back according to their declared type and compared in float64.

Output types (one per output; a tuple/list/dict output takes a matching tuple/list/dict):

=================  ==========================================================================
``"invariant"``    unchanged by every transformation (energies, descriptors of a whole system)
``"vector"``       last axis (size 3) rotates like a direction; unchanged by translation
``"point"``        last axis rotates and translates like a position
``"atom_invariant"``  like ``"invariant"`` but has an atom axis that follows permutations
``"atom_vector"``     per-atom vectors (forces)
``"atom_point"``      per-atom positions
=================  ==========================================================================

The atom axis of per-atom outputs and inputs is ``positions.ndim - 2`` (axis 0 for an
``(n, 3)`` cloud, axis 1 for a batch ``(b, n, 3)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pointsym.core import check_choice, check_int

__all__ = ["OUTPUT_TYPES", "assert_equivariant", "assert_invariant", "equivariance_error"]

OUTPUT_TYPES = ("invariant", "vector", "point", "atom_invariant", "atom_vector", "atom_point")
KINDS = ("rotation", "reflection", "permutation", "translation")


def _is_torch(x: Any) -> bool:
    try:
        import torch

        return isinstance(x, torch.Tensor)
    except ImportError:  # pragma: no cover
        return False


def _is_atoms(x: Any) -> bool:
    return hasattr(x, "get_positions") and hasattr(x, "cell") and hasattr(x, "numbers")


def _to64(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _like(value: np.ndarray, ref: Any) -> Any:
    """Cast a float64 numpy array back to the container/dtype/device of ``ref``."""
    if _is_torch(ref):
        import torch

        out = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
        return out.requires_grad_(ref.requires_grad) if ref.is_floating_point() else out
    ref_arr = np.asarray(ref)
    return value.astype(ref_arr.dtype if ref_arr.dtype.kind == "f" else np.float64)


def _permute(x: Any, perm: np.ndarray, axis: int) -> Any:
    if _is_torch(x):
        import torch

        return torch.index_select(x, axis, torch.as_tensor(perm, device=x.device))
    return np.take(np.asarray(x), perm, axis=axis)


class _Transform:
    """One random group element acting on inputs and outputs."""

    def __init__(self, kind: str, rng: np.random.Generator, n_atoms: int) -> None:
        from pointsym.geometry import random_reflection, random_rotation

        self.kind = kind
        self.R = np.eye(3)
        self.t = np.zeros(3)
        self.perm = np.arange(n_atoms)
        if kind == "rotation":
            self.R = random_rotation(seed=rng)
        elif kind == "reflection":
            self.R = random_reflection(seed=rng)
        elif kind == "translation":
            self.t = rng.normal(scale=3.0, size=3)
        else:
            self.perm = rng.permutation(n_atoms)

    def points(self, x: np.ndarray) -> np.ndarray:
        return x @ self.R.T + self.t

    def vectors(self, x: np.ndarray) -> np.ndarray:
        return x @ self.R.T

    def output(self, ref: np.ndarray, kind: str, atom_axis: int) -> np.ndarray:
        """Expected output of the transformed input, given the reference output ``ref``."""
        base = kind.replace("atom_", "")
        out = ref
        if base == "vector":
            out = self.vectors(out)
        elif base == "point":
            out = self.points(out)
        if kind.startswith("atom_"):
            out = np.take(out, self.perm, axis=atom_axis)
        return out


def _flatten(outputs: Any, types: Any) -> list[tuple[str, Any, str]]:
    if isinstance(outputs, Mapping):
        if isinstance(types, str):
            types = {k: types for k in outputs}
        return [(str(k), outputs[k], types[k]) for k in outputs]
    if isinstance(outputs, (tuple, list)):
        if isinstance(types, str):
            types = [types] * len(outputs)
        if len(types) != len(outputs):
            raise ValueError(f"'outputs' declares {len(types)} types but the function returned {len(outputs)} outputs.")
        return [(str(k), o, t) for k, (o, t) in enumerate(zip(outputs, types))]
    if not isinstance(types, str):
        raise ValueError(f"The function returned one output, so 'outputs' must be a single type (got {types!r}).")
    return [("output", outputs, types)]


def _validate_types(types: Any) -> None:
    values = types.values() if isinstance(types, Mapping) else ([types] if isinstance(types, str) else types)
    for t in values:
        check_choice("outputs", t, OUTPUT_TYPES)


def equivariance_error(
    fn: Callable[..., Any],
    inputs: Any,
    kind: str = "rotation",
    *,
    outputs: Any = "invariant",
    positions_key: str = "positions",
    atom_inputs: Sequence[str] = ("species", "numbers", "types"),
    vector_inputs: Sequence[str] = ("cell",),
    n_trials: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Largest deviation from equivariance of ``fn`` over ``n_trials`` random transformations.

    Args:
        fn: function under test. Called as ``fn(**inputs)`` for a dict, else ``fn(inputs)``.
        inputs: an ``(n, 3)`` / ``(b, n, 3)`` array or tensor of positions, an ``ase.Atoms``,
            or a dict of keyword arguments holding the positions under ``positions_key``.
        kind: ``"rotation"`` (Haar SO(3)), ``"reflection"`` (improper O(3) elements),
            ``"permutation"`` (of the atom axis) or ``"translation"``.
        outputs: declared type of each output (see module docstring).
        positions_key: dict key of the positions.
        atom_inputs: dict keys permuted together with the positions.
        vector_inputs: dict keys rotated like vectors (rows of a cell matrix).
        n_trials: number of random group elements.
        seed: seed of the random group elements.

    Returns:
        ``{output_name: {"abs": max abs error, "rel": max of abs error / max|output|,
        "scale": max|output|}}``.
    """
    check_choice("kind", kind, KINDS)
    check_int("n_trials", n_trials, minimum=1)
    _validate_types(outputs)
    rng = np.random.default_rng(seed)

    if _is_atoms(inputs):
        pos_ref = inputs.get_positions()
    elif isinstance(inputs, Mapping):
        if positions_key not in inputs:
            raise ValueError(f"'inputs' has no key {positions_key!r}; set 'positions_key' to the key of the positions.")
        pos_ref = inputs[positions_key]
    else:
        pos_ref = inputs
    pos64 = _to64(pos_ref)
    if pos64.ndim < 2 or pos64.shape[-1] != 3:
        raise ValueError(f"Expected positions of shape (n, 3) or (b, n, 3) (got {pos64.shape}).")
    atom_axis = pos64.ndim - 2

    def call(transform: _Transform | None) -> Any:
        if transform is None:
            args = inputs
        elif _is_atoms(inputs):
            args = inputs.copy()
            args = args[transform.perm] if transform.kind == "permutation" else args
            args.positions = transform.points(args.get_positions())
            args.cell = transform.vectors(np.asarray(args.cell[:]))
        else:
            new_pos = np.take(transform.points(pos64), transform.perm, axis=atom_axis)
            if isinstance(inputs, Mapping):
                args = dict(inputs)
                args[positions_key] = _like(new_pos, pos_ref)
                for key in atom_inputs:
                    if key in args and args[key] is not None and transform.kind == "permutation":
                        args[key] = _permute(args[key], transform.perm, atom_axis)
                for key in vector_inputs:
                    if key in args and args[key] is not None:
                        args[key] = _like(transform.vectors(_to64(args[key])), args[key])
            else:
                args = _like(new_pos, pos_ref)
        return fn(**args) if isinstance(args, Mapping) else fn(args)

    reference = _flatten(call(None), outputs)
    errors = {name: {"abs": 0.0, "rel": 0.0, "scale": 0.0} for name, _, _ in reference}
    n_atoms = pos64.shape[atom_axis]
    for _ in range(n_trials):
        tr = _Transform(kind, rng, n_atoms)
        got = _flatten(call(tr), outputs)
        for (name, ref, typ), (_, new, _) in zip(reference, got):
            expected = tr.output(_to64(ref), typ, atom_axis)
            new64 = _to64(new)
            if new64.shape != expected.shape:
                raise ValueError(f"Output {name!r} changed shape under {kind}: {expected.shape} -> {new64.shape}.")
            err = float(np.max(np.abs(new64 - expected))) if new64.size else 0.0
            scale = float(np.max(np.abs(expected))) if expected.size else 0.0
            errors[name]["abs"] = max(errors[name]["abs"], err)
            errors[name]["scale"] = max(errors[name]["scale"], scale)
            errors[name]["rel"] = max(errors[name]["rel"], err / scale if scale > 0 else err)
    return errors


def _default_tol(inputs: Any, positions_key: str) -> float:
    ref = inputs[positions_key] if isinstance(inputs, Mapping) else inputs
    dtype = getattr(ref, "dtype", None)
    if _is_torch(ref):
        import torch

        return 1e-9 if dtype == torch.float64 else 1e-4
    if _is_atoms(ref):
        return 1e-9
    return 1e-9 if np.asarray(ref).dtype == np.float64 else 1e-4


def assert_equivariant(
    fn: Callable[..., Any],
    inputs: Any,
    kind: str = "rotation",
    *,
    outputs: Any = "invariant",
    rtol: float | None = None,
    atol: float = 0.0,
    **kwargs: Any,
) -> dict[str, dict[str, float]]:
    """Raise ``AssertionError`` if ``fn`` is not equivariant within tolerance.

    An output passes when ``abs_error <= atol + rtol * max|output|``. ``rtol`` defaults to
    1e-9 for float64 inputs and 1e-4 for float32. Other keywords go to
    :func:`equivariance_error`. Returns the error dict for logging.
    """
    errors = equivariance_error(fn, inputs, kind, outputs=outputs, **kwargs)
    tol = _default_tol(inputs, kwargs.get("positions_key", "positions")) if rtol is None else rtol
    failed = {k: v for k, v in errors.items() if v["abs"] > atol + tol * v["scale"]}
    if failed:
        details = ", ".join(f"{k}: abs {v['abs']:.3e}, rel {v['rel']:.3e}" for k, v in failed.items())
        raise AssertionError(f"Not {kind}-equivariant within rtol={tol:g}, atol={atol:g}: {details}")
    return errors


def assert_invariant(
    fn: Callable[..., Any],
    inputs: Any,
    kind: str = "rotation",
    *,
    per_atom: bool = False,
    **kwargs: Any,
) -> dict[str, dict[str, float]]:
    """Assert that every output of ``fn`` is invariant under ``kind``.

    ``per_atom=True`` declares outputs whose atom axis follows permutations (per-centre
    descriptors). A multi-output ``fn`` may pass ``outputs=`` with a matching structure of
    ``"invariant"``/``"atom_invariant"``. See :func:`assert_equivariant` for tolerances.
    """
    outputs = kwargs.pop("outputs", "atom_invariant" if per_atom else "invariant")
    flat = outputs.values() if isinstance(outputs, Mapping) else ([outputs] if isinstance(outputs, str) else outputs)
    if any(t not in ("invariant", "atom_invariant") for t in flat):
        raise ValueError(
            f"assert_invariant takes only invariant output types (got {outputs!r}); use assert_equivariant."
        )
    return assert_equivariant(fn, inputs, kind, outputs=outputs, **kwargs)
