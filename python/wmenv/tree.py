"""One walker for the nested containers of states, observations and results.

The container rule, everywhere in the package: a ``Mapping`` is a map
(rebuilt as a ``dict``), a ``tuple`` or ``list`` is a sequence (rebuilt as its
own type, a ``NamedTuple`` from its fields), and anything else (arrays,
tensors, numbers, ``None``) is a leaf. Nesting deeper than :data:`MAX_DEPTH`
is a ``ValueError``: a list or dict that contains itself cannot be walked.

Leaf paths read as errors and ``batch_axes`` name them: ``"state"``,
``"state[1][0]"``, ``"state['h']"``.

Example:
    >>> map_leaves(lambda x: x * 2, {"a": 1, "b": (2, [3])})
    {'a': 2, 'b': (4, [6])}
    >>> leaves({"a": 1, "b": (2, [3])})
    [1, 2, 3]
    >>> map_paths(lambda x, path: path, (0, {"h": 0}), "state")
    ('state[0]', {'h': "state[1]['h']"})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

__all__ = ["MAX_DEPTH", "any_leaf", "first_leaf", "leaves", "map_leaves", "map_paths", "rebuild"]

MAX_DEPTH = 64
TOO_DEEP = (
    f"an observation nests containers more than {MAX_DEPTH} levels deep; "
    "a list or dict that contains itself cannot be converted"
)


def rebuild(seq, items):
    """A sequence of ``seq``'s type holding ``items``."""
    kind = type(seq)
    if kind is list:
        return list(items)
    if kind is tuple:
        return tuple(items)
    if hasattr(seq, "_fields"):  # a NamedTuple takes its fields as arguments
        return kind(*items)
    return kind(items)


def map_leaves(fn: Callable, tree, depth: int = 0):
    """``tree`` with every leaf replaced by ``fn(leaf)``."""
    if depth > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    if isinstance(tree, Mapping):
        return {k: map_leaves(fn, v, depth + 1) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return rebuild(tree, [map_leaves(fn, v, depth + 1) for v in tree])
    return fn(tree)


def map_paths(fn: Callable, tree, path: str = "state", depth: int = 0):
    """``tree`` with every leaf replaced by ``fn(leaf, path)``."""
    if depth > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    if isinstance(tree, Mapping):
        return {k: map_paths(fn, v, f"{path}[{k!r}]", depth + 1) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return rebuild(tree, [map_paths(fn, v, f"{path}[{i}]", depth + 1) for i, v in enumerate(tree)])
    return fn(tree, path)


def leaves(tree, depth: int = 0) -> list:
    """The leaves of ``tree``, in order."""
    if depth > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    if isinstance(tree, Mapping):
        return [leaf for v in tree.values() for leaf in leaves(v, depth + 1)]
    if isinstance(tree, (tuple, list)):
        return [leaf for v in tree for leaf in leaves(v, depth + 1)]
    return [tree]


def first_leaf(tree, predicate: Callable[[Any], bool], depth: int = 0) -> Optional[Any]:
    """The first leaf of ``tree`` for which ``predicate`` holds, or ``None``."""
    if depth > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    if isinstance(tree, Mapping):
        tree = list(tree.values())
    if isinstance(tree, (tuple, list)):
        for v in tree:
            found = first_leaf(v, predicate, depth + 1)
            if found is not None:
                return found
        return None
    return tree if predicate(tree) else None


def any_leaf(predicate: Callable[[Any], bool], tree, depth: int = 0) -> bool:
    """Whether ``predicate`` holds for any leaf of ``tree``."""
    if depth > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    if isinstance(tree, Mapping):
        return any(any_leaf(predicate, v, depth + 1) for v in tree.values())
    if isinstance(tree, (tuple, list)):
        return any(any_leaf(predicate, v, depth + 1) for v in tree)
    return bool(predicate(tree))
