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


def _run(config, strategy, data, **params):
    cfg = config.replace(strategies=[strategy], strategy_params={strategy: params})
    return StrategyRun(cfg, strategy, data)


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
