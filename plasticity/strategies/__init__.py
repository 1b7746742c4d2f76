"""Strategies: what happens to the network at each task boundary. One module per strategy.

:func:`get` is the one resolver of a strategy name, used wherever one enters (``plasticity run
--strategies``, a study file's ``strategies:``, ``--param``, ``check-strategy``): a built-in
name, a name an installed package registers under the ``plasticity.strategies`` entry-point
group, or ``module:Class`` in the user's own code (:mod:`plasticity.strategies.plugins`).
"""

from __future__ import annotations

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy, parse_params
from plasticity.strategies.cbp import ContinualBackprop
from plasticity.strategies.continuous import Continuous
from plasticity.strategies.crelu import CReLUStrategy
from plasticity.strategies.expanded import Expanded
from plasticity.strategies.fourier import DeepFourier
from plasticity.strategies.injection import Injection
from plasticity.strategies.l2 import L2
from plasticity.strategies.l2_init import L2Init
from plasticity.strategies.nap import NormalizeAndProject
from plasticity.strategies.parseval import Parseval
from plasticity.strategies.plugins import (
    entry_points,
    from_entry_point,
    from_reference,
    is_reference,
)
from plasticity.strategies.redo import ReDo
from plasticity.strategies.reset import Reset
from plasticity.strategies.reset_head import ResetHead
from plasticity.strategies.shrink_perturb import ShrinkPerturb

STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s
    for s in (
        Reset,
        Continuous,
        Expanded,
        ShrinkPerturb,
        ResetHead,
        Injection,
        ReDo,
        L2Init,
        CReLUStrategy,
        ContinualBackprop,
        NormalizeAndProject,
        Parseval,
        DeepFourier,
        L2,
    )
}


_PLUGINS: dict[str, type[Strategy]] = {}
"""Plugin strategies resolved so far (a module is imported, an entry point loaded, once)."""


def get(name: str) -> type[Strategy]:
    """The strategy class ``name`` stands for: a built-in, an entry point of an installed
    package, or ``module:Class``. Raises :class:`UserError` (one line) on an unknown name or a
    plugin that cannot be used."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    if name not in _PLUGINS:
        if is_reference(name):
            _PLUGINS[name] = from_reference(name)
        else:
            ep = entry_points().get(name)
            if ep is None:
                raise UserError(
                    f"unknown strategy {name!r}; choose from {', '.join(names())}, "
                    "or give MODULE:CLASS"
                )
            _PLUGINS[name] = from_entry_point(ep)
    return _PLUGINS[name]


def names() -> list[str]:
    """Every strategy known by name: the built-ins, then installed packages' entry points (a
    plugin that reuses a built-in's name is ignored: the built-in wins)."""
    return [*STRATEGIES, *(n for n in entry_points() if n not in STRATEGIES)]


def origin(name: str) -> str:
    """Where ``name``'s class comes from, in words (``built-in``, ``entry point ... of DIST
    VERSION``, ``imported from FILE``), for listings and ``study validate``."""
    import importlib
    import sys

    if name in STRATEGIES:
        return "built-in"
    cls = get(name)
    if is_reference(name):
        module = sys.modules.get(cls.__module__) or importlib.import_module(cls.__module__)
        return f"imported from {getattr(module, '__file__', None) or cls.__module__}"
    ep = entry_points()[name]
    dist = getattr(ep, "dist", None)
    return f"entry point {ep.value}" + (f" of {dist.name} {dist.version}" if dist else "")


__all__ = ["STRATEGIES", "Context", "Strategy", "get", "names", "origin", "parse_params"]
