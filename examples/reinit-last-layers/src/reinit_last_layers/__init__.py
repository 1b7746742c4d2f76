"""``reinit_last``: re-initialise the last layers of the network at every task boundary; the
layers below keep what they learnt (reset_head of Nikishin et al. 2022, generalised to the top
``layers`` layers).

The fresh weights are those of the network ``reset`` would start the task from, copied into the
same parameters, so the optimizer keeps following them; their Adam moments are dropped, so they
start from zero like a fresh layer's. (``reinit_last_layers.broken`` shows the mistake this
avoids.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from plasticity.errors import UserError
from plasticity.strategies import Strategy


@dataclass(frozen=True)
class Params:
    layers: int = 2
    """How many of the last layers with weights (Linear or Conv2d) start afresh at a boundary."""

    SEARCH: ClassVar[dict[str, Any]] = {"layers": [1, 2, 3]}
    """What a study file's ``reinit_last: default`` searches (besides the learning rate)."""

    def validate(self) -> None:
        if self.layers < 1:
            raise UserError(f"reinit_last.layers must be >= 1, got {self.layers}")


def last_layers(net: nn.Module, n: int) -> list[nn.Module]:
    """The last ``n`` layers of ``net`` that have weights, in module order."""
    return [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-n:]


class ReinitLastLayers(Strategy):
    name = "reinit_last"
    Params = Params

    @torch.no_grad()
    def begin_task(self, task: int) -> None:
        fresh = last_layers(self.fresh(task), self.params.layers)
        for mine, new in zip(last_layers(self._model, self.params.layers), fresh, strict=True):
            for p, q in zip(mine.parameters(), new.parameters(), strict=True):
                p.copy_(q)
                self.optimizer.state.pop(p, None)
