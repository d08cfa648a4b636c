"""Choosing the backend (made at import, so tested in a subprocess)."""

import os
import subprocess
import sys

import pytest

from wmenv import _backend


def run_with(value):
    env = dict(os.environ)
    env.pop("WMENV_BACKEND", None)
    if value is not None:
        env["WMENV_BACKEND"] = value
    return subprocess.run(
        [sys.executable, "-c", "import wmenv; print(wmenv.backend())"], capture_output=True, text=True, env=env
    )


def native_builds():
    try:
        _backend.load("native")
    except ImportError:
        return False
    return True


def test_python_is_forced():
    proc = run_with("python")
    assert proc.returncode == 0 and proc.stdout.strip() == "python"


def test_default_prefers_native():
    proc = run_with(None)
    assert proc.returncode == 0
    assert proc.stdout.strip() == ("native" if native_builds() else "python")


def test_empty_value_is_the_default():
    assert run_with("").stdout.strip() == run_with(None).stdout.strip()


def test_native_is_native_or_an_import_error():
    proc = run_with("native")
    if native_builds():
        assert proc.returncode == 0 and proc.stdout.strip() == "native"
    else:
        assert proc.returncode != 0 and "ImportError" in proc.stderr and "WMENV_BACKEND=python" in proc.stderr


@pytest.mark.parametrize("value", ["cpp", "Native", "auto"])
def test_unknown_value_is_an_error_naming_the_allowed_values(value):
    proc = run_with(value)
    assert proc.returncode != 0
    assert f"WMENV_BACKEND must be one of 'native', 'python' or unset, got {value!r}" in proc.stderr


def test_required_native_is_there():
    if os.environ.get("WMENV_REQUIRE_NATIVE", "") in ("", "0"):
        pytest.skip("WMENV_REQUIRE_NATIVE not set")
    assert native_builds()
    assert run_with(None).stdout.strip() == "native"
