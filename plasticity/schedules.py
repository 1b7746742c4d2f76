"""α schedules of the expanded strategy: α as a function of training time within a task.

``t`` is measured in epochs from the start of the task: integers ``0..E-1`` when α is updated per
epoch, fractional (``epoch + step / steps_per_epoch``) when it is updated per optimizer step.
Values lie in ``[α0, 1]``; ``k`` is ``ramp`` (epochs).

- ``paper``:  ``α = min(1, 0.2 (t + 1))`` → 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, … (the paper's staircase;
  ignores α0 and k).
- ``linear``: ``α = α0 + (1 − α0) · min(1, t / k)``.
- ``cosine``: ``α = α0 + (1 − α0) · (1 − cos(π · min(1, t / k))) / 2`` (half-cosine, flat at both
  ends).
- ``step``:   ``α = α0`` for ``t < k``, then 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("paper", "linear", "cosine", "step")


@dataclass(frozen=True)
class Schedule:
    """α(t) for one task. Construct through :class:`plasticity.strategies.expanded.Params`,
    which validates the values."""

    kind: str = "paper"
    alpha0: float = 0.2
    ramp: float = 4.0

    def __call__(self, t: float) -> float:
        if self.kind == "paper":
            return min(1.0, 0.2 * (t + 1))
        if self.ramp <= 0:
            return 1.0
        frac = min(1.0, max(0.0, t / self.ramp))
        if frac >= 1.0 and self.kind != "step":
            return 1.0  # exactly 1, so the old network is dropped on time
        if self.kind == "linear":
            return self.alpha0 + (1 - self.alpha0) * frac
        if self.kind == "cosine":
            return self.alpha0 + (1 - self.alpha0) * (1 - math.cos(math.pi * frac)) / 2
        if self.kind == "step":
            return self.alpha0 if t < self.ramp else 1.0
        raise ValueError(f"unknown schedule {self.kind!r}")
