"""Study files, search space and trial configs (no Ray started)."""

import optuna
import pytest
import yaml

from plasticity.errors import UserError
from study.space import define_space
from study.spec import load_spec, preset_names, preset_path
from study.trainable import to_run_config

GOOD = {
    "name": "t",
    "setting": {"dataset": "mnist-5k", "model": "mlp-small", "restarts": 1, "epochs": 2},
    "strategies": {"reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}},
}


def _with(**changes):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node, *path, last = [spec, *dotted.split("__")]
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return spec


def test_good_spec_and_every_preset_load():
    assert load_spec(GOOD).budget.ladder(1) == [4]  # no budget given: 4 trials per strategy
    names = preset_names()
    assert "demo" in names and sum(n.startswith("paper-") for n in names) == 8
    for name in names:
        spec = load_spec(preset_path(name))
        assert spec.name == name
        # baselines get the same budget as the method (a protocol's width sweep compares the
        # phenomenon, continuous, with the fresh-network reference only)
        assert set(spec.strategies) >= {"reset", "continuous"}
        assert "expanded" in spec.strategies or name.startswith("protocol-dohare-width")
    assert {n for n in names if n.startswith("protocol-")} == {
        "protocol-kumar-permuted-mnist",
        "protocol-kumar-random-labels",
        "protocol-dohare-width-narrow",
        "protocol-dohare-width-wide",
    }


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"setting__epochs": "ten"}, "setting.epochs: Input should be a valid integer"),
        ({"setting__model": "resnet"}, "unknown model 'resnet'"),
        ({"setting__restarts": -1}, "restarts must be an integer >= 0"),
        ({"setting__optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"setting__beta2": 1.5}, r"beta2 must be in \[0, 1\)"),
        ({"strategies__reset__epochs": {"low": 2, "high": 5}}, "epochs is an integer"),
        ({"strategies__reset__lr": {"low": 1e-4, "high": 1e-2, "int": True}}, "whole-number"),
        ({"strategies__reset__weight_decay": -0.1}, "weight-decay must be >= 0"),
        ({"strategies__reset__epochs": [True, 2]}, "epochs must be a positive integer"),
        ({"strategies__reset__optimizer": ["adam", "lion"]}, "unknown optimizer 'lion'"),
        ({"strategies__reset__beta2": {"low": 0.9, "high": 1.0}}, "beta2 must be in"),
        ({"strategies__reset__schedule": ["step"]}, "reset: unknown parameter 'schedule'"),
        ({"strategies__reset": {"lr": 0.001}}, "reset: nothing to search .*trials_per_strategy: 1"),
        (
            {"strategies__reset": {"lr": 0.001}, "budget__trials_per_strategy": [1, 2]},
            "reset: nothing to search",
        ),
        ({"strategies": {}}, "no strategies to compare"),
        ({"strategies__magic": {"lr": [0.1]}}, "unknown strategy 'magic'"),
        ({"strategies__reset__alpha0": [0.1]}, "reset: unknown parameter 'alpha0'"),
        ({"strategies__expanded": {"schedule": ["linear", "exp"]}}, "unknown schedule 'exp'"),
        ({"strategies__expanded": {"alpha0": {"low": 0.5, "high": 1.5}}}, r"alpha0 must be in"),
        ({"strategies__reset__lr": {"low": 1, "high": 0.1}}, "low .* must be below high"),
        ({"strategies__reset__lr": {"low": 0, "high": 1, "log": True}}, "log range needs low > 0"),
        ({"strategies__reset__lr": []}, "empty list"),
        ({"budget__trials_per_strategy": 0}, "trials_per_strategy must be a whole number >= 1"),
        ({"budget__trials_per_strategy": [4, 4]}, "each larger than the one before; got .4, 4"),
        ({"budget__trials_per_strategy": [8, 4]}, "each larger than the one before"),
        ({"budget__trials_per_strategy": 2.5}, "trials_per_strategy"),
        (
            {"budget": {"trials_per_strategy": 4, "trials_per_param": 2}},
            "give trials_per_strategy or trials_per_param, not both",
        ),
        ({"resources__gpu": -1}, "resources.gpu"),
        ({"metric": "speed"}, "metric: Input should be"),
        ({"name": "bad name/with slash"}, "name: String should match"),
        ({"setting__norm": "batch"}, "unknown norm 'batch'"),
        ({"setting__hidden": [100, 0]}, "hidden must be positive integer widths"),
        ({"strategies__reset__hidden": [100, 200]}, "reset.hidden: give a list of width lists"),
        ({"strategies__reset__hidden": [[100], [0]]}, "hidden must be positive integer widths"),
        ({"strategies__reset__norm": ["none", "group"]}, "unknown norm 'group'"),
    ],
)
def test_bad_study_files_fail_with_one_line(changes, message):
    with pytest.raises(UserError, match=message) as info:
        load_spec(_with(**changes))
    assert "\n" not in str(info.value)


def test_a_fixed_configuration_runs_as_one_trial():
    """Every parameter fixed is allowed with a one-trial budget (the protocol presets: too long
    to search), and the plan says the configuration is fixed rather than searched."""
    from study.plan import search_kind

    spec = load_spec(
        _with(strategies={"reset": {"lr": 0.001}, "expanded": "default"},
              budget__trials_per_strategy=1)
    )  # fmt: skip
    assert spec.budget.ladder(0) == [1]
    assert search_kind(spec, "reset", 1) == "fixed configuration (nothing searched)"
    assert "random" in search_kind(spec, "expanded", 1)


def test_bad_yaml_and_missing_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="no study file"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(UserError, match="unknown study preset"):
        preset_path("nope")


def _base(strategy="expanded", epochs=6, seed=0):
    from study.plan import base_run

    spec = load_spec(_with(setting__epochs=epochs, strategies={strategy: "default"}))
    return base_run(spec, strategy, seed)


def _sample(space, n=40, epochs=6):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        const = define_space(trial, space, _base(epochs=epochs), "expanded", {"phase": "search"})
        out.append({**trial.params, **const})
        study.tell(trial, 0.0)
    return out


def test_expanded_space_is_conditional_on_the_schedule_kind():
    space = {
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "epochs": [3, 5],
        "schedule": ["paper", "linear", "cosine", "step"],
        "alpha0": {"low": 0.0, "high": 0.8},
        "ramp": {"low": 1, "high": 8, "int": True},
        "per_step": False,
    }
    configs = _sample(space)
    kinds = {c["schedule"] for c in configs}
    assert kinds == {"paper", "linear", "cosine", "step"}
    for c in configs:
        run, own = c["run"], c["run"]["strategy_params"]["expanded"]
        assert run["strategies"] == ["expanded"] and c["phase"] == "search"
        assert own["per_step"] is False and own["schedule"] == c["schedule"]
        assert run["lr"] == c["lr"] and 1e-4 <= run["lr"] <= 1e-2
        assert run["epochs"] == c["epochs"]
        if c["schedule"] == "paper":  # neither is searched; the run keeps the defaults
            assert "alpha0" not in c and "ramp" not in c and "step_epoch" not in c
            assert (own["alpha0"], own["ramp"]) == (0.2, 4.0)
        elif c["schedule"] == "step":  # Optuna's name differs; the run's field does not
            assert "ramp" not in c and 1 <= c["step_epoch"] <= c["epochs"]
            assert own["ramp"] == c["step_epoch"] and own["alpha0"] == c["alpha0"]
        else:
            assert "step_epoch" not in c and 1 <= c["ramp"] <= c["epochs"]  # capped by epochs
            assert own["ramp"] == c["ramp"]


def test_trial_config_becomes_a_typed_run_config():
    from study.space import resolve_run

    values = {"lr": 0.002, "epochs": 4, "schedule": "step", "alpha0": 0.3, "ramp": 2}
    config = {
        "strategy": "expanded",
        "step_epoch": 2,
        "checkpoint_every": 0,
        "run": resolve_run(_base(seed=3), "expanded", values),
    }
    run = to_run_config(config)
    assert (run.strategies, run.seed, run.lr, run.epochs, run.model) == (
        ("expanded",),
        3,
        0.002,
        4,
        "mlp-small",
    )
    assert run.strategy_params["expanded"] == {
        "schedule": "step",
        "alpha0": 0.3,
        "ramp": 2.0,
        "per_step": False,
    }


def test_study_cli_errors_are_one_line_before_ray_starts(tmp_path, capsys):
    from plasticity.cli import main

    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(_with(budget={"trials_per_strategy": 0})))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "study.json").write_text("{not json")
    cases = [
        (["study", "resume", str(tmp_path)], "is not a study (no study.json)"),
        (["study", "resume", str(tmp_path / "corrupt")], "study files are unreadable"),
        (["study", "launch", str(tmp_path / "bad.yaml")], "trials_per_strategy"),
        (["study", "launch", "--preset", "nope"], "unknown study preset 'nope'"),
        (["study", "launch", str(tmp_path / "bad.yaml"), "--preset", "demo"], "not both"),
        (["study", "launch", str(tmp_path / "absent.yaml")], "no study file"),
        (["study", "frobnicate"], "invalid choice"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_default_search_space_of_every_strategy():
    from plasticity.strategies import STRATEGIES

    spec = load_spec({**GOOD, "strategies": {s: "default" for s in STRATEGIES}})
    assert set(spec.strategies) == set(STRATEGIES)
    for space in spec.strategies.values():
        assert space["lr"].log and space["lr"].low == pytest.approx(1e-4)
    assert spec.strategies["expanded"]["ramp"].high == 2  # capped at the setting's epochs
    assert spec.strategies["l2_init"]["strength"].log
    assert spec.strategies["redo"]["tau"].high == 0.2


def test_a_phase_cut_short_is_not_marked_done(tmp_path):
    """Ctrl-C makes Tune stop gracefully and return from fit(): fewer trials than planned have
    ended, so the driver must not treat the phase as finished."""
    from types import SimpleNamespace

    from study.driver.experiment import fit as fit_study
    from study.store.folder import StudyFolder

    class CutShort:
        def fit(self):
            return SimpleNamespace(num_terminated=1, num_errors=0, errors=[])

    folder = StudyFolder(str(tmp_path / "st"))
    with pytest.raises(UserError, match="interrupted during search-reset.*study resume"):
        fit_study(folder, CutShort, None, planned=lambda: 2, unfinished=lambda: "search-reset")

    def fit(results):
        return fit_study(
            folder,
            lambda: SimpleNamespace(fit=lambda: results),
            None,
            planned=lambda: 2,
            unfinished=lambda: "search-reset",
        )

    done = SimpleNamespace(num_terminated=2, num_errors=0, errors=[])
    assert fit(done) is done
    # a trial that failed after its retries: not finished either (resume retries it)
    failed = SimpleNamespace(num_terminated=1, num_errors=1, errors=[RuntimeError("a\nboom")])
    with pytest.raises(UserError, match=r"1 of 2 trial\(s\) failed .*\(boom\).*study resume"):
        fit(failed)


@pytest.mark.parametrize(
    "trials,startup,kind",
    [(1, 2, "random search"), (4, 2, "2 random"), (24, 8, "8 random"), (60, 10, "10 random")],
)
def test_tpe_start_up_is_sized_to_the_budget(trials, startup, kind):
    from study.driver.tuner import make_sampler
    from study.plan import search_kind

    spec = load_spec(_with(budget={"trials_per_strategy": trials}))
    assert spec.budget.startup(trials) == startup
    assert search_kind(spec, "reset", trials).startswith(kind)
    sampler = make_sampler(spec, "reset")
    assert sampler._n_startup_trials == startup
    assert sampler._multivariate and sampler._group and sampler._constant_liar
    given = load_spec(_with(budget={"trials_per_strategy": trials, "startup_trials": 3}))
    assert make_sampler(given, "reset")._n_startup_trials == 3
    # a ladder's start-up is sized to its largest rung: the whole search as launched
    ladder = load_spec(_with(budget={"trials_per_strategy": sorted({1, trials})}))
    assert make_sampler(ladder, "reset")._n_startup_trials == startup


def test_a_budget_ladder_per_strategy_or_per_searched_parameter():
    from study.plan import budget_text, rungs

    lr = {"low": 1e-4, "high": 1e-2, "log": True}
    two = {"reset": {"lr": lr}, "expanded": {"lr": lr, "schedule": ["linear"], "alpha0": 0.2}}
    spec = load_spec(_with(strategies=two, budget={"trials_per_strategy": [4, 8, 16]}))
    assert rungs(spec) == {"reset": [4, 8, 16], "expanded": [4, 8, 16]}
    assert budget_text(spec) == (
        "4, 8 and 16 trials per strategy; the strategies search different numbers of "
        "parameters (reset 1, expanded 2): with equal trials, the ones searching more are "
        "compared at less search per parameter"
    )
    per_param = load_spec(_with(strategies=two, budget={"trials_per_param": [2, 4]}))
    assert rungs(per_param) == {"reset": [2, 4], "expanded": [4, 8]}  # alpha0 is fixed
    assert budget_text(per_param) == (
        "reset 2 and 4 trials; expanded 4 and 8 trials (trials_per_param [2, 4] x searched "
        "parameters)"
    )
    # study.json's plan (an extension) adds rungs; a number is a study extended before ladders
    assert rungs(spec, {"plan": {"reset": [4, 8, 16, 20]}})["reset"] == [4, 8, 16, 20]
    assert rungs(spec, {"plan": {"reset": 6}})["reset"] == [6]


def test_optuna_state_of_an_ended_trial():
    from optuna.trial import TrialState

    from study.search.whole_trial import trial_state

    assert trial_state({"run_complete": True, "auc_test_acc": 0.5}, error=False) == (
        TrialState.COMPLETE
    )
    assert trial_state({"run_complete": False, "auc_test_acc": 0.5}, False) == TrialState.PRUNED
    assert trial_state({"run_complete": False, "auc_test_acc": 0.5}, True) == TrialState.FAIL
    assert trial_state({"run_complete": True, "auc_test_acc": 0.5}, True) == TrialState.FAIL
    assert trial_state(None, False) == TrialState.PRUNED


@pytest.mark.parametrize(
    "setting,space,grace,ok",
    [
        ({"restarts": 2, "epochs": 2}, {}, 3, True),  # can cut at 3 of 4 restart epochs
        ({"restarts": 2, "epochs": 2}, {}, 4, False),  # 4 of 4: nothing left to cut
        ({"restarts": 0, "epochs": 5}, {}, 1, False),  # no restart task: no clock
        ({"restarts": 1, "epochs": 2}, {"epochs": [2, 6]}, 5, True),  # a 6-epoch trial can be
    ],
)
def test_asha_grace_must_leave_restart_epochs_to_cut(setting, space, grace, ok):
    raw = _with(
        setting=setting,
        budget={"scheduler": "asha", "grace_epochs": grace},
        strategies={  # one strategy searches epochs, the other keeps the setting's
            "reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, **space},
            "continuous": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        },
    )
    if ok:
        assert load_spec(raw).budget.grace_epochs == grace
    else:
        with pytest.raises(UserError, match="grace_epochs .* must be below the restart epochs"):
            load_spec(raw)


def test_model_factors_in_the_setting_reach_every_trials_run():
    from study.plan import base_run

    spec = load_spec(_with(setting__hidden=[100, 100], setting__norm="layer"))
    assert spec.setting.hidden == (100, 100)
    run = base_run(spec, "reset", 0)
    assert (run["hidden"], run["norm"]) == ([100, 100], "layer")
    assert (to_run_config({"run": run}).hidden, to_run_config({"run": run}).norm) == (
        (100, 100),
        "layer",
    )


def test_width_depth_and_norm_are_searched_as_choices():
    """Optuna sees each width list by its label; the trial's run gets the list itself."""
    space = {
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "hidden": [[100, 100], [400, 400], [100, 100, 100]],
        "norm": ["none", "layer"],
    }
    load_spec(_with(strategies={"reset": space}))  # a valid study file
    configs = _sample(space, n=30)
    seen = set()
    for c in configs:
        run = c["run"]
        assert c["hidden"] == ",".join(map(str, run["hidden"]))
        assert run["norm"] == c["norm"]
        config = to_run_config(c)
        assert list(config.hidden) == run["hidden"]
        seen.add((tuple(run["hidden"]), run["norm"]))
    assert len(seen) == 6
