"""``cbp``: continual backprop (Dohare et al. 2024, "Loss of plasticity in deep continual
learning").

For every hidden unit i, after each optimizer step:

- utility ``u_i ← η·u_i + (1 − η)·mean_k |w_out[k, i]| · E_x |h_i(x)|`` (η = ``decay``, 0.99),
- age ``a_i ← a_i + 1``.

Units older than ``maturity`` (100 steps) are eligible. Each step, ``rate`` × (number of
eligible units) is added to a per-layer counter; its integer part is the number of eligible
units with the lowest utility that are replaced (fractions carry over): fresh incoming weights,
zero bias, zero outgoing weights, Adam moments zeroed, utility 0, age 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy
from plasticity.units import ActivityProbe, hidden_layers, reinit_units


@dataclass(frozen=True)
class Params:
    rate: float = 1e-4
    """Fraction of eligible units replaced per step."""
    maturity: int = 100
    """Steps a unit must have lived before it can be replaced."""
    decay: float = 0.99
    """η of the utility's moving average."""

    SEARCH: ClassVar[dict[str, Any]] = {
        "rate": {"low": 1e-5, "high": 1e-2, "log": True},
        "maturity": [10, 100, 1000],
    }

    def validate(self) -> None:
        if not 0 <= self.rate <= 1:
            raise UserError(f"cbp.rate must be in [0, 1], got {self.rate}")
        if self.maturity < 0:
            raise UserError(f"cbp.maturity must be >= 0, got {self.maturity}")
        if not 0 <= self.decay < 1:
            raise UserError(f"cbp.decay must be in [0, 1), got {self.decay}")


class ContinualBackprop(Strategy):
    name = "cbp"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.hidden = hidden_layers(self._model)
        self.probe = ActivityProbe(self.hidden)
        dev = next(self._model.parameters()).device
        self.utility = [torch.zeros(h.size, device=dev) for h in self.hidden]
        self.age = [torch.zeros(h.size, dtype=torch.long, device=dev) for h in self.hidden]
        self.pending = [0.0] * len(self.hidden)
        self.steps = 0
        self.replaced = 0

    def after_step(self, x: torch.Tensor) -> None:
        self.steps += 1
        eta = self.params.decay
        fresh = None
        for i, layer in enumerate(self.hidden):
            activity = self.probe.latest[i]
            if activity is None:
                continue
            contribution = activity * layer.outgoing_magnitude()
            self.utility[i].mul_(eta).add_(contribution, alpha=1 - eta)
            self.age[i] += 1
            eligible = torch.nonzero(self.age[i] > self.params.maturity).flatten()
            self.pending[i] += self.params.rate * len(eligible)
            count = int(self.pending[i])
            if count == 0:
                continue
            self.pending[i] -= count
            order = torch.argsort(self.utility[i][eligible], stable=True)
            idx = eligible[order[:count]]
            if fresh is None:
                fresh = hidden_layers(self.fresh(f"cbp-{self.steps}"))
            reinit_units(layer, idx, fresh[i], self.optimizer)
            self.utility[i][idx] = 0.0
            self.age[i][idx] = 0
            self.replaced += len(idx)

    def metrics(self) -> dict[str, float]:
        return {"replaced": float(self.replaced)}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "utility": self.utility,
            "age": self.age,
            "pending": self.pending,
            "steps": self.steps,
            "replaced": self.replaced,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.utility = [u.clone() for u in state["utility"]]
        self.age = [a.clone() for a in state["age"]]
        self.pending = [float(p) for p in state["pending"]]
        self.steps, self.replaced = int(state["steps"]), int(state["replaced"])
