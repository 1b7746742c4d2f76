"""TRAC and PSGD Kron as optimizers: each against its reference, reached from the setting, and
every strategy's contract (optimizer in line, bit-identical resume) kept with each."""

import json
import math

import pytest
import torch
from conftest import TINY_RUN_ARGS

from plasticity import conformance
from plasticity.cli import main
from plasticity.config import RunConfig
from plasticity.errors import UserError
from plasticity.optim import make_optimizer
from plasticity.seeding import derive_seed
from plasticity.strategies import STRATEGIES

trac_optimizer = pytest.importorskip("trac_optimizer")
kron_torch = pytest.importorskip("kron_torch")

# One task boundary (2 tasks x 2 epochs of 2 steps: the resume rule stops before the boundary,
# at it and after it) instead of the kit's 3 x 3 x 4: Kron's step is ~40x Adam's on mlp-small
# (a 784 x 784 triangular preconditioner factor) and TRAC's resume rule took 11-18 s a strategy
# in the kit's own setting on a loaded CPU.
_SHORTER = dict(restarts=1, epochs=2, batch_size=256)


@pytest.mark.parametrize("rule", ["optimizer", "resume"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("optimizer", ["trac", "kron"])
def test_every_builtin_keeps_the_contract_with(optimizer, strategy, rule, tiny):
    config = conformance.tiny_config(strategy, optimizer=optimizer, **_SHORTER)
    outcome = conformance.run_rule(rule, config, tiny)
    assert outcome.ok, outcome.line()


# -- TRAC against its update rule ------------------------------------------------------------
_BETAS = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)
_S_PREV = _EPS = 1e-8


def _erfi(x: float) -> float:
    """erfi(x) = 2/√π Σ_n x^(2n+1) / (n! (2n+1)), summed until the terms vanish."""
    total, term, n = 0.0, x, 0
    while abs(term) > 1e-17 * max(1.0, abs(total)) or n < 3:
        total += term / (2 * n + 1)
        n += 1
        term *= x * x / n
    return 2 / math.sqrt(math.pi) * total


def _package_erfi(x: float) -> float:
    """trac-optimizer's erfi (Weideman's complex error function in complex64): within 1.2% of
    the true erfi on [-2, 2] (0.6095 for 0.6150 at 0.5), which the rule below uses."""
    return float(trac_optimizer.trac.erfi(torch.tensor(x, dtype=torch.float32)))


def _trac_reference(theta0, target, updates, erfi=_package_erfi):
    """θ and S after each step of TRAC (the module docstring's rule, in float64 but for
    ``erfi``) on the loss ½‖θ - target‖², given the base optimizer's update u_t at each step."""
    ref, delta, s_sum = theta0.double(), torch.zeros_like(theta0, dtype=torch.float64), 0.0
    theta, v, sigma = ref.clone(), [0.0] * 6, [1e-8] * 6
    out = []
    for u in updates:
        g = theta - target.double()
        delta = (theta - ref) / (s_sum + _EPS)
        h = float(delta @ g)
        delta = delta + u.double()
        v = [b * b * vj + h * h for b, vj in zip(_BETAS, v)]
        sigma = [b * sj - h for b, sj in zip(_BETAS, sigma)]
        f = _S_PREV / erfi(1 / math.sqrt(2))
        s_sum = sum(
            f * erfi(sj / (math.sqrt(2) * math.sqrt(vj) + _EPS)) for sj, vj in zip(sigma, v)
        )
        theta = ref + delta * max(s_sum, 0.0)
        out.append((theta.clone(), s_sum))
    return out


def test_trac_scale_starts_at_zero_and_follows_its_rule_around_the_adam_step():
    cfg = RunConfig(optimizer="trac", lr=0.1, weight_decay=0.0, device="cpu")
    torch.manual_seed(0)
    # Weights near 0: TRAC's first moves are S·u ~ 1e-8, below float32's resolution near 1,
    # where the package's float32 Δ would be rounding noise and no float64 rule could follow it.
    theta0, target = 1e-5 * torch.randn(5), torch.randn(5)
    w = torch.nn.Parameter(theta0.clone())
    opt = make_optimizer(cfg, [w])
    assert isinstance(opt, torch.optim.Adam) and isinstance(opt, trac_optimizer.trac.trac)
    assert opt.param_groups[0]["betas"] == (cfg.beta1, cfg.beta2)
    assert "_trac" not in opt.state  # S = 0 until the first step

    # The base optimizer's updates: plain Adam from the same point and gradients (TRAC's
    # gradients are taken at its own θ, so they are replayed here).
    u_param = torch.nn.Parameter(theta0.clone())
    adam = torch.optim.Adam([u_param], lr=0.1, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    thetas, updates = [], []
    for _ in range(6):
        grad = w.detach() - target
        w.grad = grad.clone()
        opt.step()
        before = u_param.detach().clone()
        u_param.grad = grad.clone()
        adam.step()
        updates.append(u_param.detach() - before)
        thetas.append((w.detach().clone(), float(opt.state["_trac"]["s"].sum())))

    # step 1 by hand: v = 0, σ_j = 1e-8 β_j, so s_j = s_prev/erfi(1/√2) · erfi(β_j)
    s1 = sum(_S_PREV / _package_erfi(1 / math.sqrt(2)) * _package_erfi(b) for b in _BETAS)
    assert thetas[0][1] == pytest.approx(s1, rel=1e-5)
    exact = sum(_S_PREV / _erfi(1 / math.sqrt(2)) * _erfi(b) for b in _BETAS)
    assert thetas[0][1] == pytest.approx(exact, rel=1e-2)  # the package's erfi is approximate
    torch.testing.assert_close(thetas[0][0], theta0 + s1 * updates[0], rtol=1e-5, atol=1e-13)
    for (theta, s), (ref_theta, ref_s) in zip(thetas, _trac_reference(theta0, target, updates)):
        assert s == pytest.approx(ref_s, rel=1e-4)
        torch.testing.assert_close(theta.double(), ref_theta, rtol=1e-4, atol=1e-13)
    assert thetas[-1][1] > 2 * thetas[0][1]  # the scale grows while the gradients agree


# -- Kron: the package's optimizer steps, with our hyperparameters ----------------------------
def test_kron_is_the_package_optimizer_with_the_run_hyperparameters():
    cfg = RunConfig(optimizer="kron", lr=0.01, beta1=0.8, weight_decay=0.05, seed=3, device="cpu")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    twin.load_state_dict(net.state_dict())
    opt = make_optimizer(cfg, list(net.parameters()))
    package = kron_torch.Kron(twin.parameters(), lr=0.01, b1=0.8, weight_decay=0.05)
    assert isinstance(opt, kron_torch.Kron)
    for key, value in {"lr": 0.01, "b1": 0.8, "weight_decay": 0.05}.items():
        assert opt.param_groups[0][key] == pytest.approx(value), key
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    outside = torch.get_rng_state()
    for step in range(4):
        for model, o in ((net, opt), (twin, package)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        # the package's own step, its probe vectors from the generator ours seeds per step
        with torch.random.fork_rng(devices=[]), torch.compiler.set_stance("force_eager"):
            torch.manual_seed(derive_seed(3, "kron", step))
            package.step()
        for p, q in zip(net.parameters(), twin.parameters()):
            assert torch.equal(p, q)
    assert torch.equal(torch.get_rng_state(), outside)  # the global generator is never read
    assert any(len(opt.state[p]["Q"]) == 2 for p in net.parameters())  # Kronecker factors


def test_kron_state_survives_a_checkpoint_late_in_its_schedule(tmp_path):
    """Past step 500 the package updates its preconditioner every 1/p steps, counted outside
    its state_dict: a restored optimizer must keep the count, the step, the balancing RNG and
    the einsum expressions, through torch.load(weights_only=True)."""
    from plasticity.loop import load_state, save_state

    cfg = RunConfig(optimizer="kron", lr=0.01, device="cpu")
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))]
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    opts = [make_optimizer(cfg, list(nets[0].parameters()))]
    opts[0]._prob_step += 3000  # update probability ~0.08: every 12th step

    def step(net, opt):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(5):
        step(nets[0], opts[0])
    save_state(tmp_path / "s.pt", {"model": nets[0].state_dict(), "opt": opts[0].state_dict()})
    state = load_state(tmp_path / "s.pt")
    nets.append(torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)))
    nets[1].load_state_dict(state["model"])
    opts.append(make_optimizer(cfg, list(nets[1].parameters())))
    opts[1].load_state_dict(state["opt"])
    for _ in range(14):
        for net, opt in zip(nets, opts):
            step(net, opt)
    assert int(opts[0]._prob_step) == int(opts[1]._prob_step) == 3019
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(p, q)


# -- reached from the run's flags and from a study -------------------------------------------
@pytest.mark.parametrize("optimizer", ["trac", "kron"])
def test_plasticity_run_with_the_optimizer_flag(optimizer, tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY_RUN_ARGS, "--strategies", "continuous", "--optimizer", optimizer]
    assert main(["run", *args, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["optimizer"] == optimizer
    assert "PSGD" not in capsys.readouterr().out  # kron-torch's buffer report is logged


def test_a_missing_package_is_one_line_where_the_setting_enters(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "kron_torch" else find_spec(name)
    )
    with pytest.raises(UserError, match=r"needs the kron-torch package: pip install"):
        RunConfig(optimizer="kron", device="cpu")
    RunConfig(optimizer="trac", device="cpu")


def test_a_study_sets_or_searches_the_new_optimizers():
    from study.spec import load_spec

    setting = {"dataset": "mnist-5k", "model": "mlp-small", "restarts": 1, "epochs": 2}
    spec = load_spec(
        {
            "name": "t",
            "setting": {**setting, "optimizer": "trac"},
            "strategies": {"reset": "default"},
        }
    )
    assert spec.setting.optimizer == "trac" and set(spec.strategies["reset"]) == {"lr"}
    spec = load_spec(
        {
            "name": "t",
            "setting": setting,
            "strategies": {"continuous": {"optimizer": ["adam", "trac", "kron"]}},
        }
    )
    assert spec.strategies["continuous"]["optimizer"] == ["adam", "trac", "kron"]
