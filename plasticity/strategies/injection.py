"""``injection`` (plasticity injection, Nikishin et al. 2023).

At an injection the network ``f`` is frozen and two copies of one freshly initialised network
are added: ``g_a`` (trained) and ``g_b`` (frozen), with output

    f(x) + g_a(x) − g_b(x)

so the function is unchanged at the moment of injection and only ``g_a`` learns afterwards.
Each injection adds two networks' worth of parameters, so injections happen at the
first ``injections`` task boundaries only (default 1, as in the paper); later boundaries keep
training ``g_a``. A second injection freezes the whole current function as the new ``f``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from plasticity.errors import UserError
from plasticity.strategies.base import Strategy


@dataclass(frozen=True)
class Params:
    injections: int = 1
    """How many task boundaries (the first ones) inject a new network."""

    SEARCH: ClassVar[dict[str, Any]] = {"injections": [1, 2]}

    def validate(self) -> None:
        if self.injections < 1:
            raise UserError(f"injection.injections must be >= 1, got {self.injections}")


class Injected(nn.Module):
    """``base(x) + a(x) − b(x)`` with ``base`` and ``b`` frozen."""

    def __init__(self, base: nn.Module, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.base, self.a, self.b = base, a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            frozen = self.base(x) - self.b(x)
        return frozen + self.a(x)


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    for p in module.parameters():
        p.grad = None
    return module


class Injection(Strategy):
    name = "injection"
    Params = Params

    def __init__(self, ctx, params=None) -> None:  # noqa: ANN001
        super().__init__(ctx, params)
        self.composite: Injected | None = None
        self.injected = 0

    def begin_task(self, task: int) -> None:
        if self.injected >= self.params.injections:
            return
        base = _freeze(self.composite if self.composite is not None else self.network)
        g_a = self.ctx.new_network(f"inject-{task}")
        g_b = _freeze(self.ctx.new_network(f"inject-{task}"))  # the same initial weights
        self.composite = Injected(base, g_a, g_b)
        self.network = g_a  # the trainable part
        self.injected += 1
        self.reset_optimizer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) if self.composite is None else self.composite(x)

    def modules(self) -> list[nn.Module]:
        return [self.network] if self.composite is None else [self.composite]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["injected"] = self.injected
        state["composite"] = None if self.composite is None else self.composite.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.injected = int(state["injected"])
        self.composite = None
        if self.injected:
            net = self.ctx.new_network("restore")
            for _ in range(self.injected):  # rebuild the nesting, then load all weights
                net = Injected(
                    _freeze(net),
                    self.ctx.new_network("restore"),
                    _freeze(self.ctx.new_network("restore")),
                )
            net.load_state_dict(state["composite"])
            self.composite, self.network = net, net.a
        super().load_state_dict(state)
