"""Each strategy against its definition (DESIGN.md), on a small network and real data."""

import pytest
import torch
from conftest import optimizer_param_ids
from torch import nn

from plasticity import conformance, diagnostics
from plasticity.errors import UserError
from plasticity.loop import PROBE_SIZE, StrategyRun
from plasticity.models import network_factory, parameter_count
from plasticity.strategies import STRATEGIES
from plasticity.strategies.expanded import Blend
from plasticity.units import hidden_layers, reinit_units


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _run(config, strategy, data):
    return StrategyRun(config.replace(strategies=[strategy]), strategy, data)


# The contract (plasticity.conformance, the rules of `plasticity check-strategy`): every
# built-in passes every rule with its default parameters, and the variants below, which reach
# code the defaults leave alone (the blend dropped at alpha 1, per-step shrinking, several
# injections, recycling at every step), pass the rules that look at every boundary.
_VARIANTS = [
    ("expanded", {"schedule": "linear", "alpha0": 0.25, "ramp": 2}),
    ("shrink_perturb", {"every_step": True}),
    ("injection", {"injections": 2}),
    ("redo", {"every": 1, "tau": 1.0}),
    ("cbp", {"rate": 0.5, "maturity": 1}),
]


@pytest.mark.parametrize("rule", list(conformance.RULES))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_builtin_keeps_the_contract(strategy, rule, tiny):
    outcome = conformance.run_rule(rule, conformance.tiny_config(strategy), tiny)
    assert outcome.ok, outcome.line()


@pytest.mark.parametrize("rule", ["optimizer", "model", "activation"])
@pytest.mark.parametrize("strategy,params", _VARIANTS)
def test_variants_keep_the_contract(strategy, params, rule, tiny):
    outcome = conformance.run_rule(rule, conformance.tiny_config(strategy, params), tiny)
    assert outcome.ok, outcome.line()


def test_expanded_old_part_frozen_new_part_trained(tiny, tiny_config):
    run = _run(tiny_config, "expanded", tiny)
    for _ in range(tiny_config.epochs):
        run.run_epoch()  # task 0
    trained = _snapshot(run.strategy.model())
    run.run_epoch()  # crosses the boundary, trains epoch 0 of task 1 at alpha0
    s = run.strategy
    blend = s.model()
    assert isinstance(blend, Blend)
    for p, before in zip(blend.old.parameters(), trained, strict=True):
        assert torch.equal(p, before), "the old part must not change"
        assert not p.requires_grad
    fresh = run.strategy.ctx.new_network(1)
    assert any(not torch.equal(p, q) for p, q in zip(blend.new.parameters(), fresh.parameters()))
    assert optimizer_param_ids(s.optimizer) == {id(p) for p in blend.new.parameters()}

    # gradients reach the new part only
    s.optimizer.zero_grad()
    x = tiny.prepare(tiny.train.x[:32])
    torch.nn.functional.cross_entropy(s.forward(x), tiny.train.y[:32]).backward()
    assert all(p.grad is None for p in blend.old.parameters())
    assert all(p.grad is not None for p in blend.new.parameters())


def test_expanded_blends_alpha_new_plus_one_minus_alpha_old(tiny, tiny_config):
    run = _run(tiny_config, "expanded", tiny)
    for _ in range(tiny_config.epochs):
        run.run_epoch()
    s = run.strategy
    s.begin_task(1)
    s.begin_epoch(0)
    assert s.alpha == 0.25  # alpha0 of the linear schedule
    x = tiny.prepare(tiny.test.x[:16])
    new, old = s.model().new, s.model().old
    with torch.no_grad():
        expected = 0.25 * new(x) + 0.75 * old(x)
        assert torch.allclose(s.forward(x), expected)
        s.begin_epoch(1)  # ramp 2: alpha 0.625
        assert s.alpha == pytest.approx(0.625)
        assert torch.allclose(s.forward(x), 0.625 * new(x) + 0.375 * old(x))


def test_expanded_drops_old_part_once_alpha_reaches_one(tiny, tiny_config):
    run = _run(tiny_config, "expanded", tiny)
    base = parameter_count("mlp-small", "mnist")
    records = [run.run_epoch() for _ in range(2 * tiny_config.epochs)]
    task1 = [r for r in records if r.task == 1]
    assert [r.alpha for r in task1] == pytest.approx([0.25, 0.625, 1.0])
    assert [r.params for r in task1] == [2 * base, 2 * base, base]
    assert [r.trainable_params for r in task1] == [base] * 3
    assert not isinstance(run.strategy.model(), Blend)
    assert run.strategy.parameter_count() == base


def test_expanded_per_step_alpha_moves_within_an_epoch(tiny, tiny_config):
    cfg = tiny_config.replace(
        strategy_params={
            "expanded": {"schedule": "linear", "alpha0": 0.0, "ramp": 1.0, "per_step": True}
        }
    )
    run = _run(cfg, "expanded", tiny)
    for _ in range(cfg.epochs):
        run.run_epoch()
    seen = []
    original = run.strategy.forward

    def spy(x):
        seen.append(run.strategy.alpha)
        return original(x)

    run.strategy.forward = spy
    run.run_epoch()  # 4 steps of 128 then evaluation
    assert seen[:4] == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_reset_starts_each_task_from_the_shared_fresh_network(tiny, tiny_config):
    run = _run(tiny_config, "reset", tiny)
    for _ in range(tiny_config.epochs):
        run.run_epoch()
    run.strategy.begin_task(1)
    fresh = run.strategy.ctx.new_network(1)
    assert all(
        torch.equal(p, q) for p, q in zip(run.strategy.model().parameters(), fresh.parameters())
    )
    assert run.strategy.optimizer.state == {}


@pytest.mark.parametrize("reset_optimizer", [False, True])
def test_continuous_keeps_weights_and_optionally_optimizer_state(
    tiny, tiny_config, reset_optimizer
):
    cfg = tiny_config.replace(strategy_params={"continuous": {"reset_optimizer": reset_optimizer}})
    run = _run(cfg, "continuous", tiny)
    for _ in range(cfg.epochs):
        run.run_epoch()
    before = _snapshot(run.strategy.model())
    run.strategy.begin_task(1)
    assert all(torch.equal(p, q) for p, q in zip(run.strategy.model().parameters(), before))
    assert (run.strategy.optimizer.state == {}) is reset_optimizer


def test_all_strategies_identical_on_task_zero(tiny, tiny_config):
    """Same initial network, same data: the strategies differ only after the first boundary."""
    per = {}
    for name in ("reset", "continuous", "expanded"):
        run = _run(tiny_config, name, tiny)
        per[name] = [run.run_epoch() for _ in range(tiny_config.epochs)]
    for a, b in zip(per["reset"], per["expanded"]):
        assert (a.train_loss, a.test_acc) == (b.train_loss, b.test_acc)
    for a, b in zip(per["reset"], per["continuous"]):
        assert (a.train_loss, a.test_acc) == (b.train_loss, b.test_acc)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"expanded": {"schedule": "exp"}}, "unknown schedule 'exp'"),
        ({"expanded": {"alpha0": 1.0}}, r"alpha0 must be in \[0, 1\)"),
        ({"expanded": {"ramp": 0}}, "ramp must be > 0"),
        ({"expanded": {"speed": 2}}, "unknown parameter 'speed' for strategy 'expanded'"),
        ({"continuous": {"reset_optimizer": "maybe"}}, "continuous.reset_optimizer must be bool"),
        ({"injection": {}}, "not in the run"),
    ],
)
def test_bad_strategy_parameters(tiny_config, params, message):
    with pytest.raises(UserError, match=message):
        tiny_config.replace(strategy_params=params)


def test_diagnostics_describe_the_blend_while_the_old_part_lives(tiny, tiny_config):
    """While α < 1 the expanded model is new + old: the weight norm covers both parts, the
    probe both parts' units, the distance only the trained (new) part."""
    cfg = tiny_config.replace(strategies=["expanded"], diagnostics=True)
    run = StrategyRun(cfg, "expanded", tiny)
    for _ in range(cfg.epochs):
        run.run_epoch()
    record = run.run_epoch()  # task 1, epoch 0: α = 0.25
    blend = run.strategy.model()
    assert isinstance(blend, Blend)
    both = [*blend.new.parameters(), *blend.old.parameters()]
    assert record.diagnostics["weight_norm"] == pytest.approx(diagnostics.norm(both))
    assert record.diagnostics["weight_norm"] > diagnostics.norm(blend.new.parameters())
    fresh = run.strategy.ctx.new_network(1)
    distance = diagnostics.norm(p - q for p, q in zip(blend.new.parameters(), fresh.parameters()))
    assert record.diagnostics["distance"] == pytest.approx(distance)
    x = tiny.prepare(tiny.train.x[:PROBE_SIZE])
    assert record.diagnostics["dormant"] == pytest.approx(diagnostics.probe(blend, x)["dormant"])
    assert diagnostics.probe(blend, x) != diagnostics.probe(blend.new, x)


# -- strategies with the model factors (norm layers, other widths and depths) --------------------
@pytest.mark.parametrize("rule", ["optimizer", "model", "resume"])
@pytest.mark.parametrize("model,hidden", [("mlp-small", (24, 16, 8)), ("cnn", (12,))])
@pytest.mark.parametrize("name,params", [(n, {}) for n in sorted(STRATEGIES)] + _VARIANTS[-2:])
def test_every_strategy_keeps_the_contract_with_layer_norm_and_custom_widths(
    tiny, model, hidden, name, params, rule
):
    """The kit's rules (plasticity.conformance) with norm layers, other widths and depths, and
    diagnostics on: units found past the norm layers (ReDo, CBP, CReLU), the optimizer in line
    after every boundary, model() what forward computes, and resume bit-identical."""
    config = conformance.tiny_config(
        name, params, model=model, hidden=hidden, norm="layer", diagnostics=True
    )
    outcome = conformance.run_rule(rule, config, tiny)
    assert outcome.ok, outcome.line()


def test_hidden_layers_skip_the_norm_to_find_the_activation():
    net = network_factory("cnn", "mnist", 0, hidden=(12,), norm="layer")(0)
    layers = hidden_layers(net)
    assert [type(h.act) for h in layers] == [nn.ReLU] * 3
    assert [type(h.norm) for h in layers] == [nn.GroupNorm, nn.GroupNorm, nn.LayerNorm]
    assert [h.group for h in layers] == [1, 49, 1]
    plain = hidden_layers(network_factory("cnn", "mnist", 0)(0))
    assert [h.norm for h in plain] == [None] * 4


def test_reinit_units_resets_the_units_norm_scale_shift_and_their_adam_moments():
    net = network_factory("mlp-small", "mnist", 0, hidden=(6, 5), norm="layer")(0)
    fresh = hidden_layers(network_factory("mlp-small", "mnist", 0, hidden=(6, 5), norm="layer")(1))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.randn(8, 1, 28, 28)
    for _ in range(3):  # move every parameter, norm scales and shifts included, off its init
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
    h = hidden_layers(net)[0]
    before_w, before_b = h.norm.weight.detach().clone(), h.norm.bias.detach().clone()
    idx = torch.tensor([1, 4])
    reinit_units(h, idx, fresh[0], opt)
    keep = torch.tensor([0, 2, 3, 5])
    assert torch.equal(h.norm.weight[idx], torch.ones(2))
    assert torch.equal(h.norm.bias[idx], torch.zeros(2))
    assert torch.equal(h.norm.weight[keep], before_w[keep])
    assert torch.equal(h.norm.bias[keep], before_b[keep])
    for p in (h.norm.weight, h.norm.bias):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key][idx], torch.zeros(2))
            assert opt.state[p][key][keep].abs().sum() > 0
