"""Strategies: what happens to the network at each task boundary. One module per strategy."""

from __future__ import annotations

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy, parse_params
from plasticity.strategies.cbp import ContinualBackprop
from plasticity.strategies.continuous import Continuous
from plasticity.strategies.crelu import CReLUStrategy
from plasticity.strategies.expanded import Expanded
from plasticity.strategies.injection import Injection
from plasticity.strategies.l2_init import L2Init
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
    )
}


def get(name: str) -> type[Strategy]:
    """The strategy class called ``name`` (raises :class:`UserError` on an unknown name)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = ["STRATEGIES", "Context", "Strategy", "get", "parse_params"]
