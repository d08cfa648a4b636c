"""How user callables are called: the arity rule and method discovery.

Every callable's signature is inspected here, once, when an env is built; the
result is a small function with a fixed calling convention that the step
path calls without looking at signatures again.
"""

from __future__ import annotations

import functools
import inspect

from ._backend import torch as _torch

RESET_METHODS = ("reset_env", "reset_state", "reset")
TRANSITION_METHODS = ("env_step", "step", "predict_step", "predict", "imagine_step", "transition")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def positional_arity(fn):
    """How many leading positional arguments ``fn`` declares, or ``None`` when
    it takes ``*args`` or its signature cannot be inspected (give it all)."""
    target = fn
    forward = getattr(fn, "forward", None)
    if forward is not None and callable(forward) and _is_torch_module(fn):
        target = forward  # a Module's __call__ hides forward's signature
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in sig.parameters.values():
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            return None
        if param.kind in _POSITIONAL:
            count += 1
    return count


def _is_torch_module(obj) -> bool:
    return _torch is not None and isinstance(obj, _torch.nn.Module)


def bind_leading(fn, fixed: tuple, n_rest: int):
    """A function of the ``n_rest`` trailing arguments of the full list
    ``fixed + rest`` that calls ``fn`` with as many leading arguments of that
    list as it declares (the arity rule)."""
    arity = positional_arity(fn)
    total = len(fixed) + n_rest
    take = total if arity is None or arity >= total else arity
    if take >= total:
        return functools.partial(fn, *fixed) if fixed else fn
    if take <= len(fixed):
        head = fixed[:take]
        return lambda *rest: fn(*head)
    keep = take - len(fixed)
    if not fixed:
        return lambda *rest: fn(*rest[:keep])
    return lambda *rest: fn(*fixed, *rest[:keep])


def find_method(obj, names):
    for name in names:
        method = getattr(obj, name, None)
        if method is not None and callable(method):
            return name, method
    return None, None


def transition_caller(world_model, transition_fn):
    """``f(state, action)`` that advances the model one step.

    Raises ``TypeError`` when neither ``transition_fn`` nor a model method nor
    a callable model is found.
    """
    if transition_fn is not None:
        return bind_leading(transition_fn, (world_model,), 2)
    name, method = find_method(world_model, TRANSITION_METHODS)
    if method is None and callable(world_model):
        method = world_model
    if method is None:
        raise TypeError(
            f"cannot find a transition for {type(world_model).__name__}: pass transition_fn, "
            f"give the model one of the methods {', '.join(TRANSITION_METHODS)}, or make it callable"
        )
    arity = positional_arity(method)
    if arity is not None and arity <= 1:
        return lambda state, action: method(action)
    return method


def reset_caller(world_model, reset_fn):
    """``f(seed, options)`` returning a reset result, or ``None`` when the env
    falls back to its default reset."""
    if reset_fn is not None:
        return bind_leading(reset_fn, (world_model,), 2)
    _, method = find_method(world_model, RESET_METHODS)
    if method is None:
        return None
    return bind_leading(method, (), 2)
