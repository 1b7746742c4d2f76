"""``l2_init`` (Kumar et al. 2023, "Maintaining plasticity in continual learning via
regenerative regularization"): keep training one network with the extra loss

    λ/2 · ‖θ − θ_0‖²

where θ_0 are the weights at initialisation (task 0's initial network). Its gradient is
λ(θ − θ_0), pulling weights back toward a trainable region. θ_0 is rebuilt from the seed, so it
is not stored in checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy


@dataclass(frozen=True)
class Params:
    strength: float = 1e-3
    """λ of the penalty."""

    SEARCH: ClassVar[dict[str, Any]] = {"strength": {"low": 1e-5, "high": 1e-2, "log": True}}

    def validate(self) -> None:
        if self.strength < 0:
            raise UserError(f"l2_init.strength must be >= 0, got {self.strength}")


class L2Init(Strategy):
    name = "l2_init"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.initial = [p.detach().clone() for p in self._model.parameters()]  # fresh(0)

    def penalty(self) -> torch.Tensor:
        diffs = [
            (p - p0).pow(2).sum()
            for p, p0 in zip(self._model.parameters(), self.initial, strict=True)
        ]
        return 0.5 * self.params.strength * torch.stack(diffs).sum()
