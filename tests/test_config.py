"""The one description of a run: RunConfig's fields drive the flags, the study setting and the
optimizer; validation happens once, in RunConfig."""

import dataclasses
import json

import pandas as pd
import pytest
import torch
from conftest import TINY_RUN_ARGS

from plasticity.cli import build_parser, config_from_args, main
from plasticity.config import FIELDS, SETTING_FIELDS, TRIAL_FIELDS, RunConfig
from plasticity.errors import UserError
from plasticity.fields import field_docs
from plasticity.loop import StrategyRun


def test_every_field_is_documented_and_has_a_flag():
    docs = field_docs(RunConfig)
    assert set(docs) == set(FIELDS)
    assert all(len(d) > 10 for d in docs.values())
    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for name in FIELDS:
        if name != "strategy_params":
            flag = "--task" if name == "objective" else "--" + name.replace("_", "-")
            assert flag in help_text, flag


def test_study_setting_is_derived_from_run_config():
    from study.spec import Setting

    assert tuple(Setting.model_fields) == SETTING_FIELDS
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    for name, info in Setting.model_fields.items():
        assert info.default == defaults[name], name
    assert set(TRIAL_FIELDS) <= set(SETTING_FIELDS)


@pytest.mark.parametrize(
    "flags,cls,group",
    [
        (
            ["--optimizer", "adam", "--betas", "0.8,0.99", "--eps", "1e-7", "--weight-decay", "0"],
            torch.optim.Adam,
            {"betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": 0.0},
        ),
        (
            ["--optimizer", "adamw", "--beta2", "0.999", "--weight-decay", "0.01"],
            torch.optim.AdamW,
            {"betas": (0.9, 0.999), "eps": 1e-9, "weight_decay": 0.01},
        ),
        (
            ["--optimizer", "sgd", "--momentum", "0.5", "--lr", "0.1"],
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3},
        ),
    ],
)
def test_optimizer_flags_reach_torch_optim(tiny, flags, cls, group):
    args = build_parser().parse_args(
        ["run", *TINY_RUN_ARGS, "--strategies", "reset,expanded", *flags]
    )
    config = config_from_args(args)
    for strategy in config.strategies:
        run = StrategyRun(config, strategy, tiny)
        run.strategy.begin_task(1)  # a fresh optimizer at the boundary gets the same settings
        opt = run.strategy.optimizer
        assert type(opt) is cls
        for key, value in group.items():
            assert opt.param_groups[0][key] == pytest.approx(value), key


def test_adam_decay_is_l2_and_adamw_decoupled():
    """One step from w = 1 with a zero task gradient: Adam's L2 term goes through the moments
    (the step is lr·sign = lr), AdamW shrinks the weight by lr·wd and takes no Adam step."""
    out = {}
    for name in ("adam", "adamw"):
        w = torch.nn.Parameter(torch.ones(1))
        cfg = RunConfig(optimizer=name, lr=0.1, weight_decay=0.5, device="cpu")
        from plasticity.optim import make_optimizer

        opt = make_optimizer(cfg, [w])
        w.grad = torch.zeros(1)
        opt.step()
        out[name] = float(w.detach())
    assert out["adam"] == pytest.approx(1 - 0.1, abs=1e-6)
    assert out["adamw"] == pytest.approx(1 - 0.1 * 0.5, abs=1e-6)


def test_restarts_zero_trains_task_zero_only(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY_RUN_ARGS, "--restarts", "0", "--strategies", "reset,continuous"]
    assert main(["run", *args, "--out", str(out)]) == 0
    records = pd.read_parquet(out / "records.parquet")
    assert sorted(set(records.task)) == [0] and len(records) == 2 * 2
    assert json.loads((out / "config.json").read_text())["config"]["restarts"] == 0
    assert "auc_test_acc" in capsys.readouterr().out


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = RunConfig(optimizer="adamw", beta2=0.999, device="cpu", strategies=("redo",))
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(Exception, match="unknown run setting 'betas'"):
        RunConfig.from_dict({"betas": [0.9, 0.9]})


def test_recycled_units_lose_their_sgd_momentum_too():
    from torch import nn

    from plasticity.units import hidden_layers, reinit_units

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    cfg = RunConfig(optimizer="sgd", lr=0.1, momentum=0.9, device="cpu")
    from plasticity.optim import make_optimizer

    opt = make_optimizer(cfg, list(net.parameters()))
    net(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()
    hidden = hidden_layers(net)[0]
    reinit_units(hidden, torch.tensor([1]), hidden_layers(net)[0], opt)
    assert torch.all(opt.state[net[0].weight]["momentum_buffer"][1] == 0)
    assert torch.all(opt.state[net[2].weight]["momentum_buffer"][:, 1] == 0)
    assert torch.any(opt.state[net[0].weight]["momentum_buffer"][0] != 0)


def test_model_factors_round_trip_from_flags_yaml_and_json():
    from_flag = RunConfig(hidden="100,100", norm="layer", device="cpu")
    from_yaml = RunConfig(hidden=[100, 100], norm="layer", device="cpu")
    assert from_flag == from_yaml and from_flag.hidden == (100, 100)
    d = from_flag.to_dict()
    assert d["hidden"] == [100, 100] and d["norm"] == "layer"
    assert RunConfig.from_dict(json.loads(json.dumps(d))) == from_flag
    assert RunConfig(device="cpu").to_dict()["hidden"] is None  # the model's own widths


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hidden": "100,-1"}, "hidden must be positive integer widths"),
        ({"hidden": [100, 2.5]}, "hidden must be positive integer widths"),
        ({"norm": "batch"}, "unknown norm 'batch'; choose from none, layer"),
    ],
)
def test_bad_model_factors_are_user_errors(changes, message):
    with pytest.raises(UserError, match=message):
        RunConfig(device="cpu", **changes)


def test_a_checkpoint_written_before_the_model_factors_still_loads(tiny, tiny_config):
    """Its config has no ``hidden`` or ``norm``: they take their defaults, the old behaviour."""
    from plasticity.loop import StrategyRun

    config = tiny_config.replace(strategies=["reset"], restarts=0, epochs=1)
    run = StrategyRun(config, "reset", tiny)
    run.run_epoch()
    state = run.state_dict()
    state["config"] = {k: v for k, v in state["config"].items() if k not in ("hidden", "norm")}
    StrategyRun(config, "reset", tiny).load_state_dict(state)
    with pytest.raises(UserError, match=r"different configuration \(norm\)"):
        StrategyRun(config.replace(norm="layer"), "reset", tiny).load_state_dict(state)
