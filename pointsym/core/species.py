"""The one parser of ``species``: the element list a model or descriptor knows."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["atomic_number", "parse_species"]


def atomic_number(value: Any, name: str = "species") -> int:
    """Atomic number of a chemical symbol (``"Si"``) or an integer in ``[1, 118]``.

    Raises:
        ValueError: unknown symbol, or a number outside ``[1, 118]``.
        TypeError: anything else (floats such as 1.5 and bools included).
    """
    from ase.data import atomic_numbers

    if isinstance(value, (str, np.str_)):
        if str(value) not in atomic_numbers or str(value) == "X":
            raise ValueError(f"Unknown chemical symbol {str(value)!r} in '{name}'; use symbols such as 'H' or 'Si'.")
        return int(atomic_numbers[str(value)])
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected '{name}' to contain chemical symbols or integer atomic numbers "
                        f"(got {value!r} of type {type(value).__name__}).")
    if not 1 <= int(value) <= 118:
        raise ValueError(f"Atomic numbers in '{name}' must be in [1, 118] (got {int(value)}).")
    return int(value)


def parse_species(species: Any, name: str = "species", *, ordered: bool = False) -> list[int]:
    """Sorted unique atomic numbers from chemical symbols and/or atomic numbers.

    Args:
        species: a symbol, an atomic number, or an iterable of them (``["H", "C"]``,
            ``[1, 6]``, ``{"O", 1}``).
        name: argument name used in error messages.
        ordered: keep the given order (for vocabularies whose order defines class indices,
            e.g. NeSF's one-hot species) and refuse duplicates instead of sorting them away.

    Returns:
        ``list[int]`` without duplicates, sorted (or in the given order with ``ordered``).

    Example:
        >>> parse_species(["O", "H", 1])
        [1, 8]
    """
    if isinstance(species, (str, np.str_, int, np.integer)) and not isinstance(species, (bool, np.bool_)):
        species = [species]
    try:
        items = list(species)
    except TypeError as exc:
        raise TypeError(f"Expected '{name}' to be a list of chemical symbols or atomic numbers "
                        f"(got {species!r}).") from exc
    numbers = [atomic_number(s, name) for s in items]
    if ordered:
        if not numbers:
            raise ValueError(f"'{name}' is empty; list the elements to handle, e.g. ['H', 'C'] or [1, 6].")
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"Expected '{name}' to list distinct elements (got {list(species)!r}).")
        return numbers
    out = set(numbers)
    if not out:
        raise ValueError(f"'{name}' is empty; list the elements to handle, e.g. ['H', 'C'] or [1, 6].")
    return sorted(out)
