"""pointsym.models (see the package docstring of pointsym)."""

__all__: list[str] = []
