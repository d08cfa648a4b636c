"""The names both backends and every module read results by, in one place.

The front ends and the modules around them import these from here, never
from the pure-Python twin (``_core_py`` re-exports them, and the compiled
core holds the same list, checked by the parity tests), so choosing the
native backend loads nothing of the twin for its constants.

Example:
    >>> OBSERVATION_KEYS[0], STATE_KEYS
    ('observation', ('state', 'next_state'))
"""

from __future__ import annotations

__all__ = ["OBSERVATION_KEYS", "RENDER_KEYS", "RESULT_KEYS", "STATE_KEYS"]

# A mapping result's observation: the first of these keys it has.
OBSERVATION_KEYS = ("observation", "obs", "image", "pixels", "next_observation", "next_obs")
# A mapping result's next state.
STATE_KEYS = ("state", "next_state")
# The other keys a mapping result may carry (anything else is reported by check).
RESULT_KEYS = ("state", "next_state", "reward", "terminated", "done", "truncated", "info")
# The entries of a Dict observation that render() shows, in this order.
RENDER_KEYS = ("image", "pixels", "rgb")
