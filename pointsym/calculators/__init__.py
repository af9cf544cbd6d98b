"""ASE calculators for pointsym's structure models (molecular dynamics, relaxations, phonons).

:class:`PointsymCalculator` wraps any structure model -- ``model(positions, numbers, cell,
pbc, batch) -> energies (S,)`` eV, e.g. a trained :class:`~pointsym.models.PET`, or that model
wrapped by :class:`~pointsym.symmetrize.ECSE` for exact rotational invariance -- as an
``ase.calculators.calculator.Calculator`` with energy, forces and stress as exact autograd
derivatives.

Example:
    >>> import ase, torch
    >>> from pointsym.models import PET
    >>> from pointsym.calculators import PointsymCalculator
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = PET(["H", "C"], r_cut=3.0, d_model=8, n_gnn_layers=1, n_trans_layers=1, n_heads=2,
    ...             dim_feedforward=16, head_hidden=8)
    >>> ch4 = ase.Atoms("CH4", positions=[[0, 0, 0], [.63, .63, .63], [-.63, -.63, .63],
    ...                                   [-.63, .63, -.63], [.63, -.63, -.63]])
    >>> ch4.calc = PointsymCalculator(model)
    >>> ch4.get_forces().shape
    (5, 3)
"""

from pointsym.calculators._calculator import PointsymCalculator

__all__ = ["PointsymCalculator"]
