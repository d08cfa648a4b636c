"""The README's examples and the docstrings' examples run as written."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

import wmenv
import wmenv._base
import wmenv._core_py
import wmenv.autoreset
import wmenv.ensemble
import wmenv.env
import wmenv.imagination
import wmenv.planning
import wmenv.progress
import wmenv.render
import wmenv.route
import wmenv.tree
import wmenv.vector
import wmenv.vocabulary

from conftest import torch

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "api.md")  # api.md: generated reference


def run_blocks(path):
    """Runs a Markdown file's python blocks in order, in one namespace; a block
    opening with "# needs: module" runs only where that module imports."""
    ran = 0
    namespace = {"__name__": "docs"}
    for block in re.findall(r"```python\n(.*?)```", path.read_text(), re.S):
        need = re.match(r"# needs: ([\w.]+)", block)
        if need:
            try:
                importlib.import_module(need.group(1))
            except ImportError:
                continue
        exec(compile(block, str(path), "exec"), namespace)
        ran += 1
    return ran


@pytest.mark.skipif(not README.exists(), reason="README.md not beside tests/")
def test_readme_python_examples_run():
    pytest.importorskip("stable_baselines3")
    assert run_blocks(README) >= 3


@pytest.mark.skipif(not DOCS, reason="docs/ not beside tests/")
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_python_examples_run(path):
    pytest.importorskip("stable_baselines3")
    assert run_blocks(path) >= 2


@pytest.mark.parametrize(
    "module",
    [
        wmenv,
        wmenv.render,
        wmenv.env,
        wmenv.vector,
        wmenv._core_py,
        wmenv.autoreset,
        wmenv.ensemble,
        wmenv.planning,
        wmenv.progress,
        wmenv.imagination,
        wmenv.route,
        wmenv.tree,
        wmenv.vocabulary,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    if torch is None and any("torch" in ex.source for t in doctest.DocTestFinder().find(module) for ex in t.examples):
        pytest.skip(f"{module.__name__}'s examples use torch, which is not installed")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_torchrl_docstring_example():
    pytest.importorskip("torchrl")
    import wmenv.torchrl

    result = doctest.testmod(wmenv.torchrl)
    assert result.attempted > 0 and result.failed == 0


def test_sb3_docstring_example():
    pytest.importorskip("stable_baselines3")
    import wmenv.sb3

    result = doctest.testmod(wmenv.sb3)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not (ROOT / "docs" / "make_api.py").exists(), reason="docs/ not beside tests/")
def test_api_reference_is_current():
    pytest.importorskip("torch", reason="the reference documents the torch integrations too")
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_api.py"), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
