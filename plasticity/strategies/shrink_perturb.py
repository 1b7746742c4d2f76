"""``shrink_perturb`` (Ash & Adams 2020, "On warm-starting neural network training").

At each task boundary every parameter becomes ``θ ← λ·θ + p·θ_fresh``, with ``θ_fresh`` a newly
initialised network (the same fresh network ``reset`` would use), and the optimizer starts
afresh (its moments belong to the old weights). With ``every_step`` the same map is applied
after every optimizer step instead (use λ close to 1 and a small p, e.g. 0.999 and 1e-3; a fresh
network is drawn for each step, which costs one initialisation per step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy


@dataclass(frozen=True)
class Params:
    shrink: float = 0.4
    """λ: the weights are multiplied by it."""
    perturb: float = 0.1
    """p: the scale of the fresh weights added."""
    every_step: bool = False
    """Apply after every optimizer step instead of at task boundaries."""

    SEARCH: ClassVar[dict[str, Any]] = {
        "shrink": {"low": 0.1, "high": 1.0},
        "perturb": {"low": 1e-3, "high": 0.5, "log": True},
    }

    def validate(self) -> None:
        if not 0 <= self.shrink <= 1:
            raise UserError(f"shrink_perturb.shrink must be in [0, 1], got {self.shrink}")
        if self.perturb < 0:
            raise UserError(f"shrink_perturb.perturb must be >= 0, got {self.perturb}")


class ShrinkPerturb(Strategy):
    name = "shrink_perturb"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.steps = 0

    @torch.no_grad()
    def shrink_perturb(self, key: int | str) -> None:
        fresh = self.fresh(key)
        for p, q in zip(self._model.parameters(), fresh.parameters(), strict=True):
            p.mul_(self.params.shrink).add_(q, alpha=self.params.perturb)

    def begin_task(self, task: int) -> None:
        if not self.params.every_step:
            self.shrink_perturb(task)  # the fresh network of task `task`, as reset's
            self.reset_optimizer()

    def after_step(self, x: torch.Tensor) -> None:
        self.steps += 1
        if self.params.every_step:
            self.shrink_perturb(f"sp-step-{self.steps}")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = int(state["steps"])
