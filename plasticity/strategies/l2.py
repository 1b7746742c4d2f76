"""``l2``: plain weight decay, the baseline Plasticine calls "L2" (Lyle et al. 2024 rank weight
decay, with LayerNorm, among the most robust interventions against loss of plasticity): keep
training one network, as ``continuous``, with the optimizer's weight decay set to ``strength``.

The decay is the optimizer's own (see :mod:`plasticity.optim`): an L2 term λθ added to the
gradient for ``adam``, ``trac`` and ``sgd`` (the gradient of λ/2·‖θ‖²), decoupled for ``adamw``
and ``kron``. ``strength`` replaces the setting's ``weight_decay`` for this strategy only, so one
study can set ``l2`` beside ``continuous`` (and every other strategy) with no decay: ``l2`` with
strength λ is exactly ``continuous`` with ``weight_decay: λ``. Unlike ``l2_init``, the pull is
towards 0, not towards the initial weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy


@dataclass(frozen=True)
class Params:
    strength: float = 1e-4
    """λ: the optimizer's weight decay for this strategy (the setting's ``weight_decay`` is
    ignored)."""

    SEARCH: ClassVar[dict[str, Any]] = {"strength": {"low": 1e-6, "high": 1e-2, "log": True}}

    def validate(self) -> None:
        if not self.strength >= 0:
            raise UserError(f"l2.strength must be >= 0, got {self.strength}")


class L2(Strategy):
    name = "l2"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        strength = (params or Params()).strength
        make = ctx.new_optimizer

        def new_optimizer(parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
            optimizer = make(parameters)
            for group in optimizer.param_groups:
                if "weight_decay" not in group:
                    raise UserError(f"{type(optimizer).__name__} has no weight decay for l2 to set")
                group["weight_decay"] = strength
            return optimizer

        super().__init__(dataclasses.replace(ctx, new_optimizer=new_optimizer), params)
