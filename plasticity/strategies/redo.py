"""``redo``: recycling dormant neurons (Sokar et al. 2023, "The dormant neuron phenomenon in
deep reinforcement learning").

Every ``every`` optimizer steps, each hidden unit i of a layer gets the score

    s_i = E_x |h_i(x)| / mean_j E_x |h_j(x)|

over the step's training batch (for conv layers the expectation also runs over positions).
Units with ``s_i ≤ τ`` are dormant and recycled: fresh incoming weights (from a newly
initialised network), zero bias, zero outgoing weights (so the output does not jump), and their
Adam moments zeroed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy
from plasticity.units import ActivityProbe, dormant_units, hidden_layers, reinit_units


@dataclass(frozen=True)
class Params:
    tau: float = 0.1
    """Dormancy threshold τ on the normalised score."""
    every: int = 10
    """Optimizer steps between checks."""

    SEARCH: ClassVar[dict[str, Any]] = {"tau": {"low": 0.0, "high": 0.2}, "every": [1, 10, 100]}

    def validate(self) -> None:
        if self.tau < 0:
            raise UserError(f"redo.tau must be >= 0, got {self.tau}")
        if self.every < 1:
            raise UserError(f"redo.every must be >= 1, got {self.every}")


class ReDo(Strategy):
    name = "redo"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.hidden = hidden_layers(self._model)
        self.probe = ActivityProbe(self.hidden)
        self.steps = 0
        self.recycled = 0

    def after_step(self, x: torch.Tensor) -> None:
        self.steps += 1
        if self.steps % self.params.every:
            return
        fresh = None
        for i, layer in enumerate(self.hidden):
            activity = self.probe.latest[i]
            if activity is None:
                continue
            idx = dormant_units(activity, self.params.tau)
            if len(idx):
                if fresh is None:
                    fresh = hidden_layers(self.fresh(f"redo-{self.steps}"))
                reinit_units(layer, idx, fresh[i], self.optimizer)
                self.recycled += len(idx)

    def metrics(self) -> dict[str, float]:
        return {"recycled": float(self.recycled)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps, "recycled": self.recycled}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps, self.recycled = int(state["steps"]), int(state["recycled"])
