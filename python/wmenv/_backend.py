"""Chooses the implementation of the per-step work.

``WMENV_BACKEND`` unset or empty: the compiled ``wmenv._core`` when it imports,
else the pure-Python ``wmenv._core_py``. ``native``: the compiled module or an
``ImportError``. ``python``: the pure-Python module. Anything else is an error.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional

BACKENDS = ("native", "python")

_torch: Optional[ModuleType]
try:  # torch is optional; with it, tensors get the fast paths
    import torch as _torch
except ImportError:  # pragma: no cover - exercised where torch is absent
    _torch = None

_loaded: dict = {}


def load(name: str):
    """The core module for backend ``name`` (``"native"`` or ``"python"``)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    module = _loaded.get(name)
    if module is None:
        if name == "native":
            try:
                module = importlib.import_module("wmenv._core")
            except ImportError as exc:
                raise ImportError(
                    f"the native backend of wmenv is not available ({exc}); "
                    "reinstall with a C++17 compiler or use WMENV_BACKEND=python"
                ) from exc
        else:
            module = importlib.import_module("wmenv._core_py")
        module.set_torch(_torch)
        _loaded[name] = module
    return module


def available() -> tuple:
    """The backends that load on this installation."""
    names = []
    for name in BACKENDS:
        try:
            load(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


def _select_default() -> str:
    choice = os.environ.get("WMENV_BACKEND", "").strip()
    if choice:
        if choice not in BACKENDS:
            raise ValueError(f"WMENV_BACKEND must be one of {', '.join(map(repr, BACKENDS))} or unset, got {choice!r}")
        load(choice)
        return choice
    try:
        load("native")
    except ImportError:
        return "python"
    return "native"


DEFAULT = _select_default()
torch = _torch
