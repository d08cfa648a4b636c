"""Progress for slow models (``progress=``): a model that takes seconds per
call should not look hung.

``progress=callback`` calls ``callback(call)`` after every model call the
env makes (each ``step``, each horizon step of a ``rollout``), with a
:class:`ModelCall`: how many calls so far, the seconds this one took
(the reward model and the env's layers around the model included) and the
frames it generated (``num_envs`` times ``chunk``). ``progress=True`` shows
a ``tqdm`` bar counting frames, with the seconds per call beside it
(``pip install tqdm``). Costs two ``perf_counter`` calls and the callback
per model call; nothing when not asked for.

Example:
    >>> calls = []
    >>> layer = Progress(lambda s, a: (s, s, 0.0), calls.append, frames=8)
    >>> _ = layer(0, 0); _ = layer(0, 0)
    >>> [(c.calls, c.frames, c.total_frames) for c in calls]
    [(1, 8, 8), (2, 8, 16)]
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

__all__ = ["ModelCall", "Progress", "check_progress"]


class ModelCall(NamedTuple):
    """One model call, as ``progress=`` callbacks receive it."""

    calls: int  # calls so far, this one included
    seconds: float  # this call's wall time
    frames: int  # frames this call generated (num_envs x chunk)
    total_frames: int  # frames generated so far


def check_progress(value) -> Any:
    """``progress`` as ``None``, ``True`` (a tqdm bar) or a callable."""
    if value is None or value is False:
        return None
    if value is True:
        try:
            import tqdm  # noqa: F401  -- the bar is made at the first call; its absence is said now
        except ImportError as exc:
            raise ImportError("progress=True shows a tqdm bar: pip install tqdm, or pass a callable") from exc
        return value
    if callable(value):
        return value
    raise TypeError(f"progress must be None, True (a tqdm bar) or a callable taking a ModelCall, got {value!r}")


class _Bar:
    """A tqdm bar of frames, its postfix the last call's seconds."""

    def __init__(self):
        from tqdm.auto import tqdm

        self.bar = tqdm(unit="frame", desc="world model", dynamic_ncols=True)

    def __call__(self, call: ModelCall) -> None:
        self.bar.update(call.frames)
        self.bar.set_postfix_str(f"{call.seconds:.3g} s/call", refresh=False)

    def close(self) -> None:
        self.bar.close()


class Progress:
    """A transition that reports each call to ``report`` (a callable, or
    ``True`` for a tqdm bar, made at the first call)."""

    def __init__(self, transition: Callable, report, frames: int):
        self.transition, self.report, self.frames = transition, report, int(frames)
        self.index = 0
        self.total = 0
        self._bar: Optional[_Bar] = None

    def __call__(self, state, action):
        """The wrapped model call, timed and reported."""
        start = time.perf_counter()
        result = self.transition(state, action)
        seconds = time.perf_counter() - start
        self.index += 1
        self.total += self.frames
        call = ModelCall(self.index, seconds, self.frames, self.total)
        if self.report is True:
            if self._bar is None:
                self._bar = _Bar()
            self._bar(call)
        else:
            self.report(call)
        return result

    def close(self) -> None:
        """Closes the tqdm bar, when there is one."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
