"""Electronic-structure post-processing: densities of states and the quantities derived from them.

The density of states (DOS) of the concentric spherical network papers (spec ``csnn.md``
sections 5 and 5.1), energies in eV:

- :func:`energy_grid` -- the fixed uniform grid (reference -30.0 ... 0.9 eV, 0.1 eV);
- :func:`gaussian_dos` -- eigenvalues (with k-point weights) -> Gaussian-broadened DOS;
- :func:`integrated_dos` -- ``step * cumsum`` (numpy or differentiable torch);
- :func:`fermi_level`, :func:`band_energy` -- from a total DOS (cubic spline to a 0.01 eV
  grid, cumulative trapezoid);
- :func:`dos_metrics`, :func:`summarize_dos_metrics` -- per-structure test metrics and their
  means overall and per structural family;
- :func:`dos_loss` -- the training loss ``alpha MSE(DOS) + (1 - alpha) MSE(integrated DOS)``.
"""

from pointsym.electronic._dos import (
    FERMI_TOLERANCE,
    band_energy,
    band_moment,
    dos_loss,
    dos_metrics,
    energy_grid,
    fermi_level,
    gaussian_dos,
    integrated_dos,
    summarize_dos_metrics,
)

__all__ = [
    "FERMI_TOLERANCE",
    "band_energy",
    "band_moment",
    "dos_loss",
    "dos_metrics",
    "energy_grid",
    "fermi_level",
    "gaussian_dos",
    "integrated_dos",
    "summarize_dos_metrics",
]
