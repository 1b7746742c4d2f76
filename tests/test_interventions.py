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
    build,
    crelu_spec,
    parameter_count,
    with_factors,
    with_norm_layers,
)
from plasticity.seeding import seeded
from plasticity.strategies.nap import group_norm, project, projected_groups
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


# -- Normalize-and-Project ---------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_norm_layers_added_to_a_network_are_those_of_norm_layer(model):
    spec = architecture(model, "mnist")
    with seeded(0, "x"):
        plain = build(with_factors(spec, (12, 8)), (1, 28, 28))
    with seeded(0, "x"):
        normed = build(with_factors(spec, (12, 8), "layer"), (1, 28, 28))
    added = with_norm_layers(plain)
    assert [type(m) for m in added] == [type(m) for m in normed]
    assert [repr(m) for m in added] == [repr(m) for m in normed]
    a, b = added.state_dict(), normed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert with_norm_layers(normed) is normed  # never twice


def test_project_scales_each_group_to_its_target_norm():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    gamma, beta = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))  # joint norm 2
    project([[w], [gamma, beta]], [torch.tensor(10.0), torch.tensor(math.sqrt(2))])
    assert w.tolist() == [[6.0, 8.0]]
    assert torch.allclose(gamma, torch.full((2,), 1 / math.sqrt(2)))
    assert torch.allclose(beta, torch.full((2,), 1 / math.sqrt(2)))


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_nap_keeps_every_layer_at_its_initial_norm_after_each_step(tiny, tiny_config, norm):
    run = _run(tiny_config.replace(norm=norm), "nap", tiny)
    s = run.strategy
    net = s.model()
    kinds = [type(m).__name__ for m in net]  # a layer norm before each nonlinearity
    assert kinds == [
        "Flatten", "Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"
    ]  # fmt: skip
    start = [p.detach().clone() for p in net.parameters()]
    weights = [net[1].weight, net[4].weight, net[7].weight]
    initial = [float(torch.linalg.vector_norm(w.detach())) for w in weights]
    affine = [(net[2].weight, net[2].bias), (net[5].weight, net[5].bias)]

    x, y = tiny.prepare(tiny.train.x[:128]), tiny.train.y[:128]
    s.optimizer.zero_grad()
    nn.functional.cross_entropy(s.forward(x), y).backward()
    s.optimizer.step()
    moved = [float(torch.linalg.vector_norm(w.detach())) for w in weights]
    assert all(abs(m - i) > 1e-4 for m, i in zip(moved, initial)), "the step moves the norms"
    s.after_step(x)  # the projection
    for w, n0 in zip(weights, initial):
        assert float(torch.linalg.vector_norm(w.detach())) == pytest.approx(n0, rel=1e-6)
    for gamma, beta in affine:  # scale 1 and offset 0 at init: joint norm √d
        joint = torch.linalg.vector_norm(torch.cat([gamma, beta]).detach())
        assert float(joint) == pytest.approx(math.sqrt(gamma.numel()), rel=1e-6)
        assert not torch.equal(beta, torch.zeros_like(beta)), "the offsets were trained"
    for _ in range(run.total_epochs):  # and after every step of a whole run, across boundaries
        run.run_epoch()
    for group, target in zip(s.groups, s.targets):
        assert float(group_norm([p.detach() for p in group])) == pytest.approx(
            float(target), rel=1e-6
        )
    assert all(not torch.equal(p, q) for p, q in zip(net.parameters(), start))
    assert [len(g) for g in projected_groups(net)] == [1, 2, 1, 2, 1]


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
