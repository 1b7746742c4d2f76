"""``expanded``: the paper's method, implemented as its text says (not as its code does).

At each task boundary the trained network becomes the frozen *old* part and a freshly
initialised *new* part is created; the output is blended on the logits::

    f(x) = α(t) · f_new(x) + (1 − α(t)) · f_old(x)

with α rising from α0 to 1 by the schedule (:mod:`plasticity.schedules`). Only the new part's
parameters are in the optimizer and receive gradients; the old part never changes (its forward
runs without autograd). Once α reaches 1 the old part is dropped, so the trained network has
exactly the base parameter count. At task 0 there is no old part (α = 1).

:meth:`Expanded.model` is the whole function: a :class:`Blend` of the new and the old part while
the old part is alive, the new part alone otherwise. At a boundary the *new* part (the trained
network) becomes the old part; an old part still alive then (α < 1 at the end of a task) is
dropped with its share of the output, as DESIGN.md specifies.

The paper's code did two things differently, both defects: it blended ``α·old + (1−α)·new``
(so the trained part faded out) and it deep-copied the old network before freezing, so the
"frozen" copy was still trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from plasticity.errors import UserError
from plasticity.schedules import SCHEDULES, Schedule
from plasticity.strategies.base import Context, Strategy, freeze


@dataclass(frozen=True)
class Params:
    schedule: str = "paper"
    """α schedule: paper, linear, cosine or step (see plasticity.schedules)."""
    alpha0: float = 0.2
    """α at the start of a task, in [0, 1) (ignored by the paper schedule)."""
    ramp: float = 4.0
    """Epochs until α reaches 1 (linear, cosine) or the epoch of the jump (step)."""
    per_step: bool = False
    """Update α before every optimizer step instead of once per epoch."""

    SEARCH: ClassVar[dict[str, Any]] = {
        "schedule": ["linear", "cosine", "step"],
        "alpha0": {"low": 0.0, "high": 0.9},
        "ramp": {"low": 1, "high": 10, "int": True},  # capped at the epochs per restart
    }

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(
                f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}"
            )
        if not 0.0 <= self.alpha0 < 1.0:
            raise UserError(f"alpha0 must be in [0, 1), got {self.alpha0}")
        if not self.ramp > 0:
            raise UserError(f"ramp must be > 0 epochs, got {self.ramp}")

    def to_schedule(self) -> Schedule:
        return Schedule(self.schedule, self.alpha0, self.ramp)


class Blend(nn.Module):
    """``α·new(x) + (1 − α)·old(x)`` on the logits; ``old`` is frozen and runs without autograd."""

    def __init__(self, new: nn.Module, old: nn.Module, alpha: float) -> None:
        super().__init__()
        self.new, self.old, self.alpha = new, freeze(old), alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.new(x)
        with torch.no_grad():
            old = self.old(x)
        return self.alpha * new + (1.0 - self.alpha) * old


class Expanded(Strategy):
    name = "expanded"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.schedule = self.params.to_schedule()
        self.alpha = 1.0

    def _new(self) -> nn.Module:
        """The trained part."""
        return self._model.new if isinstance(self._model, Blend) else self._model

    def begin_task(self, task: int) -> None:
        self._model = Blend(self.fresh(task), self._new(), 0.0)
        self.reset_optimizer()  # only the new part is optimised
        self._set_alpha(0.0)

    def begin_epoch(self, epoch: int) -> None:
        if isinstance(self._model, Blend) and not self.params.per_step:
            self._set_alpha(float(epoch))

    def before_step(self, t: float) -> None:
        if isinstance(self._model, Blend) and self.params.per_step:
            self._set_alpha(t)

    def _set_alpha(self, t: float) -> None:
        self.alpha = self.schedule(t)
        if self.alpha >= 1.0:  # the old part no longer affects the output: drop it
            self.alpha, self._model = 1.0, self._new()
        else:
            self._model.alpha = self.alpha

    def metrics(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alpha": self.alpha, "blend": self.alpha < 1.0}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.alpha = float(state["alpha"])
        self._model = self.fresh("restore")  # the structure; the weights come from the state
        if state.get("blend"):
            self._model = Blend(self._model, self.fresh("restore"), self.alpha)
        super().load_state_dict(state)
