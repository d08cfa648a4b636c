"""The README's examples and the docstrings' examples run as written."""

import doctest
import re
from pathlib import Path

import pytest

import wmenv
import wmenv._core_py
import wmenv.env
import wmenv.vector

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.skipif(not README.exists(), reason="README.md not beside tests/")
def test_readme_python_examples_run():
    pytest.importorskip("stable_baselines3")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    namespace = {"__name__": "readme"}
    for block in blocks:  # in order: later examples use earlier names
        exec(compile(block, str(README), "exec"), namespace)


@pytest.mark.parametrize("module", [wmenv, wmenv.env, wmenv.vector, wmenv._core_py], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_sb3_docstring_example():
    pytest.importorskip("stable_baselines3")
    import wmenv.sb3

    result = doctest.testmod(wmenv.sb3)
    assert result.attempted > 0 and result.failed == 0
