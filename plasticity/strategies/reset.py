"""``reset``: a freshly initialised network and optimizer at every task boundary (the
"from scratch" baseline; Avalanche's ``FromScratchTrainingPlugin``)."""

from __future__ import annotations

from plasticity.strategies.base import Strategy


class Reset(Strategy):
    name = "reset"

    def begin_task(self, task: int) -> None:
        self._model = self.fresh(task)
        self.reset_optimizer()
