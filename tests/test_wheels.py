"""Wheels: a platform wheel with _core, and a pure-Python one when the compiler
fails; each installed into a fresh venv where an env steps.

Builds take minutes, so this runs when WMENV_TEST_WHEELS=1 (CI sets it).
"""

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = Path(__file__).resolve().parent / "wheel_smoke.py"

pytestmark = pytest.mark.skipif(
    os.environ.get("WMENV_TEST_WHEELS", "") in ("", "0"), reason="set WMENV_TEST_WHEELS=1 to build and install wheels"
)

IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.so", "__pycache__", "*.egg-info", ".pytest_cache")


def build_wheel(tmp_path, name, extra_env):
    """Builds from a clean copy of the source tree (no build cache to reuse)."""
    src = tmp_path / f"src-{name}"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    out = tmp_path / f"wheel-{name}"
    env = {**os.environ, **extra_env}
    env.pop("WMENV_REQUIRE_NATIVE", None)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], check=True, env=env
    )
    wheels = list(out.glob("wmenv-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install_and_smoke(tmp_path, wheel, expected):
    where = tmp_path / f"venv-{expected}"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMENV_")}
    proc = subprocess.run([str(python), str(SMOKE), expected], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"backend {expected}" in proc.stdout


def test_platform_wheel_has_the_extension(tmp_path):
    wheel = build_wheel(tmp_path, "native", {})
    assert not wheel.name.endswith("-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("wmenv/_core") and n.endswith((".so", ".pyd")) for n in names), names
    assert {"wmenv/_core.pyi", "wmenv/py.typed", "wmenv/_core_py/__init__.py"} <= set(names)
    install_and_smoke(tmp_path, wheel, "native")


def test_failed_compile_gives_a_pure_python_wheel(tmp_path):
    wheel = build_wheel(tmp_path, "pure", {"CXX": "false", "CC": "false"})
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith("wmenv/_core.") and n.endswith((".so", ".pyd")) for n in names), names
    install_and_smoke(tmp_path, wheel, "python")


def test_failed_compile_is_an_error_when_native_is_required(tmp_path):
    src = tmp_path / "src-required"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    env = {**os.environ, "CXX": "false", "CC": "false", "WMENV_REQUIRE_NATIVE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "x"), str(src)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0
    assert not list(tmp_path.glob("x/*.whl"))
