"""Each strategy against its definition (DESIGN.md), on a small network and real data."""

import pytest
import torch
from conftest import optimizer_param_ids
from torch import nn

from plasticity import diagnostics
from plasticity.errors import UserError
from plasticity.loop import PROBE_SIZE, StrategyRun
from plasticity.models import network_factory, parameter_count
from plasticity.strategies import STRATEGIES, Context, parse_params
from plasticity.strategies.expanded import Blend
from plasticity.units import hidden_layers, reinit_units


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _run(config, strategy, data):
    return StrategyRun(config.replace(strategies=[strategy]), strategy, data)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_model_optimizer_and_counts_agree_after_every_epoch(strategy, tiny, tiny_config):
    """``model()`` computes ``forward``; the record's parameter count, the checkpoint and the
    trainable parameters are the model's; the optimizer holds exactly the trainable ones."""
    run = _run(tiny_config, strategy, tiny)
    x = tiny.prepare(tiny.test.x[:16])
    while not run.done:
        record = run.run_epoch()
        s = run.strategy
        model = s.model()
        with torch.no_grad():
            assert torch.equal(s.forward(x), model(x))
        assert record.params == sum(p.numel() for p in model.parameters())
        assert s.state_dict()["model"].keys() == model.state_dict().keys()
        trainable = {id(p) for p in s.trainable_parameters()}
        assert optimizer_param_ids(s.optimizer) == trainable
        every = {id(p) for p in model.parameters() if p.requires_grad}
        assert every == trainable  # nothing trainable is left out of the optimizer


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


_EXERCISE = [(name, {}) for name in sorted(STRATEGIES)] + [
    ("shrink_perturb", {"every_step": True}),
    ("injection", {"injections": 2}),
    ("redo", {"every": 1, "tau": 1.0}),
    ("cbp", {"rate": 0.5, "maturity": 1}),
]


@pytest.mark.parametrize("name,params", _EXERCISE)
def test_every_fresh_network_has_the_strategys_activation(tiny, name, params):
    """A CReLU variant of every strategy, through three tasks, a checkpoint and a restore: every
    network it asks for is a CReLU one (the spy hands back ReLU networks, which the hidden-unit
    code understands; what is checked is the request)."""
    cls = STRATEGIES[name]
    factory = network_factory("mlp-small", "mnist", 0)
    calls = []

    def new_network(key, activation="relu"):
        calls.append((key, activation))
        return factory(key)

    class CReLUVariant(cls):
        activation = "crelu"

    ctx = Context(new_network, lambda ps: torch.optim.Adam(ps, lr=1e-3), 2, 1, 0)
    s = CReLUVariant(ctx, parse_params(cls, params))
    x, y = tiny.prepare(tiny.train.x[:64]), tiny.train.y[:64]
    for task in range(3):
        if task:
            s.begin_task(task)
        for epoch in range(2):
            s.begin_epoch(epoch)
            s.before_step(float(epoch))
            loss = torch.nn.functional.cross_entropy(s.forward(x), y)
            extra = s.penalty()
            s.optimizer.zero_grad()
            (loss if extra is None else loss + extra).backward()
            s.optimizer.step()
            s.after_step(x)
    CReLUVariant(ctx, parse_params(cls, params)).load_state_dict(s.state_dict())
    assert [c for c in calls if c[1] != "crelu"] == []
    assert ("restore", "crelu") in calls or name not in ("expanded", "injection")


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
@pytest.mark.parametrize("model,hidden", [("mlp-small", (24, 16, 8)), ("cnn", (12,))])
@pytest.mark.parametrize("name,params", _EXERCISE[: len(STRATEGIES)] + _EXERCISE[-2:])
def test_every_strategy_crosses_a_boundary_with_layer_norm_and_custom_widths(
    tiny, tiny_config, model, hidden, name, params
):
    """One boundary (two tasks of one epoch), diagnostics on: the model computes ``forward``,
    the optimizer holds exactly the trainable parameters, the record counts the model's, and a
    checkpoint restores into a fresh strategy."""
    config = tiny_config.replace(
        model=model,
        hidden=hidden,
        norm="layer",
        restarts=1,
        epochs=1,
        diagnostics=True,
        strategies=[name],
        strategy_params={name: params},
    )
    run = StrategyRun(config, name, tiny)
    x = tiny.prepare(tiny.test.x[:16])
    while not run.done:
        record = run.run_epoch()
        s = run.strategy
        with torch.no_grad():
            assert torch.equal(s.forward(x), s.model()(x))
        assert record.params == sum(p.numel() for p in s.model().parameters())
        assert optimizer_param_ids(s.optimizer) == {id(p) for p in s.trainable_parameters()}
        assert all(torch.isfinite(torch.tensor(v)) for v in record.diagnostics.values())
        norms = [m for m in s.model().modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))]
        assert norms  # every network of the strategy has its norm layers
    again = StrategyRun(config, name, tiny)
    again.load_state_dict(run.state_dict())


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
