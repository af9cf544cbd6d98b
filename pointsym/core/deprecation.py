"""Deprecation helpers: renamed keyword arguments and renamed positional forms, for one release.

Every shim warns with a :class:`DeprecationWarning` naming the old and the new spelling and
then behaves exactly as the new spelling. The warning is attributed to the *caller* of the
public function (``stacklevel``), so pointsym's own code, which must never use an old name,
fails the test suite (``filterwarnings = error::DeprecationWarning:pointsym.*``) if it does.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["renamed_kwargs", "warn_deprecated"]

F = TypeVar("F", bound=Callable[..., Any])


def warn_deprecated(message: str, *, stacklevel: int = 2) -> None:
    """Emit a :class:`DeprecationWarning` ending with the removal notice.

    ``stacklevel`` counts as for :func:`warnings.warn` from the *caller* of this function
    (2: the function that called ``warn_deprecated``'s caller).
    """
    warnings.warn(f"{message}; the old form will be removed in the next release.", DeprecationWarning,
                  stacklevel=stacklevel + 1)


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept old keyword names for one release, as ``old="new"`` pairs.

    A call with ``old=value`` warns (``DeprecationWarning`` naming both) and is forwarded as
    ``new=value``; passing both raises ``TypeError``. Positional calls are untouched.

    Example:
        >>> @renamed_kwargs(cutoff="r_cut")
        ... def search(positions, *, r_cut):
        ...     return r_cut
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     warnings.simplefilter("always")
        ...     search(None, cutoff=2.0)
        2.0
    """
    for old, new in renames.items():
        if not isinstance(new, str) or old == new:
            raise ValueError(f"renamed_kwargs: expected old='new' pairs with distinct names (got {old}={new!r}).")

    def decorate(func: F) -> F:
        name = getattr(func, "__qualname__", getattr(func, "__name__", "function"))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{name}() got both '{old}=' (deprecated) and '{new}='; pass only '{new}='.")
                    warn_deprecated(f"{name}(): the keyword '{old}=' is deprecated, use '{new}=' instead",
                                    stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        wrapper.__deprecated_kwargs__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
