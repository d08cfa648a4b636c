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


def _signature(fn):
    target = fn
    forward = getattr(fn, "forward", None)
    if forward is not None and callable(forward) and _is_torch_module(fn):
        target = forward  # a Module's __call__ hides forward's signature
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def takes_generator(fn) -> bool:
    """Whether ``fn`` declares a keyword-only parameter named ``generator``."""
    sig = _signature(fn)
    if sig is None:
        return False
    param = sig.parameters.get("generator")
    return param is not None and param.kind == inspect.Parameter.KEYWORD_ONLY


def keyword_only(fn, name: str):
    """``fn``'s keyword-only parameter ``name`` (an ``inspect.Parameter``), or ``None``."""
    sig = _signature(fn)
    if sig is None:
        return None
    param = sig.parameters.get(name)
    return param if param is not None and param.kind == inspect.Parameter.KEYWORD_ONLY else None


def transition_target(world_model, transition_fn):
    """What a step calls: ``transition_fn``, else the model's transition method, else the model."""
    if transition_fn is not None:
        return transition_fn
    _, method = find_method(world_model, TRANSITION_METHODS)
    return method if method is not None else world_model


def _give_generator(fn, generator):
    if generator is not None and takes_generator(fn):
        return functools.partial(fn, generator=generator)
    return fn


def positional_arity(fn):
    """How many leading positional arguments ``fn`` declares, or ``None`` when
    it takes ``*args`` or its signature cannot be inspected (give it all)."""
    sig = _signature(fn)
    if sig is None:
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


def bind_leading(fn, fixed: tuple, n_rest: int, generator=None):
    """A function of the ``n_rest`` trailing arguments of the full list
    ``fixed + rest`` that calls ``fn`` with as many leading arguments of that
    list as it declares (the arity rule); ``fn`` also gets ``generator=`` when
    it declares that keyword-only parameter."""
    arity = positional_arity(fn)
    fn = _give_generator(fn, generator)
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
    """``(name, method)`` of the first callable attribute of ``obj`` named in ``names``, or ``(None, None)``."""
    for name in names:
        method = getattr(obj, name, None)
        if method is not None and callable(method):
            return name, method
    return None, None


def transition_caller(world_model, transition_fn, generator=None, keywords=None):
    """``f(state, action)`` that advances the model one step (``keywords``:
    more keyword arguments for every call, e.g. an ensemble's ``member_index``).

    Raises ``TypeError`` when neither ``transition_fn`` nor a model method nor
    a callable model is found.
    """
    if transition_fn is not None:
        if keywords:
            transition_fn = functools.partial(transition_fn, **keywords)
        return bind_leading(transition_fn, (world_model,), 2, generator)
    name, method = find_method(world_model, TRANSITION_METHODS)
    if method is None and callable(world_model):
        method = world_model
    if method is None:
        raise TypeError(
            f"cannot find a transition for {type(world_model).__name__}: pass transition_fn, "
            f"give the model one of the methods {', '.join(TRANSITION_METHODS)}, or make it callable"
        )
    arity = positional_arity(method)
    method = _give_generator(method, generator)
    if keywords:
        method = functools.partial(method, **keywords)
    if arity is not None and arity <= 1:
        return lambda state, action: method(action)
    return method


def describe_transition(world_model, transition_fn) -> str:
    """How a step calls the model, in words (for ``wmenv.check``)."""
    if transition_fn is not None:
        arity = positional_arity(transition_fn)
        given = ["world_model", "state", "action"]
        take = len(given) if arity is None or arity >= 3 else arity
        return f"transition_fn({', '.join(given[:take])})"
    name, method = find_method(world_model, TRANSITION_METHODS)
    label = f"model.{name}" if name else "model"
    if method is None:
        method = world_model
        if _is_torch_module(world_model):
            label = "model (its forward)"
    arity = positional_arity(method)
    if arity is not None and arity <= 1:
        return f"{label}(action): it declares one positional parameter, so it gets the action alone, not the state"
    return f"{label}(state, action)"


def reset_caller(world_model, reset_fn, generator=None):
    """``f(seed, options)`` returning a reset result, or ``None`` when the env
    falls back to its default reset."""
    if reset_fn is not None:
        return bind_leading(reset_fn, (world_model,), 2, generator)
    _, method = find_method(world_model, RESET_METHODS)
    if method is None:
        return None
    return bind_leading(method, (), 2, generator)
