"""One model contract and one versioned file format for every pointsym model.

The contract (:class:`CheckpointMixin`, mixed into every model class):

* ``model.hypers`` -- a plain, JSON-serialisable ``dict`` of constructor arguments such that
  ``type(model)(**model.hypers)`` rebuilds the architecture (wrappers such as
  :class:`pointsym.symmetrize.ECSE` document what else they need, e.g. the wrapped model);
* ``model.save(path, *, meta=None)`` -- writes a model file atomically (temporary file in the
  same folder, then :func:`os.replace`, so an interrupted save never leaves half a file);
* ``Cls.from_checkpoint(path, map_location="cpu")`` -- rebuilds the model (in eval mode, in
  the saved floating dtype, moved to ``map_location`` when that is a device); it also reads
  the older formats a class declares (e.g. ``pointsym pet-train`` Trainer checkpoints).

The file is a ``torch.save`` of plain containers, tensors and scalars::

    {"format": "pointsym-model", "format_version": 1, "class": "PET", "module": "pointsym.models.pet",
     "hypers": {...}, "state_dict": {...}, "dtype": "float32", "buffers": {...}, "meta": {...},
     "pointsym_version": "0.1.0"}

``buffers`` holds state that ``state_dict`` does not (empty for every built-in model: their
non-persistent buffers are lookup tables recomputed from ``hypers``). Files are read with
``torch.load(weights_only=True)``; only a payload that holds other Python objects (a
``meta`` with numpy arrays, the RNG state of a Trainer checkpoint) falls back to full
unpickling, which runs code from the file, so load only files you trust.

Every refusal is a :class:`~pointsym.core.CheckpointError` (a ``ValueError``) naming the file.
This module statically imports nothing of pointsym outside :mod:`pointsym.core`; loading a
file whose class is not registered yet imports that class's module by name, and only when it
is a ``pointsym.*`` module (so an ECSE file can rebuild the PET it wraps in a fresh process).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch

from pointsym.core.errors import CheckpointError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "TRAINER_CHECKPOINT_VERSION",
    "CheckpointMixin",
    "atomic_torch_save",
    "build_from_state",
    "build_spec",
    "check_model_payload",
    "describe_foreign",
    "from_trainer_checkpoint",
    "is_model_payload",
    "load_model",
    "load_state_into",
    "model_payload",
    "model_spec",
    "read_torch_file",
    "resolve_model_class",
    "trainer_extra",
    "trainer_weights",
]

#: ``"format"`` entry of a pointsym model file.
MODEL_FORMAT = "pointsym-model"
#: Newest model-file version this pointsym writes and reads.
MODEL_FORMAT_VERSION = 1

T = TypeVar("T", bound="CheckpointMixin")

# class name -> classes with that name (registered by CheckpointMixin.__init_subclass__).
_REGISTRY: dict[str, list[type]] = {}


def _pointsym_version() -> str:
    # The parent package is always imported before pointsym.core; read its version without importing more.
    return str(getattr(sys.modules.get("pointsym"), "__version__", "unknown"))


def _name(path: str | os.PathLike[str]) -> str:
    return repr(str(path))


# ---------------------------------------------------------------------------- file I/O
def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` through a temporary file in the same folder and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file private (0600); give it the permissions of an ordinary file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _unreadable(path: str | os.PathLike[str], exc: BaseException) -> CheckpointError:
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # skip torch's generic advice about weights_only
        text = text.split("WeightsUnpickler error:", 1)[1]
    reason = next((line.strip() for line in text.splitlines() if line.strip()), "").split(". ")[0][:160]
    reason = reason or "end of file reached"
    return CheckpointError(
        f"{_name(path)} is not a readable pointsym checkpoint ({type(exc).__name__}: {reason}); the file is "
        "empty, truncated (an interrupted copy or download) or was not written by torch.save. Re-create or "
        "re-download it."
    )


def read_torch_file(path: str | os.PathLike[str], map_location: Any = "cpu", *, allow_pickle: bool = True,
                    pickled: bool = False) -> Any:
    """Load a ``torch.save`` file, with ``weights_only=True`` whenever the payload allows.

    Args:
        path: the file.
        map_location: as :func:`torch.load`.
        allow_pickle: when the payload holds objects the safe loader refuses (numpy arrays,
            RNG states), load it again with full unpickling (default: True; pass False for
            files from untrusted sources, which then raise ``ValueError``).
        pickled: the payload is known to need full unpickling (Trainer checkpoints hold RNG
            states): skip the safe attempt instead of reading the file twice.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, truncated, random bytes or otherwise not a torch file
            (the message names the file), or needs unpickling while ``allow_pickle=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {_name(path)} does not exist.")
    if pickled and not allow_pickle:
        raise ValueError("read_torch_file: pickled=True needs allow_pickle=True.")
    try:
        if not pickled:
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise _unreadable(path, exc) from exc
        if not allow_pickle:
            raise CheckpointError(f"{_name(path)} holds Python objects that torch.load(weights_only=True) refuses; "
                                  "load it with allow_pickle=True only if you trust its source.") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... for broken files
        raise _unreadable(path, exc) from exc
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise _unreadable(path, exc) from exc


# ---------------------------------------------------------------------------- payloads
def is_model_payload(obj: Any) -> bool:
    """Whether a loaded object is a pointsym model file (``"format": "pointsym-model"``)."""
    return isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT


def _plain_hypers(model: Any) -> dict[str, Any]:
    hypers = model.hypers
    if not isinstance(hypers, dict):
        raise TypeError(f"{type(model).__name__}.hypers must be a dict (got {type(hypers).__name__}).")
    try:
        return json.loads(json.dumps(hypers))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{type(model).__name__}.hypers is not JSON-serialisable ({exc}): {hypers!r}") from exc


def _float_dtype(module: Any) -> str | None:
    tensors = list(module.parameters()) + list(module.buffers()) if isinstance(module, torch.nn.Module) else []
    for t in tensors:
        if t.is_floating_point():
            return str(t.dtype).replace("torch.", "")
    return None


def _cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


def model_payload(model: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The versioned file content of ``model`` (see the module docstring); tensors on the CPU."""
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"Expected 'meta' to be a dict or None (got {type(meta).__name__}).")
    cls = type(model)
    buffers = model._checkpoint_buffers() if hasattr(model, "_checkpoint_buffers") else {}
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "class": cls.__name__,
        "module": cls.__module__,
        "hypers": _plain_hypers(model),
        "state_dict": _cpu_state(model.state_dict()),
        "dtype": _float_dtype(model),
        "buffers": _cpu_state(buffers),
        "meta": dict(meta or {}),
        "pointsym_version": _pointsym_version(),
    }


def check_model_payload(payload: Any, path: str | os.PathLike[str], expected: str | None = None) -> dict[str, Any]:
    """Validate a model-file payload: format, version, required entries and (optionally) the class name.

    Raises:
        ValueError: not a model file, a newer format version, missing entries, or a model
            of another class than ``expected`` (the message names both).
    """
    if not is_model_payload(payload):
        raise CheckpointError(f"{_name(path)} is not a pointsym model file (no 'format': {MODEL_FORMAT!r}).")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{_name(path)} has an invalid model-file format version {version!r}; the file is "
                              "damaged.")
    if version > MODEL_FORMAT_VERSION:
        raise CheckpointError(
            f"{_name(path)} has model-file format version {version}, newer than this pointsym "
            f"({_pointsym_version()}) reads (up to {MODEL_FORMAT_VERSION}); it was written by pointsym "
            f"{payload.get('pointsym_version', '?')}. Upgrade pointsym to load it."
        )
    missing = [k for k in ("class", "hypers", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{_name(path)} is a damaged pointsym model file (missing {missing}).")
    if expected is not None and payload["class"] != expected:
        raise CheckpointError(f"{_name(path)} holds a {payload['class']}, expected a {expected}; load it with "
                         f"{payload['class']}.from_checkpoint or pointsym.core.load_model.")
    return payload


# The packages that define pointsym's built-in model classes (imported by name, never statically).
_MODEL_PACKAGES = ("pointsym.models", "pointsym.symmetrize", "pointsym.fields")


def resolve_model_class(name: str, module: str | None = None) -> type:
    """The registered model class ``name`` (importing ``module`` if it is a pointsym module)."""
    def pick() -> type | None:
        found = _REGISTRY.get(name, [])
        exact = [c for c in found if c.__module__ == module]
        return (exact or found)[0] if found else None

    cls = pick()
    if cls is None and isinstance(module, str) and (module == "pointsym" or module.startswith("pointsym.")):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
        cls = pick()
    if cls is None and module is None:
        # Older files (pet-train Trainer checkpoints) name the class only: pointsym's own model
        # classes live in these packages, so importing them registers every built-in model.
        for package in _MODEL_PACKAGES:
            with contextlib.suppress(ImportError):
                importlib.import_module(package)
        cls = pick()
    if cls is None:
        raise CheckpointError(f"Unknown model class {name!r} (module {module!r}); import the module that defines it "
                         "before loading (only pointsym modules are imported automatically).")
    return cls


def _finish(model: Any, map_location: Any) -> Any:
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    if isinstance(model, torch.nn.Module):
        model.eval()
    return model


def _apply_dtype(model: Any, dtype: Any, path: str | os.PathLike[str]) -> None:
    if dtype is None or not isinstance(model, torch.nn.Module):
        return
    dt = getattr(torch, str(dtype), None)
    if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
        raise CheckpointError(f"{_name(path)} stores an unknown floating dtype {dtype!r}.")
    model.to(dt)


def _infer_dtype(state: dict[str, Any]) -> str | None:
    for v in state.values():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return str(v.dtype).replace("torch.", "")
    return None


def build_from_state(cls: type, hypers: dict[str, Any], state: dict[str, Any], path: str | os.PathLike[str], *,
                     dtype: str | None = None, buffers: dict[str, Any] | None = None) -> Any:
    """``cls(**hypers)`` in ``dtype`` (inferred from ``state`` when None) with ``state`` loaded.

    Errors in rebuilding or in the state (wrong keys or shapes) become ``ValueError`` naming the file.
    """
    try:
        model = cls(**hypers)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{_name(path)}: cannot rebuild a {cls.__name__} from the stored hypers {hypers!r} "
                         f"({exc}); the file was written by an incompatible pointsym version.") from exc
    return load_state_into(model, state, path, dtype=dtype, buffers=buffers)


def load_state_into(model: Any, state: dict[str, Any], path: str | os.PathLike[str], *, dtype: str | None = None,
                    buffers: dict[str, Any] | None = None) -> Any:
    """Cast ``model`` to ``dtype`` (inferred from ``state`` when None), then load ``state`` and ``buffers``."""
    _apply_dtype(model, dtype if dtype is not None else _infer_dtype(state), path)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{_name(path)}: the stored weights do not fit a {type(model).__name__} built from the "
                         f"stored hypers ({str(exc).splitlines()[0][:300]}).") from exc
    if buffers:
        model._restore_checkpoint_buffers(buffers)
    return model


def model_spec(model: Any, role: str = "model") -> dict[str, Any]:
    """``{"class", "module", "hypers"}`` of a contract model, for wrappers that store what they wrap.

    Raises:
        TypeError: ``model`` does not follow the contract (no :class:`CheckpointMixin`).
    """
    if not isinstance(model, CheckpointMixin) or not isinstance(model, torch.nn.Module):
        raise TypeError(f"Saving stores the wrapped {role} by class and hypers, so it must follow the pointsym model "
                        f"contract (a torch.nn.Module with CheckpointMixin and 'hypers'); a "
                        f"{type(model).__name__} does not. Save its weights yourself, or give it the contract.")
    cls = type(model)
    return {"class": cls.__name__, "module": cls.__module__, "hypers": _plain_hypers(model)}


def build_spec(spec: Any, path: str | os.PathLike[str]) -> Any:
    """An untrained model from a :func:`model_spec` entry of a file (weights are loaded by the caller)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str) or not isinstance(spec.get("hypers"), dict):
        raise CheckpointError(f"{_name(path)} is a damaged pointsym model file (bad wrapped-model entry {spec!r}).")
    cls = resolve_model_class(spec["class"], spec.get("module"))
    try:
        return cls(**spec["hypers"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{_name(path)}: cannot rebuild the wrapped {cls.__name__} from its stored hypers "
                              f"({exc}).") from exc


#: Newest ``format_version`` of :class:`pointsym.training.Trainer` checkpoints read here.
TRAINER_CHECKPOINT_VERSION = 1


def trainer_extra(raw: Any, path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``config.extra`` of a Trainer checkpoint (or a legacy export of that layout), else ``None``.

    Raises:
        CheckpointError: a Trainer checkpoint of a newer format version.
    """
    if not (isinstance(raw, dict) and "format_version" in raw and "model" in raw and "format" not in raw):
        return None
    version = raw["format_version"]
    if isinstance(version, int) and version > TRAINER_CHECKPOINT_VERSION:
        raise CheckpointError(f"{_name(path)} is a Trainer checkpoint of format version {version}, newer than this "
                              f"pointsym ({_pointsym_version()}) reads (up to {TRAINER_CHECKPOINT_VERSION}); "
                              "upgrade pointsym.")
    cfg = raw.get("config")
    extra = cfg.get("extra") if isinstance(cfg, dict) else None
    return extra if isinstance(extra, dict) else {}


def trainer_weights(raw: dict[str, Any]) -> Any:
    """The weights a Trainer checkpoint stands for: the weight average (``"ema"``) of a run trained
    with ``ema_decay`` (``last.pt`` keeps the raw weights under ``"model"`` only to resume), else
    ``"model"``."""
    return raw["ema"] if raw.get("ema") is not None else raw["model"]


def from_trainer_checkpoint(cls: type, raw: Any, path: str | os.PathLike[str], *, key: str = "model") -> Any:
    """Rebuild ``cls`` from a Trainer checkpoint with ``config.extra[key] = {"class", "hypers"}``.

    Returns ``None`` when ``raw`` is not a Trainer checkpoint; raises
    :class:`~pointsym.core.CheckpointError` naming the stored model when it holds another class.
    """
    extra = trainer_extra(raw, path)
    if extra is None:
        return None
    spec = extra.get(key)
    if not isinstance(spec, dict) or spec.get("class") != cls.__name__ or not isinstance(spec.get("hypers"), dict):
        raise CheckpointError(describe_foreign(raw, path, cls.__name__))
    return build_from_state(cls, spec["hypers"], trainer_weights(raw), path)


def describe_foreign(raw: Any, path: str | os.PathLike[str], expected: str) -> str:
    """A message saying what a non-model-file payload holds (for a ``ValueError``)."""
    where = _name(path)
    if isinstance(raw, dict):
        fmt = raw.get("format")
        if isinstance(fmt, str) and fmt.startswith("pointsym.pixel_soap"):
            return (f"{where} holds a pixel-SOAP bundle (a PixelMLP with its scaler), expected a {expected}; "
                    "load it with pointsym.experiments.pixel_soap.cli.load_pixel_model.")
        if "format_version" in raw and "model" in raw:
            cfg = raw.get("config")
            extra = cfg.get("extra") if isinstance(cfg, dict) else None
            extra = extra if isinstance(extra, dict) else {}
            spec = extra.get("model")
            if isinstance(spec, dict) and spec.get("class"):
                return f"{where} holds a Trainer checkpoint of a {spec['class']}, expected a {expected}."
            if "nesf" in extra:
                return f"{where} holds a NeSF (a NeSF export or Trainer checkpoint), expected a {expected}."
            return (f"{where} is a pointsym Trainer checkpoint but not of a {expected} model (no model "
                    "hyper-parameters in config.extra); build the model yourself and load_state_dict(ckpt['model']).")
    return (f"{where} is a torch file but not a pointsym model file (no 'format': {MODEL_FORMAT!r}), expected a "
            f"{expected}.")


# ---------------------------------------------------------------------------- the contract
class CheckpointMixin:
    """``hypers`` / ``save`` / ``from_checkpoint`` for a ``torch.nn.Module`` (see the module docstring).

    Subclasses implement :attr:`hypers`; wrappers override :meth:`_checkpoint_payload` and
    :meth:`_from_payload`; classes with older file formats override :meth:`_from_legacy`.

    Example:
        >>> import torch
        >>> from pointsym.core import CheckpointMixin
        >>> class Tiny(CheckpointMixin, torch.nn.Module):
        ...     def __init__(self, width: int = 3) -> None:
        ...         super().__init__(); self.width = width; self.lin = torch.nn.Linear(width, 1)
        ...     @property
        ...     def hypers(self): return {"width": self.width}
        >>> Tiny(**Tiny(4).hypers).width
        4
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        group = _REGISTRY.setdefault(cls.__name__, [])
        group[:] = [c for c in group if (c.__module__, c.__qualname__) != (cls.__module__, cls.__qualname__)]
        group.append(cls)

    @property
    def hypers(self) -> dict[str, Any]:
        """Plain JSON-serialisable constructor arguments; ``type(self)(**self.hypers)`` rebuilds the model."""
        raise NotImplementedError(f"{type(self).__name__} does not define 'hypers'.")

    # -------------------------------------------------------------- hooks
    def _checkpoint_buffers(self) -> dict[str, torch.Tensor]:
        """State that ``state_dict`` does not hold (default: none)."""
        return {}

    def _restore_checkpoint_buffers(self, buffers: dict[str, torch.Tensor]) -> None:
        for name, value in buffers.items():
            target = getattr(self, name)
            target.copy_(value.to(target.device, target.dtype))

    def _checkpoint_payload(self, meta: dict[str, Any] | None) -> dict[str, Any]:
        return model_payload(self, meta)

    @classmethod
    def _from_payload(cls: type[T], payload: dict[str, Any], path: str | os.PathLike[str]) -> T:
        return build_from_state(cls, payload["hypers"], payload["state_dict"], path, dtype=payload.get("dtype"),
                                buffers=payload.get("buffers"))

    @classmethod
    def _from_legacy(cls: type[T], raw: Any, path: str | os.PathLike[str]) -> T | None:
        """Rebuild from an older file format, or ``None`` when ``raw`` is not one of them.

        Default: a Trainer checkpoint with ``config.extra["model"] = {"class", "hypers"}``
        (as ``pointsym pet-train`` writes).
        """
        return from_trainer_checkpoint(cls, raw, path)

    # -------------------------------------------------------------- public API
    def save(self, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> Path:
        """Write the model file atomically; ``meta`` is free-form (plain types load without unpickling).

        Returns:
            the path written.
        """
        return atomic_torch_save(self._checkpoint_payload(meta), path)

    @classmethod
    def from_checkpoint(cls: type[T], path: str | os.PathLike[str], map_location: Any = "cpu") -> T:
        """Rebuild a model saved by :meth:`save` (or an older format this class reads), in eval mode.

        Raises:
            FileNotFoundError: no such file.
            ValueError: unreadable file, newer format version, or a model of another class.
        """
        return cls.from_loaded(read_torch_file(path, map_location), path, map_location)

    @classmethod
    def from_loaded(cls: type[T], raw: Any, path: str | os.PathLike[str], map_location: Any = "cpu") -> T:
        """:meth:`from_checkpoint` on an already loaded payload (``path`` is only used in messages)."""
        if is_model_payload(raw):
            check_model_payload(raw, path)
            try:
                target: type | None = resolve_model_class(raw["class"], raw.get("module"))
            except ValueError:
                target = None
            if target is None or not issubclass(target, cls):
                check_model_payload(raw, path, expected=cls.__name__)
                target = cls
            return _finish(target._from_payload(raw, path), map_location)
        model = cls._from_legacy(raw, path)
        if model is None:
            raise CheckpointError(describe_foreign(raw, path, cls.__name__))
        return _finish(model, map_location)


def load_model(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """Rebuild whatever pointsym model a file holds, without knowing its class.

    ``path`` is a model file (``Model.save``) or a Trainer checkpoint whose ``config.extra["model"]``
    names the class and hypers (``pointsym pet-train``); the class is imported when it is pointsym's.
    """
    raw = read_torch_file(path, map_location)
    return model_class_of(raw, path).from_loaded(raw, path, map_location)


def model_class_of(raw: Any, path: str | os.PathLike[str]) -> Any:
    """The model class an already loaded model file or ``pet-train``-style Trainer checkpoint holds.

    Raises:
        CheckpointError: the payload names no model class (``path`` is only used in messages).
    """
    if is_model_payload(raw):
        payload = check_model_payload(raw, path)
        return resolve_model_class(payload["class"], payload.get("module"))
    spec = (trainer_extra(raw, path) or {}).get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise CheckpointError(describe_foreign(raw, path, "pointsym model file or pet-train checkpoint"))
    return resolve_model_class(spec["class"], spec.get("module"))
