"""``injection`` (plasticity injection, Nikishin et al. 2023).

At an injection the network ``f`` is frozen and two copies of one freshly initialised network
are added: ``g_a`` (trained) and ``g_b`` (frozen), with output

    f(x) + g_a(x) − g_b(x)

so the function is unchanged at the moment of injection and only ``g_a`` learns afterwards.
Each injection adds two networks' worth of parameters, so injections happen at the
first ``injections`` task boundaries only (default 1, as in the paper); later boundaries keep
training ``g_a``. A second injection freezes the whole current function as the new ``f``.

:meth:`Injection.model` is the whole function: the network before the first injection, the
(nested) :class:`Injected` composite after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy, freeze


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
        self.base, self.a, self.b = freeze(base), a, freeze(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            frozen = self.base(x) - self.b(x)
        return frozen + self.a(x)


class Injection(Strategy):
    name = "injection"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.injected = 0

    def begin_task(self, task: int) -> None:
        if self.injected >= self.params.injections:
            return
        g_a = self.fresh(f"inject-{task}")
        g_b = self.fresh(f"inject-{task}")  # the same initial weights
        self._model = Injected(self._model, g_a, g_b)
        self.injected += 1
        self.reset_optimizer()  # only g_a is optimised

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "injected": self.injected}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.injected = int(state["injected"])
        self._model = self.fresh("restore")  # rebuild the nesting, then load all weights
        for _ in range(self.injected):
            self._model = Injected(self._model, self.fresh("restore"), self.fresh("restore"))
        super().load_state_dict(state)
