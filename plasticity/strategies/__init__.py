"""Strategies: what happens to the network at each task boundary. One module per strategy."""

from __future__ import annotations

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy, parse_params
from plasticity.strategies.continuous import Continuous
from plasticity.strategies.expanded import Expanded
from plasticity.strategies.reset import Reset

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Reset, Continuous, Expanded)}


def get(name: str) -> type[Strategy]:
    """The strategy class called ``name`` (raises :class:`UserError` on an unknown name)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = ["STRATEGIES", "Context", "Strategy", "get", "parse_params"]
