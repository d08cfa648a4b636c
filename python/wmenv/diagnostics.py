"""What wmenv tells the user about a model whose outputs look wrong.

Lossy casts and unrecognised result keys warn once per env, with the fix in
the message, as :class:`WorldModelWarning` (a ``UserWarning``). Only the paths
that already do extra work pay: a cast calls :meth:`Notes.on_cast`, and result
keys are looked at on an env's first step and reset only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from .vocabulary import OBSERVATION_KEYS, RESULT_KEYS

__all__ = ["WorldModelWarning", "Notes", "RESULT_KEYS"]

# Keys a step or reset mapping may carry besides the observation keys.


class WorldModelWarning(UserWarning):
    """A model output wmenv accepted but that is probably not what was meant."""


class Notes:
    """Per-env record of what was said (each thing once) and of how outputs
    were interpreted (read by :func:`wmenv.check`)."""

    def __init__(self):
        self.said: set = set()
        self.casts: dict = {}  # path -> (from dtype, to dtype, lossy, low, high)
        self.unknown_keys: dict = {}  # "step"/"reset" -> tuple of keys
        self.checked_keys = {"step": False, "reset": False}
        self.unchecked = True  # the step result's keys are yet to be looked at

    def warn_once(self, key, message):
        """Warns with ``message`` the first time ``key`` is seen."""
        if key in self.said:
            return
        self.said.add(key)
        warnings.warn(message, WorldModelWarning, stacklevel=4)

    def on_cast(self, path, array, dtype):
        """The cast hook: a float → integer cast that loses information warns."""
        dtype = np.dtype(dtype)
        lossy, low, high = False, None, None
        if array.dtype.kind in "fc" and dtype.kind in "iub" and array.size:
            values = array.real if array.dtype.kind == "c" else array
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
            info = np.iinfo(dtype) if dtype.kind in "iu" else None
            finite = bool(np.isfinite(values).all())
            integral = finite and bool((np.floor(values) == values).all())
            in_range = finite and (info is None or (low >= info.min and high <= info.max))
            lossy = not (integral and in_range)
            if lossy:
                hint = ""
                if dtype == np.uint8 and 0.0 <= low and high <= 1.0:
                    hint = " (an image in [0, 1]: scale it by 255 in the model or adapter)"
                self.warn_once(
                    ("cast", path),
                    f"{path} is {array.dtype} with values in [{low:g}, {high:g}] but the observation space's dtype is "
                    f"{dtype}: casting loses information{hint}. Return {dtype} values, or declare the space with "
                    f"dtype={array.dtype}.",
                )
        self.casts[path] = (str(array.dtype), str(dtype), lossy, low, high)

    def check_keys(self, kind, result):
        """Warns (once) when a mapping result has no observation key and keys wmenv does not know."""
        self.checked_keys[kind] = True
        if kind == "step":
            self.unchecked = False
        if not isinstance(result, Mapping):
            return
        keys = [k for k in result.keys()]
        if any(k in result for k in OBSERVATION_KEYS):
            return
        unknown = tuple(k for k in keys if k not in RESULT_KEYS)
        if not unknown:
            return
        self.unknown_keys[kind] = unknown
        fallback = "the state" if kind == "step" else "initial_observation (or a sample of the space)"
        self.warn_once(
            ("keys", kind),
            f"the model's {kind} result has keys {list(unknown)!r} that wmenv does not recognise, and no "
            f"observation key, so the observation is {fallback}. Accepted observation keys: "
            f"{', '.join(OBSERVATION_KEYS)}; other keys: {', '.join(RESULT_KEYS)}. Rename the key, or map the "
            "result in a transition_fn/reset_fn.",
        )
