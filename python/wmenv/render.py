"""The one render rule of both envs, and :func:`as_frame`."""

from __future__ import annotations

import numpy as np

from .vocabulary import RENDER_KEYS

__all__ = ["as_frame", "render_frame"]


def as_frame(x, batch_dims: int = 0):
    """An image-like array with its channels first (``uint8``, or floats in
    [0, 1]; 1 or 3 channels) as an ``(..., H, W, 3)`` ``uint8`` frame, the
    layout Gymnasium's ``rgb_array`` expects; anything else unchanged.

    Example:
        >>> import numpy as np
        >>> as_frame(np.zeros((3, 64, 48), np.float32)).shape
        (64, 48, 3)
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3 + batch_dims:
        return x
    channels, height, width = x.shape[batch_dims:]
    if channels not in (1, 3) or width in (1, 3, 4):  # (H, W, C) already, or not an image
        return x
    if x.dtype == np.uint8:
        frame = x
    elif x.dtype.kind == "f" and x.size and 0.0 <= float(np.nanmin(x)) and float(np.nanmax(x)) <= 1.0:
        frame = np.rint(np.nan_to_num(x) * 255.0).astype(np.uint8)
    else:
        return x
    frame = np.moveaxis(frame, batch_dims, -1)
    if channels == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame)


def render_frame(env, obs, batch_dims: int):
    """The one render rule of both envs: ``render_fn(model, state, obs)``'s
    frame, else the observation's ``image``/``pixels``/``rgb`` entry, else
    the observation, as NumPy in either output mode, images channels-last
    ``uint8`` (``batch_dims`` leading batch axes: 1 for the vector env).
    ``None`` before the first reset, unless ``render_fn`` draws one."""
    if env._render is not None:
        with env._autograd_off:
            frame = env._render(env._state, obs)
        return env._to_numpy(frame, None)
    if obs is None:
        return None
    if isinstance(obs, dict):
        for key in RENDER_KEYS:
            if key in obs:
                return as_frame(env._to_numpy(obs[key], None), batch_dims=batch_dims)
    return as_frame(env._to_numpy(obs, None), batch_dims=batch_dims)
