"""Operating studies: validate (the plan, the checks, nothing written), evaluation seeds, the
tracking block, Ray's status table, `plasticity run`'s bars and the analysis' step lines."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import TINY_RUN_ARGS

from plasticity.errors import UserError
from study.spec import load_spec

SPACE = {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}
EXPANDED = {
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "epochs": [2, 4],
    "schedule": ["linear", "step"],
    "alpha0": {"low": 0.0, "high": 0.8},
    "ramp": {"low": 1, "high": 2, "int": True},
}


def study_file(tmp_path: Path, **extra) -> dict:
    raw = {
        "name": "ops",
        "setting": {"model": "mlp-small", "restarts": 1, "epochs": 2, "batch_size": 1000},
        "strategies": {"reset": dict(SPACE)},
        "budget": {"trials_per_strategy": 2, "eval_seeds": 0},
        "resources": {"cpu": 1},
        "storage": str(tmp_path / "studies"),
    }
    raw.update(extra)
    return raw


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- evaluation seeds ------------------------------------------------------------------------
BEST = {"config": {"run": {"seed": 0, "lr": 1e-3}}}


@pytest.mark.parametrize(
    "budget,seeds",
    [
        ({"eval_seeds": 3}, [1000, 1001, 1002]),  # the default, as before
        ({"eval_seeds": 2, "eval_seed_base": 50}, [50, 51]),
        ({"eval_seed_list": [9, 3, 27]}, [9, 3, 27]),
    ],
)
def test_evaluation_runs_every_best_on_the_study_files_seeds(tmp_path, budget, seeds):
    from study.plan import eval_configs

    spec = load_spec(study_file(tmp_path, budget=budget))
    configs = eval_configs(spec, {"reset": BEST})
    assert [c["run"]["seed"] for c in configs] == seeds
    assert all(c["run"]["lr"] == 1e-3 and c["phase"] == "eval" for c in configs)


@pytest.mark.parametrize(
    "budget,message",
    [
        ({"eval_seed_list": [3, 3]}, "distinct"),
        ({"eval_seed_list": [3, -1]}, "distinct seeds >= 0"),
        ({"eval_seed_list": [3, 1.5]}, "eval_seed_list.1: Input should be a valid integer"),
        ({"eval_seed_list": [3, 4], "eval_seeds": 3}, r"eval_seeds \(3\) and eval_seed_list"),
        ({"eval_seed_list": [3], "eval_seed_base": 7}, "not both"),
        ({"eval_seed_list": [0, 1]}, r"include the search seed \(0\)"),
        ({"search_seed": 1001, "eval_seeds": 2}, r"include the search seed \(1001\)"),
    ],
)
def test_bad_evaluation_seeds_are_one_line(tmp_path, budget, message):
    with pytest.raises(UserError, match=message):
        load_spec(study_file(tmp_path, budget=budget))


def test_a_saved_study_with_listed_seeds_loads_again(tmp_path):
    spec = load_spec(study_file(tmp_path, budget={"eval_seed_list": [5, 8]}))
    again = load_spec(spec.model_dump(mode="json"))  # study.yaml holds every field
    assert again.budget.eval_seed_values() == [5, 8] and again.budget.eval_seeds == 2


# -- the plan --------------------------------------------------------------------------------
def test_plan_counts_trials_and_epochs_per_phase(tmp_path):
    from study.plan import phase_rows, plan_text

    raw = study_file(
        tmp_path,
        strategies={"reset": SPACE, "expanded": EXPANDED},
        budget={"trials_per_strategy": 3, "eval_seeds": 2},
    )
    spec = load_spec(raw)
    rows = {r["phase"]: (r["trials"], r["epochs"], r["how"]) for r in phase_rows(spec)}
    kind = "2 random start-up + 1 TPE trials"
    assert rows == {
        "search-reset": ((3, 3), (12, 12), kind),  # 3 trials x 2 tasks x 2 epochs
        "search-expanded": ((3, 3), (12, 24), kind),  # epochs per task searched in [2, 4]
        "eval-reset": ((2, 2), (8, 8), "its best at 3 trials on seeds 1000, 1001"),
        "eval-expanded": ((2, 2), (8, 16), "its best at 3 trials on seeds 1000, 1001"),
    }
    # a ladder: the evaluation runs once per rung whose best changed, so between 2 and 6
    ladder = load_spec({**raw, "budget": {"trials_per_strategy": [1, 2, 3], "eval_seeds": 2}})
    rows = {r["phase"]: (r["trials"], r["epochs"], r["how"]) for r in phase_rows(ladder)}
    assert rows["eval-reset"] == (
        (2, 6),
        (8, 24),
        "its best at 1, 2 and 3 trials on seeds 1000, 1001",
    )
    assert rows["search-reset"] == ((3, 3), (12, 12), "2 random start-up + 1 TPE trials")
    assert re.search(r"\ntotal +10-18 +40-108\n", plan_text(ladder) + "\n")
    text = plan_text(spec)
    assert "phases: search-reset, search-expanded, eval-reset, eval-expanded\n" in text
    assert re.search(r"\ntotal +10 +40-60\n", text + "\n"), text
    assert "alpha0    uniform [0, 0.8]" in text and "lr        log-uniform [0.0001, 0.01]" in text
    assert "ramp      integer [1, 2] (called step_epoch for step schedules)" in text
    # strategies run side by side, each within its concurrency (default 2), the cap above all
    assert "; up to 4 trial(s) at once (2 per strategy), each 1 CPU + 0 GPU" in text
    capped = load_spec({**raw, "max_concurrent_trials": 3})
    assert "up to 3 trial(s) at once (the study's cap; 2 per strategy)" in plan_text(capped)


def test_trials_that_fit_at_once_count_alive_nodes_and_gpu_shares():
    from study.plan import fits

    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
        {"Alive": True, "Resources": {"CPU": 4.0}},
    ]
    assert fits(nodes, cpu=2, gpu=0.25) == 4  # four quarter-GPU trials on the one GPU
    assert fits(nodes, cpu=2, gpu=0) == 6
    assert fits(nodes, cpu=0.5, gpu=0.1) == 10  # floating-point shares count exactly


# -- tracking --------------------------------------------------------------------------------
def test_a_missing_tracking_client_is_one_line_before_anything_starts(
    tmp_path, capsys, monkeypatch
):
    import importlib.util

    import study.driver.experiment
    import study.tracking
    from plasticity.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        study.tracking.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlflow" else real(name, *a),
    )

    def no_ray(*args, **kwargs):
        raise AssertionError("the check passed: a study would start")

    monkeypatch.setattr(study.driver.experiment, "run_study", no_ray)
    file = tmp_path / "tracked.yaml"
    file.write_text(yaml.safe_dump(study_file(tmp_path, tracking={"mlflow": {}})))
    (tmp_path / "studies").mkdir()
    before = snapshot(tmp_path)
    for argv in (["study", "validate", str(file)], ["study", "launch", str(file)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "tracking.mlflow needs the mlflow client" in err
        assert 'pip install "plasticity-study[mlflow]"' in err
    assert snapshot(tmp_path) == before


def test_an_mlflow_folder_uri_needs_mlflows_consent(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from study.tracking import check_tracking

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    spec = load_spec(
        study_file(tmp_path, tracking={"mlflow": {"tracking_uri": f"file://{tmp_path}"}})
    )
    from mlflow import environment_variables as env

    if not hasattr(env, "MLFLOW_ALLOW_FILE_STORE"):
        pytest.skip("this MLflow takes folders without consent")
    with pytest.raises(UserError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        check_tracking(spec)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking(spec)
    sqlite = {"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}}
    check_tracking(load_spec(study_file(tmp_path, tracking=sqlite)))
    assert not (tmp_path / "mlflow.db").exists()  # a check writes nothing


def test_wandb_block_becomes_rays_wandb_callback(tmp_path, monkeypatch):
    """Without the client installed: the callback only needs the module at construction."""
    import importlib.util

    import ray.air.integrations.wandb as ray_wandb

    import study.tracking
    from study.tracking import tracking_callbacks

    monkeypatch.setattr(ray_wandb, "wandb", SimpleNamespace())
    real = importlib.util.find_spec
    fake = lambda name, *a: object() if name == "wandb" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(study.tracking.importlib.util, "find_spec", fake)
    block = {"project": "plasticity", "dir": "wb", "entity": "lab"}
    spec = load_spec(study_file(tmp_path, tracking={"wandb": block}))
    monkeypatch.chdir(tmp_path)
    [callback] = tracking_callbacks(spec)
    assert isinstance(callback, ray_wandb.WandbLoggerCallback)
    assert (callback.project, callback.group) == ("plasticity", "ops")
    assert callback.kwargs == {
        "mode": "offline",  # the default: nothing leaves the machine
        "entity": "lab",
        "dir": str(tmp_path / "wb"),
    }
    started = []
    monkeypatch.setattr(callback, "_start_logging_actor", lambda t, ex, **kw: started.append(kw))
    monkeypatch.setattr(ray_wandb, "_clean_log", lambda config: config)  # needs wandb itself
    trial = SimpleNamespace(
        config={"strategy": "reset", "phase": "eval", "run": {}},
        trial_id="t1",
        experiment_dir_name="x",
    )
    callback.log_trial_start(trial)  # each trial's run is tagged with its own phase
    assert started[0]["job_type"] == "eval-reset"
    assert started[0]["tags"] == ["ops", "eval-reset", "reset"]


def test_no_tracking_block_no_callbacks(tmp_path):
    from study.tracking import tracking_callbacks

    assert tracking_callbacks(load_spec(study_file(tmp_path))) == []


def test_each_phase_runs_with_the_tracking_callbacks_and_the_status_table(tmp_path):
    pytest.importorskip("mlflow")
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune import CLIReporter

    from study.driver.tuner import run_config
    from study.store.folder import StudyFolder

    block = {"mlflow": {"tracking_uri": "sqlite:///x.db", "tags": {"who": "me"}}}
    spec = load_spec(study_file(tmp_path, tracking=block))
    config = run_config(StudyFolder(str(tmp_path / "studies" / "ops")), spec)
    [callback] = config.callbacks
    assert isinstance(callback, MLflowLoggerCallback)
    assert (callback.tracking_uri, callback.experiment_name) == ("sqlite:///x.db", "ops")
    assert callback.tags == {"who": "me", "study": "ops"}  # + each trial's phase and strategy
    assert isinstance(config.progress_reporter, CLIReporter)
    columns = list(config.progress_reporter._parameter_columns)
    assert columns == ["strategy", "phase", "run/seed", "run/lr"]


# -- Ray's status table ----------------------------------------------------------------------
def test_status_table_shows_objective_progress_and_the_columns_every_trial_has(tmp_path):
    from study.driver.tuner import progress_reporter

    spec = load_spec(study_file(tmp_path, strategies={"reset": SPACE, "expanded": EXPANDED}))
    study = progress_reporter(spec)
    assert list(study._metric_columns) == ["auc_test_acc", "task", "epochs_done", "epochs_total"]
    assert (study._metric, study._mode) == ("auc_test_acc", "max")  # the best trial line
    assert study._parameter_columns == {
        "strategy": "strategy",
        "phase": "phase",
        "run/seed": "seed",
        "run/lr": "lr",
    }
    # Ray looks each column up in the best trial's config: an evaluation trial has them all
    from ray._private.dict import unflattened_lookup

    evaluation = {"strategy": "expanded", "phase": "eval", "run": {"seed": 1000, "lr": 0.01}}
    assert [unflattened_lookup(p, evaluation) for p in study._parameter_columns] == [
        "expanded",
        "eval",
        1000,
        0.01,
    ]


# -- plasticity run's bars, the analysis' lines ----------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_run_progress_has_a_bar_per_strategy_with_its_task_and_eta():
    from plasticity.cli import RunProgress
    from plasticity.config import RunConfig

    config = RunConfig(strategies=("reset", "expanded"), restarts=2, epochs=2, device="cpu")
    records = [
        SimpleNamespace(strategy=s, task=t, test_acc=0.5)
        for t in range(3)
        for s in config.strategies
        for _ in range(2)
    ]
    screen = _Terminal()
    bars = RunProgress(config, file=screen)
    for rec in records[:9]:  # reset has begun task 2, expanded is still on task 1
        bars.update(rec)
    bars.close()
    text = screen.getvalue().replace("\r", "\n")
    assert "   reset task 2/2:  83%" in text and "expanded task 1/2:  67%" in text
    assert re.search(r"5/6 \[\d\d:\d\d<\d\d:\d\d, .*test_acc=0.500", text), text  # ETA

    quiet = io.StringIO()  # not a terminal: nothing at all
    bars = RunProgress(config, file=quiet)
    for rec in records:
        bars.update(rec)
    bars.close()
    assert quiet.getvalue() == ""


def test_analysis_says_each_long_step(tmp_path, capsys):
    from plasticity.cli import main

    run = tmp_path / "run"
    assert main(["run", *TINY_RUN_ARGS, "--strategies", "reset", "--out", str(run)]) == 0
    assert "%|" not in capsys.readouterr().err  # captured stderr is no terminal: no bars
    assert main(["analyze", str(run), "--bootstrap", "20"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("analysis:")]
    assert lines == [
        "analysis: reading 1 folder(s)",
        "analysis: 4 records of 1 trial(s); 95% CIs from 20 bootstrap resamples",
        f"analysis: writing tables, figures and report.md to {run / 'analysis'}",
    ]


# -- under a real Ray (one local instance for the module) ------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
def test_validate_prints_the_plan_checks_the_cluster_and_writes_nothing(
    tmp_path, capsys, ray_session
):
    from plasticity.cli import main

    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "other.txt").write_text("a result that must stay")
    good, greedy = tmp_path / "good.yaml", tmp_path / "greedy.yaml"
    seeds = {"trials_per_strategy": 2, "eval_seed_list": [7, 9]}
    good.write_text(yaml.safe_dump(study_file(tmp_path, budget=seeds)))
    greedy.write_text(yaml.safe_dump(study_file(tmp_path, resources={"cpu": 1, "gpu": 2})))
    before = snapshot(tmp_path)

    assert main(["study", "validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert "search-reset  2       8       random search (2 trials, all TPE start-up)" in out
    assert "eval-reset    2       8       its best at 2 trials on seeds 7, 9" in out
    assert "cluster: local Ray, 1 node(s), 2 CPU, 0 GPU: 2 trial(s) of 1 CPU + 0 GPU fit" in out
    assert "tracking: off" in out and "nothing written" in out
    assert main(["study", "launch", str(good), "--dry-run"]) == 0
    assert capsys.readouterr().out == out  # the same code

    assert main(["study", "validate", str(greedy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no node of the cluster has 1.0 CPU and 2.0 GPU" in err
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "studies" / "ops").exists()


@pytest.mark.ray
def test_a_tracked_study_sends_every_trial_to_mlflow(tmp_path, capsys, ray_session):
    """MLflow to a local file (sqlite: MLflow 3 refuses plain folders without an opt-in);
    the evaluation runs on the file's seeds; Ray's table shows the objective and best trial."""
    mlflow = pytest.importorskip("mlflow")
    from study.commands import launch

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = load_spec(
        study_file(
            tmp_path,
            budget={"trials_per_strategy": 1, "eval_seed_list": [7, 9]},
            tracking={"mlflow": {"tracking_uri": uri, "tags": {"who": "test"}}},
        )
    )
    root = Path(launch(spec))
    out = capsys.readouterr().out
    assert "Current best trial" in out and "auc_test_acc" in out
    assert "strategy_params" not in out  # no trial's whole config
    results = {}
    for f in (root / "trials").glob("*/result.json"):
        rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        phase = f.parent.name.split("_")[0]  # PHASE-STRATEGY_TRIALID
        results[(phase, rows[-1]["trial_id"])] = rows
    assert {p for p, _ in results} == {"search-reset", "eval-reset"}
    assert sorted(r[-1]["seed"] for (p, _), r in results.items() if p == "eval-reset") == [7, 9]

    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("ops")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(results) == 3  # one search trial, two evaluation seeds
    for run in runs:
        tags = run.data.tags
        assert tags["study"] == "ops" and tags["who"] == "test"
        [key] = [k for k in results if k[0] == tags["phase"] and k[1] in tags["trial_name"]]
        history = client.get_metric_history(run.info.run_id, "auc_test_acc")
        reported = {r["training_iteration"]: r["auc_test_acc"] for r in results[key]}
        assert {m.step: m.value for m in history} == pytest.approx(reported)
        assert sorted(reported) == [1, 2, 3, 4]  # every epoch of 2 tasks x 2 epochs


def finished_study(tmp_path: Path) -> Path:
    """A study folder as a finished launch leaves it (study.yaml, study.json; no trials)."""
    from study.plan import phases
    from study.store.state import KIND, LAYOUT

    spec = load_spec(study_file(tmp_path, budget={"trials_per_strategy": 2, "eval_seeds": 1}))
    root = Path(spec.storage) / spec.name
    root.mkdir(parents=True)
    (root / "study.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    state = {"kind": KIND, "layout": LAYOUT, "version": "0.1.0", "name": spec.name}
    state["phases"] = dict.fromkeys(phases(spec), "done")
    (root / "study.json").write_text(json.dumps(state))
    return root


def test_extend_writes_its_plan_first_so_a_crash_during_it_is_finished_by_resume(
    tmp_path, monkeypatch, capsys
):
    import study.driver.experiment as driver
    from study import commands

    root = finished_study(tmp_path)

    def crash(*args, **kwargs):
        raise SystemExit("driver lost")

    monkeypatch.setattr(driver, "run_study", crash)
    with pytest.raises(SystemExit):
        commands.extend(str(root), 3)
    state = json.loads((root / "study.json").read_text())
    assert state["plan"] == {"reset": [2, 5]}  # a rung of 5 trials above the file's 2
    assert state["phases"]["search-reset"] == "running"
    driven = []
    monkeypatch.setattr(
        driver, "run_study", lambda folder, spec, state, address: driven.append(state) or "ran"
    )
    assert commands.resume(str(root)) == "ran"  # not "already finished"
    assert driven[0]["plan"] == {"reset": [2, 5]}
    # extending again adds to the plan
    commands.extend(str(root), 1)
    assert driven[1]["plan"] == {"reset": [2, 5, 6]}
    assert "extending study 'ops': search trials now reset 6" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--trials", "x"], "invalid int value: 'x'"),
        (["--trials", "0"], "--trials must be a positive whole number"),
        (["--trials", "2", "--strategy", "cbp"], "unknown strategy 'cbp': this study has reset"),
        ([], "the following arguments are required: --trials"),
    ],
)
def test_extend_input_errors_are_one_line_and_change_nothing(tmp_path, capsys, args, message):
    from plasticity.cli import main

    root = finished_study(tmp_path)
    before = (root / "study.json").read_text()
    assert main(["study", "extend", str(root), *args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert (root / "study.json").read_text() == before


def test_a_study_copied_under_another_name_keeps_the_name_its_search_was_saved_under(tmp_path):
    """The searcher's Optuna studies (in Ray's snapshot) are named after the launched study:
    a copy in a folder of another name must still find them (it crashed with a KeyError)."""
    import shutil

    from study.store.state import open_study

    root = finished_study(tmp_path)
    copy = shutil.copytree(root, tmp_path / "elsewhere" / "renamed")
    folder, spec, _ = open_study(str(copy))
    assert spec.name == "ops" and folder.root == str(copy)
