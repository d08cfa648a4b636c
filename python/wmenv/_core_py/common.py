"""What every part of the pure-Python core shares: dtypes, the depth guard,
shape formatting and the calibration of torch's storage counts (the twin
of ``csrc/common.cpp``)."""

from __future__ import annotations

import numpy as np

_NDArray = np.ndarray
_asarray = np.asarray
_zeros = np.zeros
_FLOAT32 = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)
_INT64 = np.dtype(np.int64)
_INT64_MAX = int(np.iinfo(np.int64).max)
_DLPACK_CPU = 1


def _format_shape(shape) -> str:
    return str(tuple(int(d) for d in shape))


_MAX_DEPTH = 64
_TOO_DEEP = (
    f"an observation nests containers more than {_MAX_DEPTH} levels deep; "
    "a list or dict that contains itself cannot be converted"
)


def calibrate(module):
    """Torch's storage use count of memory that only one converted array
    views, measured on a probe; ``(None, -1)`` where torch cannot tell (every
    tensor leaf is then copied)."""
    count = getattr(getattr(module, "_C", None), "_storage_Use_Count", None)
    zeros = getattr(module, "zeros", None)
    if not callable(count) or not callable(zeros):
        return None, -1
    try:
        probe = zeros(2).detach().numpy()
        return count, count(probe.base.untyped_storage()._cdata)
    except Exception:  # a torch-like module without storages
        return None, -1
