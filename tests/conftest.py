"""Fixtures shared by the suite: every behavioural test runs once per backend."""

import os
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from wmenv import WorldModelEnv, _backend

try:
    import torch
except ImportError:  # wmenv needs no torch; the wheel matrix runs the suite without it
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch, which is not installed")

# Without torch, the modules that import it (or a module that does) are not
# collected; the header of the run names them, so that nothing is silently lost.
_IMPORTS_TORCH = re.compile(r"^(import torch|from torch|from test_core_parity import)", re.M)
collect_ignore = (
    []
    if torch is not None
    else sorted(p.name for p in Path(__file__).parent.glob("test_*.py") if _IMPORTS_TORCH.search(p.read_text()))
)


def pytest_report_header(config):
    if torch is None:
        return f"torch is not installed: {len(collect_ignore)} test modules that need it are not collected"
    return None


def _require_native() -> bool:
    return os.environ.get("WMENV_REQUIRE_NATIVE", "") not in ("", "0")


def _backends_under_test() -> list:
    """Every backend, or those named in WMENV_TEST_BACKENDS (comma-separated):
    CI's sanitizer run names only native, the one the sanitizers instrument."""
    chosen = os.environ.get("WMENV_TEST_BACKENDS", "").strip()
    if not chosen:
        return list(_backend.BACKENDS)
    names = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = sorted(set(names) - set(_backend.BACKENDS))
    if unknown or not names:
        known = ", ".join(_backend.BACKENDS)
        raise pytest.UsageError(f"WMENV_TEST_BACKENDS={chosen!r}: name backends among {known}, comma-separated")
    return [name for name in _backend.BACKENDS if name in names]


@pytest.fixture(params=_backends_under_test())
def backend(request):
    """The backend name; native is skipped when it is not built, unless
    WMENV_REQUIRE_NATIVE is set (CI), where its absence fails the test."""
    name = request.param
    try:
        _backend.load(name)
    except ImportError as exc:
        if _require_native():
            pytest.fail(f"WMENV_REQUIRE_NATIVE is set but the {name} backend does not load: {exc}")
        pytest.skip(f"{name} backend not built")
    return name


@pytest.fixture(scope="session")
def native_core():
    """The compiled core; skipped when it is not built, unless
    WMENV_REQUIRE_NATIVE is set (CI), where its absence fails the test."""
    try:
        return _backend.load("native")
    except ImportError as exc:
        if _require_native():
            pytest.fail(f"WMENV_REQUIRE_NATIVE is set but the native backend does not load: {exc}")
        pytest.skip("native backend not built")


@pytest.fixture
def core(backend):
    """The core module of the backend under test."""
    return _backend.load(backend)


@pytest.fixture
def make_env(backend):
    """WorldModelEnv with this test's backend."""

    def make(world_model, observation_space, action_space, **kwargs):
        kwargs.setdefault("backend", backend)
        return WorldModelEnv(world_model, observation_space, action_space, **kwargs)

    return make


BOX2 = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
ACT1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
