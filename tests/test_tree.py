"""wmenv.tree: the one container rule and walker."""

from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import pytest

from wmenv.autoreset import env_slice, leaf_paths
from wmenv.tree import MAX_DEPTH, any_leaf, first_leaf, leaves, map_leaves, map_paths


class Pair(NamedTuple):
    h: object
    c: object


def test_maps_sequences_and_leaves():
    tree = {"a": 1, "b": (2, [3, None])}
    assert map_leaves(lambda x: None if x is None else x + 1, tree) == {"a": 2, "b": (3, [4, None])}
    assert leaves(tree) == [1, 2, 3, None]
    assert first_leaf(tree, lambda x: isinstance(x, int) and x > 1) == 2
    assert first_leaf(tree, lambda x: isinstance(x, str)) is None
    assert any_leaf(lambda x: x is None, tree) and not any_leaf(lambda x: x == 9, tree)


def test_named_tuples_keep_their_type_and_any_mapping_is_a_map():
    out = map_leaves(lambda x: x * 2, Pair(1, OrderedDict(z=3)))
    assert type(out) is Pair and out.h == 2 and out.c == {"z": 6}
    assert env_slice(Pair(np.arange(3), np.arange(3) * 10), 2) == Pair(2, 20)
    assert leaf_paths(Pair(0, {"x": 0})) == ["state[0]", "state[1]['x']"]


def test_paths_name_leaves_as_errors_do():
    assert map_paths(lambda x, p: p, {"h": (0, 0)}, "obs") == {"h": ("obs['h'][0]", "obs['h'][1]")}


def test_a_container_that_contains_itself_is_a_clear_error():
    loop: list = []
    loop.append(loop)
    for walk in (lambda t: map_leaves(lambda x: x, t), leaves, lambda t: any_leaf(bool, t)):
        with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels deep"):
            walk(loop)
