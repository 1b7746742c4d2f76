"""``reset_head`` (Nikishin et al. 2022, "The primacy bias in deep reinforcement learning"):
re-initialise the output layer at every task boundary; the rest of the network keeps training.

The head gets the output layer of the fresh network ``reset`` would use for that task, written
into the same parameters (the optimizer keeps following them), and Adam's state for the head is
dropped so its moments start from zero.
"""

from __future__ import annotations

import torch
from torch import nn

from plasticity.strategies.base import Strategy


def head(net: nn.Module) -> nn.Linear:
    """The output layer: the last Linear of the network."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


class ResetHead(Strategy):
    name = "reset_head"

    @torch.no_grad()
    def begin_task(self, task: int) -> None:
        mine, fresh = head(self._model), head(self.fresh(task))
        for p, q in ((mine.weight, fresh.weight), (mine.bias, fresh.bias)):
            p.copy_(q)
            self.optimizer.state.pop(p, None)
