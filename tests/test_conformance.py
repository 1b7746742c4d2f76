"""The conformance kit can fail: a strategy made to break one rule fails that rule, says what
it saw, and passes the others. (The built-ins pass every rule: tests/test_strategies.py.)"""

from __future__ import annotations

import pytest
import torch

from plasticity import conformance
from plasticity.strategies import Strategy


class ForwardIsNotModel(Strategy):
    """Trains a function other than the one ``model()`` names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self._model(x)


class DrawsFromTheGlobalRNG(Strategy):
    """Perturbs the weights at a boundary with the global RNG, not a seeded generator."""

    @torch.no_grad()
    def begin_task(self, task: int) -> None:
        for p in self._model.parameters():
            p.add_(0.01 * torch.randn_like(p))


class ForgetsItsCounter(Strategy):
    """Shrinks the weights more at every boundary, but keeps the count out of its state."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.boundaries = 0

    @torch.no_grad()
    def begin_task(self, task: int) -> None:
        self.boundaries += 1
        for p in self._model.parameters():
            p.mul_(0.5**self.boundaries)


class HardCodesReLU(Strategy):
    """Starts each task from a fresh network made without its activation."""

    def begin_task(self, task: int) -> None:
        self._model = self.ctx.new_network(task)
        self.reset_optimizer()


class RaisesAtTheBoundary(Strategy):
    def begin_task(self, task: int) -> None:
        raise RuntimeError("no plasticity today")


CASES = [
    (ForwardIsNotModel, {"model": "after task 0 epoch 0: forward(x) differs from model()(x)"}),
    (
        DrawsFromTheGlobalRNG,
        {
            "determinism": "two runs of seed 0 differ: task 1 epoch 0: train_loss",
            "resume": "saved and restored before task 0 epoch 1, then: task 1 epoch 0: train_loss",
        },
    ),
    (ForgetsItsCounter, {"resume": "saved and restored before task 1 epoch 1, then: task 2"}),
    (HardCodesReLU, {"activation": "asked for 2 of 4 network(s) with another (keys 1, 2)"}),
    (
        RaisesAtTheBoundary,
        {
            rule: "raised RuntimeError: no plasticity today (" + __file__
            for rule in ("optimizer", "model", "determinism", "resume", "activation")
        },
    ),
]


@pytest.mark.parametrize("cls,failures", CASES, ids=[c.__name__ for c, _ in CASES])
def test_a_strategy_that_breaks_a_rule_fails_that_rule_only(cls, failures, tiny):
    outcomes = list(conformance.check(f"{__name__}:{cls.__name__}", data=tiny))
    assert [o.rule for o in outcomes] == list(conformance.RULES)
    assert {o.rule for o in outcomes if not o.ok} == set(failures)
    for outcome in outcomes:
        if not outcome.ok:
            assert failures[outcome.rule] in outcome.seen, outcome.line()
            assert outcome.line().startswith(f"FAIL  {outcome.rule}")
