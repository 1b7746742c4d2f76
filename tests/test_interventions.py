"""Issue 22's interventions, each against its defining rule on a hand-worked example:
Parseval regularisation's penalty, Normalize-and-Project's projection, deep Fourier features'
activation and widths."""

import math

import pytest
import torch
from torch import nn

from plasticity.loop import StrategyRun
from plasticity.models import (
    MODELS,
    Fourier,
    architecture,
    crelu_spec,
    parameter_count,
)
from plasticity.strategies.parseval import parseval_penalty


def _run(config, strategy, data, **params):
    cfg = config.replace(strategies=[strategy], strategy_params={strategy: params})
    return StrategyRun(cfg, strategy, data)


# -- Parseval regularisation -------------------------------------------------------------------
def test_parseval_penalty_of_hand_made_matrices():
    # W Wᵀ = [[5, 11], [11, 25]]; minus 2I: [[3, 11], [11, 23]]; 9 + 121 + 121 + 529 = 780
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert parseval_penalty([w], 2.0).item() == 780.0
    # 2x3 rows, orthogonal with norm² 2 and 1: W Wᵀ = diag(2, 1); minus 2I leaves (0, -1) -> 1
    v = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert parseval_penalty([v], 2.0).item() == 1.0
    assert parseval_penalty([v], 1.0).item() == 1.0  # diag(1, 0): one 1 left
    # orthogonal rows of norm √2: exactly the target, no penalty; the terms add over matrices
    u = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]])
    assert parseval_penalty([u], 2.0).item() == 0.0
    assert parseval_penalty([w, v, u], 2.0).item() == 781.0
    # a conv weight (out x in x k x k) is read as out x (in·k·k)
    assert parseval_penalty([v.reshape(2, 3, 1, 1)], 2.0).item() == 1.0


def test_parseval_strategy_regularises_the_hidden_weights_only(tiny, tiny_config):
    lam, s = 0.01, 2.0
    run = _run(tiny_config, "parseval", tiny, strength=lam)
    run.run_epoch()
    strategy = run.strategy
    net = strategy.model()  # Flatten, Linear, ReLU, Linear, ReLU, Linear
    hidden = [net[1].weight, net[3].weight]
    expected = lam * sum(((w @ w.T - s * torch.eye(w.shape[0])) ** 2).sum() for w in hidden)
    penalty = strategy.penalty()
    assert torch.allclose(penalty, expected, rtol=1e-6)
    strategy.optimizer.zero_grad()
    penalty.backward()
    for w in hidden:  # d/dW ‖W Wᵀ − sI‖²_F = 4 (W Wᵀ − sI) W
        grad = 4 * lam * (w @ w.T - s * torch.eye(w.shape[0])) @ w
        assert torch.allclose(w.grad, grad.detach(), rtol=1e-4, atol=1e-7)
    assert net[5].weight.grad is None, "the output layer is not regularised"
    assert all(m.bias.grad is None for m in (net[1], net[3], net[5])), "nor are biases"


# -- Deep Fourier features ---------------------------------------------------------------------
def test_fourier_features_of_a_given_pre_activation():
    z = torch.tensor([[0.0, math.pi / 2, math.pi]])
    out = Fourier()(z)  # sines then cosines: [sin 0, sin π/2, sin π, cos 0, cos π/2, cos π]
    assert torch.allclose(out, torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0, -1.0]]), atol=1e-6)
    maps = torch.tensor([0.0, math.pi / 2]).reshape(1, 2, 1, 1)  # a conv map: along channels
    assert torch.allclose(Fourier()(maps).flatten(), torch.tensor([0.0, 1.0, 1.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_fourier_networks_keep_the_parameter_count_within_one_percent(model, dataset):
    base, fourier = parameter_count(model, dataset), parameter_count(model, dataset, "fourier")
    assert abs(fourier - base) / base < 0.01
    assert fourier == parameter_count(model, dataset, "crelu")  # the same narrowed widths


def test_fourier_strategy_network_reads_two_features_per_unit(tiny, tiny_config):
    run = _run(tiny_config, "fourier", tiny)
    net = run.strategy.model()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    widths = crelu_spec(architecture("mlp-small", "mnist"), (1, 28, 28)).hidden
    assert [m.out_features for m in linears[:-1]] == list(widths)
    assert [m.in_features for m in linears[1:]] == [2 * w for w in widths]
    assert sum(isinstance(m, Fourier) for m in net) == len(widths)
    assert run.run_epoch().params == parameter_count("mlp-small", "mnist", "fourier")
