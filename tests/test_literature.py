"""The strategies from the literature and the diagnostics, each against its definition."""

import copy
import dataclasses
import math

import pytest
import torch
from conftest import optimizer_param_ids
from torch import nn

from plasticity import diagnostics
from plasticity.loop import StrategyRun, load_state, save_state
from plasticity.models import MODELS, CReLU, parameter_count
from plasticity.seeding import seeded
from plasticity.strategies import Context, parse_params
from plasticity.strategies.cbp import ContinualBackprop
from plasticity.strategies.redo import ReDo
from plasticity.units import dormant_units, hidden_layers, reinit_units


def _run(config, strategy, data, **params):
    cfg = config.replace(strategies=[strategy], strategy_params={strategy: params})
    return StrategyRun(cfg, strategy, data)


def _finish_task0(run):
    while run.task == 0:
        run.run_epoch()


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_shrink_perturb_formula_exact(tiny, tiny_config):
    run = _run(tiny_config, "shrink_perturb", tiny, shrink=0.3, perturb=0.2)
    _finish_task0(run)
    before = _params(run.strategy.model())
    run.strategy.begin_task(1)
    fresh = run.strategy.ctx.new_network(1)
    for p, old, q in zip(run.strategy.model().parameters(), before, fresh.parameters()):
        assert torch.allclose(p, 0.3 * old + 0.2 * q, atol=1e-7)
    assert run.strategy.optimizer.state == {}  # stale moments cleared


def test_shrink_perturb_every_step(tiny, tiny_config):
    run = _run(tiny_config, "shrink_perturb", tiny, shrink=0.9, perturb=0.01, every_step=True)
    s = run.strategy
    x = tiny.prepare(tiny.train.x[:8])
    before = _params(s.model())
    s.after_step(x)
    fresh = s.ctx.new_network("sp-step-1")
    for p, old, q in zip(s.model().parameters(), before, fresh.parameters()):
        assert torch.allclose(p, 0.9 * old + 0.01 * q, atol=1e-7)


def test_reset_head_reinitialises_only_the_output_layer(tiny, tiny_config):
    run = _run(tiny_config, "reset_head", tiny)
    _finish_task0(run)
    s = run.strategy
    net = s.model()
    before = _params(net)
    head_w = net[-1].weight
    assert head_w in s.optimizer.state
    s.begin_task(1)
    fresh = s.ctx.new_network(1)
    after = list(s.model().parameters())
    assert all(torch.equal(a, b) for a, b in zip(after[:-2], before[:-2]))
    assert torch.equal(after[-2], fresh[-1].weight) and torch.equal(after[-1], fresh[-1].bias)
    assert head_w not in s.optimizer.state and s.model()[-1].weight is head_w


@pytest.mark.parametrize("injections", [1, 2])
def test_injection_keeps_the_output_and_trains_only_g_a(tiny, tiny_config, injections):
    run = _run(tiny_config, "injection", tiny, injections=injections)
    s = run.strategy
    x = tiny.prepare(tiny.test.x[:64])
    boundary = s.begin_task
    seen = {}

    def spy(task):  # the loop's own boundary, watched: output before and after, parts after
        with torch.no_grad():
            before = s.forward(x)
        boundary(task)
        with torch.no_grad():
            seen[task] = (before, s.forward(x), s.model(), _params(s.model()))
        assert optimizer_param_ids(s.optimizer) == {id(p) for p in s.model().a.parameters()}

    s.begin_task = spy
    for task in (0, 1, 2):
        while run.task == task:
            run.run_epoch()
        if task == 0:
            continue
        before, after, composite, snap = seen[task]
        if task <= injections:
            assert torch.allclose(before, after, atol=1e-5), "output changed at injection"
        else:
            assert composite is seen[task - 1][2], "no injection after the first `injections`"
        snaps = dict(zip((id(p) for p in composite.parameters()), snap))
        for m in (composite.base, composite.b):  # frozen throughout the task
            assert all(torch.equal(p, snaps[id(p)]) for p in m.parameters())
        assert any(not torch.equal(p, snaps[id(p)]) for p in composite.a.parameters())
    assert s.injected == injections
    assert s.parameter_count() == (1 + 2 * injections) * parameter_count("mlp-small", "mnist")


def _dead_unit_mlp():
    """784-6-5-10 with known dormant units: hidden unit 2 of layer 1 and unit 4 of layer 2
    never fire (weights 0, bias -1)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 10)
    )
    with torch.no_grad():
        for layer, unit in ((net[1], 2), (net[3], 4)):
            layer.weight[unit] = 0.0
            layer.bias[unit] = -1.0
        net[1].bias[[0, 1, 3, 4, 5]] = 1.0  # the others fire on every input
        net[3].bias[[0, 1, 2, 3]] = 1.0
    return net


def test_redo_recycles_exactly_the_dormant_units(tiny):
    net = _dead_unit_mlp()
    hidden = hidden_layers(net)
    assert [h.size for h in hidden] == [6, 5]
    opt = torch.optim.Adam(net.parameters())
    x = tiny.prepare(tiny.train.x[:64])
    nn.functional.cross_entropy(net(x), tiny.train.y[:64]).backward()
    opt.step()
    acts = []
    hooks = [
        h.act.register_forward_hook(lambda m, a, o: acts.append(o.abs().mean(0))) for h in hidden
    ]
    net(x)
    for hook in hooks:
        hook.remove()
    dormant = [dormant_units(a, 0.1).tolist() for a in acts]
    assert dormant == [[2], [4]]
    fresh = hidden_layers(_dead_unit_mlp().apply(lambda m: None))
    with torch.no_grad():
        for h in fresh:
            h.layer.weight.normal_()
    keep_w = net[1].weight.detach().clone()
    for h, f, idx in zip(hidden, fresh, dormant):
        reinit_units(h, torch.tensor(idx), f, opt)
    assert torch.equal(net[1].weight[2], fresh[0].layer.weight[2])
    assert torch.equal(net[1].weight[[0, 1, 3, 4, 5]], keep_w[[0, 1, 3, 4, 5]])
    assert net[1].bias[2] == 0 and net[3].bias[4] == 0
    # outgoing weights zero (row 4 of layer 2 is itself recycled and got fresh incoming weights)
    assert torch.all(net[3].weight[:4, 2] == 0) and torch.all(net[5].weight[:, 4] == 0)
    for p, col in ((net[3].weight, 2), (net[5].weight, 4)):
        assert torch.all(opt.state[p]["exp_avg"][:, col] == 0)
        assert torch.all(opt.state[p]["exp_avg_sq"][:, col] == 0)
    assert torch.all(opt.state[net[3].weight]["exp_avg"][4] == 0)
    assert torch.all(opt.state[net[1].weight]["exp_avg"][2] == 0)
    assert torch.any(opt.state[net[1].weight]["exp_avg"][0] != 0)


def test_redo_strategy_recycles_during_training(tiny, tiny_config):
    run = _run(tiny_config, "redo", tiny, tau=0.1, every=1)
    records = [run.run_epoch() for _ in range(run.total_epochs)]
    assert records[-1].diagnostics["recycled"] > 0


def _hand_ctx(build):
    """A strategy context whose networks are ``build(key)`` (any activation), with Adam."""
    return Context(
        new_network=lambda key, activation="relu": build(key),
        new_optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
        epochs=1,
        steps_per_epoch=1,
        seed=0,
    )


def _dead_or_random(key):
    """Network 0 is :func:`_dead_unit_mlp`; other keys give random networks of its shape."""
    if key == 0:
        return _dead_unit_mlp()
    with seeded(0, "test", str(key)):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 10)
        )


def _redo_step(s, activity=None, x=None):
    """Recycled units per layer after one ReDo check (biases move from ±1 to 0 only there)."""
    net = s.model()
    biases = [net[1].bias.detach().clone(), net[3].bias.detach().clone()]
    if activity is None:
        s.forward(x)  # the probe sees this batch, as after a training step
    else:
        s.probe.latest = activity
    s.after_step(x)
    fresh = _dead_or_random(f"redo-{s.steps}")
    layers = (net[1], net[3])
    recycled = [
        set(torch.nonzero(layer.bias != before).flatten().tolist())
        for layer, before in zip(layers, biases)
    ]
    for k, (layer, units) in enumerate(zip(layers, recycled)):
        # outgoing weights zero, except into a next-layer unit that got fresh incoming weights
        readers = [r for r in range(net[2 * k + 3].out_features) if k or r not in recycled[1]]
        for i in units:
            assert layer.bias[i] == 0
            assert torch.equal(layer.weight[i], fresh[2 * k + 1].weight[i])
            assert torch.all(net[2 * k + 3].weight[readers, i] == 0)
    return recycled


def test_redo_strategy_recycles_exactly_the_dead_units(tiny):
    s = ReDo(_hand_ctx(_dead_or_random), ReDo.Params(tau=0.1, every=1))
    assert _redo_step(s, x=tiny.prepare(tiny.train.x[:64])) == [{2}, {4}]
    assert s.recycled == 2


def test_redo_strategy_threshold_is_inclusive_and_exact(tiny):
    """Scores ``activity / mean``: layer 1 (mean 2) scores 1, 0, 2, 0.5, 0.5 + 2^-20,
    2 - 2^-20; layer 2 (mean 1) scores 0.5, 1, 1, 1, 1.5. With τ = 0.5, exactly the units at or
    below 0.5 are recycled: {1, 3} and {0}; the unit just above τ is not."""
    s = ReDo(_hand_ctx(_dead_or_random), ReDo.Params(tau=0.5, every=1))
    activity = [
        torch.tensor([2.0, 0.0, 4.0, 1.0, 1.0 + 2**-19, 4.0 - 2**-19]),
        torch.tensor([0.5, 1.0, 1.0, 1.0, 1.5]),
    ]
    assert _redo_step(s, activity) == [{1, 3}, {0}]
    assert s.recycled == 3


def test_redo_checks_only_every_k_steps(tiny):
    s = ReDo(_hand_ctx(_dead_or_random), ReDo.Params(tau=0.1, every=2))
    x = tiny.prepare(tiny.train.x[:64])
    assert _redo_step(s, x=x) == [set(), set()]
    assert _redo_step(s, x=x) == [{2}, {4}]


def test_conv_units_map_to_flattened_columns():
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 14 * 14, 10),
        nn.ReLU(),
        nn.Linear(10, 10),
    )
    conv = hidden_layers(net)[0]
    assert conv.group == 196
    cols = conv.outgoing_columns(torch.tensor([1]))
    assert cols.tolist() == list(range(196, 392))


def test_l2_init_gradient_is_strength_times_distance_plus_task_gradient(tiny, tiny_config):
    lam = 0.05
    run = _run(tiny_config, "l2_init", tiny, strength=lam)
    run.run_epoch()  # move away from the initial weights
    s = run.strategy
    x, y = tiny.prepare(tiny.train.x[:32]), tiny.train.y[:32]
    s.optimizer.zero_grad()
    nn.functional.cross_entropy(s.forward(x), y).backward()
    task_grads = [p.grad.clone() for p in s.model().parameters()]
    s.optimizer.zero_grad()
    (nn.functional.cross_entropy(s.forward(x), y) + s.penalty()).backward()
    for p, p0, g in zip(s.model().parameters(), s.initial, task_grads):
        assert torch.allclose(p.grad, lam * (p.detach() - p0) + g, atol=1e-6)
    assert any(not torch.equal(p, p0) for p, p0 in zip(s.model().parameters(), s.initial))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_l2_is_continuous_with_the_optimizers_weight_decay(tiny, tiny_config, optimizer):
    """l2 with strength λ under no decay is continuous with weight_decay λ, to the bit (and
    not continuous without decay: the decay is really applied)."""
    lam = 0.05
    base = tiny_config.replace(optimizer=optimizer, weight_decay=0.0)
    l2 = _run(base, "l2", tiny, strength=lam)
    assert {g["weight_decay"] for g in l2.strategy.optimizer.param_groups} == {lam}
    decayed = _run(base.replace(weight_decay=lam), "continuous", tiny)
    plain = _run(base, "continuous", tiny)
    a, b, c = ([run.run_epoch().test_loss for _ in range(run.total_epochs)]
               for run in (l2, decayed, plain))  # fmt: skip
    assert a == b and a != c
    l2.strategy.reset_optimizer()  # a fresh optimizer keeps the decay
    assert {g["weight_decay"] for g in l2.strategy.optimizer.param_groups} == {lam}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_crelu_keeps_the_parameter_count_within_one_percent(model, dataset):
    base, crelu = parameter_count(model, dataset), parameter_count(model, dataset, "crelu")
    assert abs(crelu - base) / base < 0.01


def test_crelu_definition_and_strategy_network(tiny, tiny_config):
    x = torch.tensor([[1.0, -2.0, 0.0]])
    assert CReLU()(x).tolist() == [[1.0, 0.0, 0.0, 0.0, 2.0, 0.0]]
    run = _run(tiny_config, "crelu", tiny)
    assert any(isinstance(m, CReLU) for m in run.strategy.model())
    assert run.run_epoch().params == parameter_count("mlp-small", "mnist", "crelu")


def test_cbp_replaces_the_expected_number_and_never_young_units(tiny, tiny_config):
    rate, maturity = 0.02, 5
    run = _run(tiny_config, "cbp", tiny, rate=rate, maturity=maturity)
    s = run.strategy
    x = tiny.prepare(tiny.train.x[:128])
    sizes = [h.size for h in s.hidden]
    expected_total, pending = 0, [0.0] * len(sizes)
    for _ in range(40):
        before = [a.clone() for a in s.age]
        s.forward(x)  # the probe sees this batch, as after a training step
        s.after_step(x)
        for i in range(len(sizes)):  # replay the rule by hand
            replaced = s.age[i] == 0
            assert torch.all(before[i][replaced] + 1 > maturity), "a young unit was replaced"
            pending[i] += rate * int((before[i] + 1 > maturity).sum())
            k = int(pending[i])
            pending[i] -= k
            assert int(replaced.sum()) == k
            expected_total += k
    assert s.replaced == expected_total > 0


def test_cbp_young_units_are_never_replaced(tiny, tiny_config):
    run = _run(tiny_config, "cbp", tiny, rate=1.0, maturity=1000)
    s = run.strategy
    x = tiny.prepare(tiny.train.x[:64])
    for _ in range(50):
        s.forward(x)
        s.after_step(x)
    assert s.replaced == 0


def _small_mlp(key):
    """4-6-3: one hidden layer of 6 units, seeded by ``key``."""
    with seeded(0, "test", str(key)):
        return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def _cbp(**params):
    return ContinualBackprop(_hand_ctx(_small_mlp), parse_params(ContinualBackprop, params))


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)


def test_cbp_utility_is_the_running_contribution_of_what_the_next_layer_reads():
    """``u ← η·u + (1 − η)·mean_k|W_out[k, i]|·E|h_i|`` and ``m ← η·m + (1 − η)·E h_i``."""
    s = _cbp(rate=0.0, decay=0.5)
    net = s.model()
    x, _ = _batch()
    s.forward(x)
    h = torch.relu(net[0](x)).detach()
    assert torch.allclose(s.probe.mean_abs[0], h.abs().mean(0))
    assert torch.allclose(s.probe.mean[0], h.mean(0))
    u0 = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.25, 3.0])
    m0 = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    s.utility[0], s.mean[0] = u0.clone(), m0.clone()
    s.after_step(x)
    contribution = net[2].weight.detach().abs().mean(0) * h.abs().mean(0)
    assert torch.allclose(s.utility[0], 0.5 * u0 + 0.5 * contribution)
    assert torch.allclose(s.mean[0], 0.5 * m0 + 0.5 * h.mean(0))
    assert s.age[0].tolist() == [1] * 6 and s.replaced == 0


def test_cbp_utility_of_conv_units_averages_their_flattened_columns():
    """A conv unit (channel) is read, after pooling and flattening, through H·W columns: its
    contribution is the mean over them of ``mean_k|W_out[k, c]|·E|h_c|``."""
    with seeded(0, "test", "conv"):
        net = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(8, 3),
        )  # fmt: skip
    s = ContinualBackprop(_hand_ctx(lambda key: net), parse_params(ContinualBackprop, {}))
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    s.forward(x)
    s.after_step(x)
    read = net[:4](x).detach()  # 5 x 8: what the Linear reads
    per_column = net[4].weight.detach().abs().mean(0) * read.abs().mean(0)
    expected = (1 - 0.99) * per_column.view(2, 4).mean(1)
    assert torch.allclose(s.utility[0], expected)


@pytest.mark.parametrize("transfer", [True, False])
def test_cbp_replaces_the_eligible_units_of_lowest_bias_corrected_utility(transfer):
    """Hand-set state, η = 0.5, maturity 2, rate 0.625, counter 0.25 carried in.

    Ages 5, 0, 5, 5, 1, 2 become 6, 1, 6, 6, 2, 3: units 0, 2, 3, 5 are eligible, so the counter
    is 0.25 + 0.625·4 = 2.75: two units replaced, 0.75 carried. No new contribution (the probe
    reads zeros), so ``u ← η·u``: 0.5, 0, 2, 0.475, 0, 0.45 and ``m ← η·m``. Bias-corrected
    ``u / (1 − η^a)``: 0.508, -, 2.03, 0.483, -, 0.514, so units 3 and 0 go. (Raw ``u`` would
    pick 5 and 3, the highest 2 and 5; the young units 1 and 4 have the lowest ``u`` of all.)"""
    s = _cbp(rate=0.625, maturity=2, decay=0.5, transfer_bias=transfer)
    net = s.model()
    x, y = _batch()
    s.optimizer.zero_grad()
    nn.functional.cross_entropy(s.forward(x), y).backward()
    s.optimizer.step()  # one real step, so that Adam has moments to zero
    s.age[0] = torch.tensor([5, 0, 5, 5, 1, 2])
    s.utility[0] = torch.tensor([1.0, 0.0, 4.0, 0.95, 0.0, 0.9])
    s.mean[0] = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    s.pending[0] = 0.25
    s.probe.mean[0], s.probe.mean_abs[0] = torch.zeros(6), torch.zeros(6)
    w_in, b_in, w_out, b_out = _params(net)
    moments = {p: {k: v.clone() for k, v in s.optimizer.state[p].items()} for p in net.parameters()}

    s.after_step(x)

    replaced, kept = [0, 3], [1, 2, 4, 5]
    assert s.replaced == 2 and s.pending == [0.75]
    assert s.age[0].tolist() == [0, 1, 6, 0, 2, 3]
    assert torch.allclose(s.utility[0], torch.tensor([0, 0, 2.0, 0, 0, 0.45]))
    assert torch.allclose(s.mean[0], torch.tensor([0, 0.2, 0.3, 0, 0.5, 0.6]))
    fresh = _small_mlp("cbp-1")
    assert torch.equal(net[0].weight[replaced], fresh[0].weight[replaced])
    assert torch.equal(net[0].weight[kept], w_in[kept])
    assert torch.all(net[0].bias[replaced] == 0) and torch.equal(net[0].bias[kept], b_in[kept])
    assert torch.all(net[2].weight[:, replaced] == 0)
    assert torch.equal(net[2].weight[:, kept], w_out[:, kept])
    # the replaced units' mean contribution m / (1 − η^6) moves into the next layer's bias
    moved = (w_out[:, 0] * 0.1 + w_out[:, 3] * 0.4) / (1 - 0.5**6)
    assert torch.allclose(net[2].bias, b_out + moved if transfer else b_out, atol=1e-7)
    assert transfer is False or not torch.allclose(moved, torch.zeros(3), atol=1e-3)
    for p, rows, cols in ((net[0].weight, replaced, None), (net[0].bias, replaced, None),
                          (net[2].weight, None, replaced)):  # fmt: skip
        for key in ("exp_avg", "exp_avg_sq"):
            now, then = s.optimizer.state[p][key], moments[p][key]
            mask = torch.zeros_like(now, dtype=torch.bool)
            mask[rows if rows is not None else slice(None)] = rows is not None
            if cols is not None:
                mask[:, cols] = True
            assert torch.all(now[mask] == 0), (key, p.shape)
            assert torch.equal(now[~mask], then[~mask]), (key, p.shape)
    assert torch.equal(s.optimizer.state[net[2].bias]["exp_avg"], moments[net[2].bias]["exp_avg"])


def test_cbp_state_round_trips_every_running_average():
    s = _cbp(rate=0.5, maturity=1)
    x, _ = _batch()
    for _ in range(4):
        s.forward(x)
        s.after_step(x)
    assert s.replaced > 0
    restored = _cbp(rate=0.5, maturity=1)
    restored.load_state_dict(s.state_dict())
    for key in ("utility", "mean", "age"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(s, key), getattr(restored, key)))
    assert (restored.pending, restored.steps, restored.replaced) == (
        s.pending,
        s.steps,
        s.replaced,
    )


@pytest.mark.parametrize(
    "strategy,params",
    [
        ("shrink_perturb", {}),
        ("reset_head", {}),
        ("injection", {"injections": 2}),
        ("redo", {"every": 1}),
        ("l2_init", {}),
        ("l2", {"strength": 0.01}),
        ("crelu", {}),
        ("cbp", {"rate": 0.05, "maturity": 2}),
    ],
)
def test_stop_restore_continue_is_identical(tiny, tiny_config, tmp_path, strategy, params):
    cfg = tiny_config.replace(
        strategies=[strategy], strategy_params={strategy: params}, diagnostics=True
    )
    straight = StrategyRun(cfg, strategy, tiny)
    expected = [dataclasses.asdict(straight.run_epoch()) for _ in range(straight.total_epochs)]
    for stop in (2, 4, 6):  # mid-task, after a boundary, at a boundary
        first = StrategyRun(cfg, strategy, tiny)
        head = [dataclasses.asdict(first.run_epoch()) for _ in range(stop)]
        save_state(tmp_path / "s.pt", first.state_dict())
        resumed = StrategyRun(cfg, strategy, tiny)
        resumed.load_state_dict(load_state(tmp_path / "s.pt"))
        tail = [dataclasses.asdict(resumed.run_epoch()) for _ in range(resumed.total_epochs - stop)]
        for a, b in zip(head + tail, expected, strict=True):
            assert {**a, "seconds": 0} == {**b, "seconds": 0}, f"{strategy} diverged at {stop}"
        assert optimizer_param_ids(resumed.strategy.optimizer) == {
            id(p) for p in resumed.strategy.trainable_parameters()
        }


# -- diagnostics on hand-made matrices ---------------------------------------------------------
def test_identity_features_have_full_rank():
    eye = torch.eye(6)
    assert diagnostics.effective_rank(eye) == pytest.approx(6)
    assert diagnostics.srank(eye) == 6


def test_rank_one_features_have_rank_one():
    f = torch.outer(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, -1.0, 0.5]))
    assert diagnostics.effective_rank(f) == pytest.approx(1.0, abs=1e-6)
    assert diagnostics.srank(f) == 1


def test_effective_rank_and_srank_of_known_spectrum():
    f = torch.diag(torch.tensor([3.0, 1.0]))  # p = (0.75, 0.25)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert diagnostics.effective_rank(f) == pytest.approx(expected)
    assert diagnostics.srank(f, delta=0.3) == 1  # 3/4 >= 0.7
    assert diagnostics.srank(f, delta=0.01) == 2


def test_dormant_ratio_and_zero_fraction_of_known_activity():
    activity = [torch.tensor([1.0, 1.0, 0.0, 2.0]), torch.tensor([0.5, 0.01, 0.5, 0.5])]
    # layer 1: mean 1 -> scores 1,1,0,2 -> one dormant; layer 2: mean 0.3775 -> 0.01/0.3775 <= .1
    assert diagnostics.dormant_ratio(activity, tau=0.1) == pytest.approx(2 / 8)
    assert diagnostics.dormant_ratio(activity, tau=0.0) == pytest.approx(1 / 8)
    assert diagnostics.zero_fraction(activity) == pytest.approx(1 / 8)


def test_probe_of_a_network_with_known_dead_units(tiny):
    net = _dead_unit_mlp()
    out = diagnostics.probe(net, tiny.prepare(tiny.train.x[:64]))
    assert out["zero"] == pytest.approx(2 / 11)
    assert out["dormant"] == pytest.approx(2 / 11)
    assert 1 <= out["srank"] <= 4  # 5 units, one dead


class _Sum(nn.Module):
    """A hand-made composite: ``a(x) + b(x)``."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a(x) + self.b(x)


def _constant_mlp():
    """784-3-4-10 whose 7 hidden units output 1 on every input (weights 0, bias 1)."""
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 3), nn.ReLU(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 10)
    )
    with torch.no_grad():
        for layer in (net[1], net[3]):
            layer.weight.zero_()
            layer.bias.fill_(1.0)
    return net


def test_probe_of_a_composite_counts_every_unit_of_every_part(tiny):
    """Parts :func:`_dead_unit_mlp` (11 units, 2 dead) and :func:`_constant_mlp` (7 units, none
    dead): 2 of 18 units are zero and dormant; the rank is that of the two parts' last hidden
    features side by side (64 x (5 + 4))."""
    x = tiny.prepare(tiny.train.x[:64])
    a, b = _dead_unit_mlp(), _constant_mlp()
    out = diagnostics.probe(_Sum(a, b), x)
    assert out["zero"] == pytest.approx(2 / 18)
    assert out["dormant"] == pytest.approx(2 / 18)
    features = torch.cat([a[:5](x), b[:5](x)], dim=1).detach()
    assert out["effective_rank"] == pytest.approx(diagnostics.effective_rank(features))
    assert out["srank"] == diagnostics.srank(features)
    # a part beside an identical copy of itself (g_a and g_b at an injection) changes nothing
    alone = diagnostics.probe(a, x)
    assert diagnostics.probe(_Sum(a, copy.deepcopy(a)), x) == pytest.approx(alone)


def test_weight_norm_and_distance():
    assert diagnostics.norm([torch.tensor([3.0]), torch.tensor([[4.0]])]) == pytest.approx(5.0)


# -- Plasticine's feature diagnostics ------------------------------------------------------------
def test_active_units_feature_norm_and_variance_of_a_hand_made_matrix():
    f = torch.tensor([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]])
    assert diagnostics.active_fraction(f) == pytest.approx(2 / 6)  # 2 of 6 entries nonzero
    assert diagnostics.feature_norm(f) == pytest.approx((5.0 + 0.0) / 2)
    # row 1: mean 7/3, squared deviations 49/9 + 4/9 + 25/9 = 78/9, / (3 - 1) = 13/3; row 2: 0
    assert diagnostics.feature_variance(f) == pytest.approx((13 / 3 + 0.0) / 2)
    assert diagnostics.feature_variance(torch.tensor([[2.0], [5.0]])) == 0.0  # one unit


def _two_input_net(norm=False):
    """2-3-1: hidden weights [[1, 0], [0, 1], [-1, -1]], zero biases (and a LayerNorm)."""
    layers = [nn.Linear(2, 3), *([nn.LayerNorm(3)] if norm else []), nn.ReLU(), nn.Linear(3, 1)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        net[0].bias.zero_()
    return net


def test_probe_gives_the_feature_diagnostics_of_the_last_hidden_activations():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    # pre-activations [[1, 2, -3], [3, 0, -3]] -> ReLU [[1, 2, 0], [3, 0, 0]]
    out = diagnostics.probe(_two_input_net(), x)
    assert out["active"] == pytest.approx(3 / 6)
    assert out["feature_norm"] == pytest.approx((math.sqrt(5) + 3) / 2)
    assert out["feature_variance"] == pytest.approx((1.0 + 3.0) / 2)  # rows: mean 1, 2/2; 6/2
    # with a LayerNorm before the ReLU the features are read after the ReLU, not the norm:
    # LN([1, 2, -3]) = [1, 2, -3] / sqrt(14/3), LN([3, 0, -3]) = [3, 0, -3] / sqrt(6)
    normed = diagnostics.probe(_two_input_net(norm=True), x)
    assert normed["active"] == pytest.approx(3 / 6)
    row1, row2 = math.sqrt(5 / (14 / 3)), 3 / math.sqrt(6)
    assert normed["feature_norm"] == pytest.approx((row1 + row2) / 2, rel=1e-4)
    assert normed["zero"] == pytest.approx(1 / 3)  # the third unit is 0 on both inputs


def test_feature_diagnostics_of_a_composite_average_its_parts():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    a, b = _two_input_net(), _two_input_net()
    with torch.no_grad():
        b[0].bias.fill_(10.0)  # every unit of b active: features [[11, 12, 7], [13, 10, 7]]
    out = diagnostics.probe(_Sum(a, b), x)
    fa = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    fb = torch.tensor([[11.0, 12.0, 7.0], [13.0, 10.0, 7.0]])
    for key, metric in (
        ("active", diagnostics.active_fraction),
        ("feature_norm", diagnostics.feature_norm),
        ("feature_variance", diagnostics.feature_variance),
    ):
        assert out[key] == pytest.approx((metric(fa) + metric(fb)) / 2)
    assert out["active"] == pytest.approx((3 / 6 + 1) / 2)
