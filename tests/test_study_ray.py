"""Studies under a real local Ray (small and few: each starts Ray, ~1.7 GB, a few seconds)."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from plasticity.errors import UserError
from study.faults import SUITE

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

TINY_SETTING = {
    "dataset": "mnist-5k",
    "model": "mlp-small",
    "restarts": 1,
    "epochs": 2,
    "batch_size": 1000,
}


def tiny_spec(tmp_path, name="t", **extra):
    spec = {
        "name": name,
        "setting": dict(TINY_SETTING),
        "strategies": {
            "reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
            "expanded": {
                "lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "schedule": ["linear", "cosine", "step"],
                "alpha0": {"low": 0.0, "high": 0.8},
                "ramp": {"low": 1, "high": 2, "int": True},
            },
        },
        "budget": {"trials_per_strategy": 2, "eval_seeds": 0},
        "resources": {"cpu": 1},
        "concurrency": 2,
        "storage": str(tmp_path / "studies"),
    }
    spec.update(extra)
    return spec


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def trial_results(experiment: Path, kind: str = "") -> dict[str, list[dict]]:
    """result.json of every trial folder (of one ``kind``, ``PHASE-STRATEGY``: the folder
    ``PHASE-STRATEGY_ID``), de-duplicated on training_iteration (last wins)."""
    out = {}
    for result in sorted(experiment.glob("*/result.json")):
        if kind and result.parent.name.rsplit("_", 1)[0] != kind:
            continue
        rows = {}
        for line in result.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["training_iteration"]] = row
        out[result.parent.name] = [rows[k] for k in sorted(rows)]
    return out


def test_a_ladder_study_end_to_end(tmp_path, local_ray, capsys):
    """Two strategies, a budget ladder of 1 and 2 search trials, one evaluation seed, one
    trial of a strategy at a time; storage given as a URI (file://, through pyarrow.fs, as
    s3:// or gs:// would be). Each strategy: search trial 1, its evaluation (rung 1), search
    trial 2, then rung 2's evaluation only if trial 2 is the better one."""
    from study.commands import finish, launch, resume
    from study.spec import load_spec

    spec = load_spec(
        tiny_spec(
            tmp_path,
            budget={"trials_per_strategy": [1, 2], "eval_seeds": 1},
            storage=f"file://{tmp_path}/studies",
            concurrency=1,
        )
    )
    uri = launch(spec)
    assert uri == f"file://{tmp_path}/studies/t"
    root = tmp_path / "studies" / "t"
    state = json.loads((root / "study.json").read_text())
    assert state["phases"] == {
        f"{p}-{s}": "done" for p in ("search", "eval") for s in ("reset", "expanded")
    }
    storage = f"sqlite:///{root / 'optuna.db'}"
    spans = {}
    for strategy in ("reset", "expanded"):
        trials = trial_results(root / "trials", f"search-{strategy}")
        order = [f"search-{strategy}_{t}" for t in state["search_order"][strategy]]
        assert sorted(order) == sorted(trials) and len(order) == 2
        spans[strategy] = [
            (trials[t][0]["started_at"], trials[t][-1]["reported_at"]) for t in order
        ]
        for rows in trials.values():
            assert len(rows) == 4 and rows[-1]["run_complete"] and rows[-1]["strategy"] == strategy
        study = optuna.load_study(study_name=f"t.{strategy}", storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(study.trials) == len(done) == 2
        # Optuna recorded each trial's last reported objective
        finals = [trials[t][-1]["auc_test_acc"] for t in order]
        assert [t.value for t in done] == pytest.approx(finals)
        # the ladder: rung 1's best is trial 1; rung 2's the better of the two (the first on
        # a tie), whose evaluation is rung 1's if it is the same trial
        ids = state["search_order"][strategy]
        second = finals[1] > finals[0]
        one, two = state["ladder"][strategy]
        assert (one["trials"], one["status"], one["best"]) == (1, "done", ids[0])
        assert (two["trials"], two["status"], two["best"]) == (2, "done", ids[int(second)])
        assert two["reused_from"] == (None if second else 1)
        evals = trial_results(root / "trials", f"eval-{strategy}")
        assert len(evals) == 1 + second and len(one["evals"]) == len(two["evals"]) == 1
        first = evals[f"eval-{strategy}_{one['evals'][0]}"]
        assert first[-1]["seed"] == 1000 and first[-1]["run_complete"]
        assert first[-1]["config"]["rung"] == 1
        assert first[-1]["config"]["run"]["lr"] == trials[order[0]][-1]["config"]["run"]["lr"]
        # rung 1's evaluation ran between the two search trials (before the next one)
        assert spans[strategy][0][1] <= first[0]["started_at"] <= spans[strategy][1][0]
        rows = sorted((r["trials"], r["trial"]) for r in state["eval"] if r["strategy"] == strategy)
        assert rows == [(1, one["evals"][0]), (2, two["evals"][0])]
        assert (
            state["best"][strategy]["trials"] == 2
            and state["best"][strategy]["trial"] == two["best"]
        )
    # the strategies' searches ran side by side
    assert spans["expanded"][0][0] < spans["reset"][0][1]
    assert spans["reset"][0][0] < spans["expanded"][0][1]
    assert finish(uri) == 0
    assert "expanded" in (root / "summary.csv").read_text()
    out = capsys.readouterr().out
    assert "1: 0." in out and "2: 0." in out  # the summary's ladder column

    with pytest.raises(UserError, match="already exists .* plasticity study resume"):
        launch(spec)
    # a driver killed after study.json said done and before its final optuna.db views:
    # resume rebuilds them from Ray's snapshot, then has nothing to run
    (root / "optuna.db").unlink()
    assert resume(uri) is None
    assert "already finished" in capsys.readouterr().out
    for strategy in ("reset", "expanded"):
        study = optuna.load_study(study_name=f"t.{strategy}", storage=storage)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2

    # extend: one more search trial of reset only, on the same Optuna study: a rung of 3,
    # evaluated only if the new trial is its best; the earlier rungs' evaluations stay
    from analysis.load import load
    from study.commands import extend

    before = state
    assert extend(uri, 1, strategy="reset") == uri
    state = json.loads((root / "study.json").read_text())
    assert state["plan"] == {"reset": [1, 2, 3], "expanded": [1, 2]}
    assert set(state["phases"].values()) == {"done"}
    for strategy, n in (("reset", 3), ("expanded", 2)):
        study = optuna.load_study(study_name=f"t.{strategy}", storage=storage)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * n
        assert len(trial_results(root / "trials", f"search-{strategy}")) == n
    three = state["ladder"]["reset"][2]
    changed = three["best"] != before["ladder"]["reset"][1]["best"]
    assert three["trials"] == 3 and (three["reused_from"] is None) == changed
    assert state["ladder"]["reset"][:2] == before["ladder"]["reset"]
    assert len(trial_results(root / "trials", "eval-reset")) == len(
        {e for rung in state["ladder"]["reset"] for e in rung["evals"]}
    )
    assert "superseded" not in state
    assert sorted((r["strategy"], r["trials"]) for r in state["eval"]) == [
        ("expanded", 1),
        ("expanded", 2),
        ("reset", 1),
        ("reset", 2),
        ("reset", 3),
    ]
    from study.commands import summary_rows
    from study.store.state import open_study

    rows = {r["strategy"]: r for r in summary_rows(*open_study(uri)[1:])}
    assert rows["reset"]["trials"] == 3 and rows["expanded"]["trials"] == 2
    assert rows["reset"]["search"] == "2 random start-up + 1 TPE trials"
    assert rows["expanded"]["search"] == "random search (2 trials, all TPE start-up)"
    table = load([root]).table
    per_phase = table.groupby(["strategy", "phase"]).trial.nunique().to_dict()
    assert per_phase[("reset", "search")] == 3
    with pytest.raises(UserError, match="unknown strategy 'redo'"):
        extend(uri, 1, strategy="redo")
    with pytest.raises(UserError, match="--trials must be a positive"):
        extend(uri, 0)


def test_resources_no_node_has_fail_before_any_trial(tmp_path, local_ray):
    from study.commands import launch
    from study.spec import load_spec

    spec = load_spec(tiny_spec(tmp_path, resources={"cpu": 1, "gpu": 1}))
    with pytest.raises(UserError, match="no node of the cluster has 1.0 CPU and 1.0 GPU"):
        launch(spec)
    # nothing written: the fixed file launches under the same name
    assert not (tmp_path / "studies" / "t").exists()


@pytest.mark.parametrize("how", ["raise", "sigkill"])
def test_crashed_trial_is_retried_from_its_checkpoint_with_identical_records(
    tmp_path, local_ray, how
):
    """The fault hits after epoch 0 of task 1 (an exception, or the worker process killed);
    the retry restores the task-boundary checkpoint and re-runs that epoch: the records equal
    an uninterrupted in-process run."""
    from ray import tune

    from plasticity.loop import run_experiment
    from study.driver.tuner import make_trainable
    from study.spec import load_spec
    from study.trainable import to_run_config

    spec = load_spec(tiny_spec(tmp_path))
    from study.plan import base_run
    from study.space import resolve_run

    values = {"lr": 1e-3, "schedule": "linear", "alpha0": 0.2, "ramp": 2}
    config = {
        "strategy": "expanded",
        "checkpoint_every": 0,
        "run": resolve_run(base_run(spec, "expanded", 0), "expanded", values),
        "fail_once_at": {"task": 1, "epoch": 0, "marker": str(tmp_path / "crashed"), "how": how},
    }
    tuner = tune.Tuner(
        make_trainable(spec),
        param_space=config,
        run_config=tune.RunConfig(
            name="fault",
            storage_path=str(tmp_path),
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=0,
        ),
    )
    result = tuner.fit()[0]
    assert (tmp_path / "crashed").exists(), "the fault was not injected"
    assert result.error is None and result.metrics["run_complete"]
    assert result.metrics["restored_from"] == "checkpoint_000000"
    rows = next(iter(trial_results(tmp_path / "fault").values()))
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trial (1 CPU): float sums depend on the thread count
    try:
        expected = run_experiment(to_run_config(config))
    finally:
        torch.set_num_threads(threads)
    fields = ["task", "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "alpha"]
    assert [[r[f] for f in fields] for r in rows] == [
        [getattr(e, f) for f in fields] for e in expected
    ]


def test_interrupted_study_resumes_to_exactly_the_planned_trials(tmp_path):
    """Kill the driver (and its Ray) mid-search, then resume."""
    spec = tiny_spec(
        tmp_path,
        budget={"trials_per_strategy": 3, "eval_seeds": 0},
        # trials of several seconds each: results reach the study folder with Ray's snapshots
        # (below), and with 3-epoch trials an idle machine finished the search before the loop
        # saw the first trial end (CI, 07c904b)
        setting={**TINY_SETTING, "epochs": 12},
        concurrency=1,
    )
    spec["strategies"].pop("reset")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    # the trials' result.json reach the study folder with Ray's snapshots (>= 10 s apart, and
    # forced only where a checkpoint could be lost): one a second, so that the loop below sees
    # a trial finished while the next runs, before the 3-trial search has ended
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plasticity.cli", "study", "launch", str(tmp_path / "s.yaml")],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    experiment = tmp_path / "studies" / "t" / "trials"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait until one trial has finished and another runs
            results = trial_results(experiment).values()
            finished = [r for r in results if r and r[-1]["run_complete"]]
            if finished and len(list(experiment.glob("*/result.json"))) >= 2:
                break
            assert proc.poll() is None, "the study ended before it could be interrupted"
            time.sleep(0.5)
        else:
            pytest.fail("the study made no progress")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
        proc.wait()
    state = json.loads((tmp_path / "studies" / "t" / "study.json").read_text())
    assert state["phases"]["search-expanded"] == "running"

    from study.commands import resume

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        resume(str(tmp_path / "studies" / "t"))
    finally:
        ray.shutdown()
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    done = [t for t in analysis.trials if t.status == "TERMINATED"]
    assert len(analysis.trials) == len(done) == 3
    study = optuna.load_study(
        study_name="t.expanded", storage=f"sqlite:///{tmp_path / 'studies' / 't' / 'optuna.db'}"
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    # trials rolled back by the restore are closed, not left RUNNING forever
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_two_node_cluster_packs_four_quarter_gpu_trials_per_gpu_and_falls_back_to_cpu(tmp_path):
    """Both nodes claim one GPU they do not have; trials ask for 0.25 GPU (and little CPU, so the
    GPU is what limits packing). They spread over both nodes, run four to a GPU at once, and
    train on the CPU because CUDA is absent."""
    from ray.cluster_utils import Cluster

    from study.commands import launch
    from study.spec import load_spec

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        cluster.wait_for_nodes()
        spec = tiny_spec(
            tmp_path,
            budget={"trials_per_strategy": 8, "eval_seeds": 0},
            setting={**TINY_SETTING, "epochs": 12, "batch_size": 100},
            resources={"cpu": 0.25, "gpu": 0.25},
            concurrency=8,
        )
        spec["strategies"].pop("expanded")
        root = Path(launch(load_spec(spec)))
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = trial_results(root / "trials", "search-reset")
    assert len(trials) == 8 and all(rows[-1]["run_complete"] for rows in trials.values())
    assert {rows[-1]["device"] for rows in trials.values()} == {"cpu"}
    spans: dict[str, list[tuple[float, float]]] = {}
    for rows in trials.values():
        spans.setdefault(rows[-1]["node"], []).append(
            (rows[0]["started_at"], rows[-1]["reported_at"])
        )
    assert len(spans) == 2, "trials should run on both nodes"

    def most_at_once(intervals):
        events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak

    assert max(most_at_once(v) for v in spans.values()) == 4


def test_every_strategy_runs_in_a_study(tmp_path, local_ray):
    from plasticity.strategies import STRATEGIES
    from study.commands import launch
    from study.spec import load_spec

    spec = tiny_spec(
        tmp_path,
        budget={"trials_per_strategy": 1, "eval_seeds": 0},
        strategies={s: "default" for s in STRATEGIES},
    )
    root = Path(launch(load_spec(spec)))
    for s in STRATEGIES:
        trials = trial_results(root / "trials", f"search-{s}")
        assert len(trials) == 1, s
        rows = next(iter(trials.values()))
        assert rows[-1]["run_complete"] and rows[-1]["strategy"] == s


def test_asha_stopped_trials_are_pruned_and_the_best_is_a_whole_trial(tmp_path, local_ray):
    """ASHA's clock is restart epochs: it cuts at 1 and 3 of a trial's 4, never in task 0. A
    stopped trial is PRUNED in optuna.db (not COMPLETE with a partial value); the strategy's best
    is the best of the trials that ran every epoch."""
    from study.commands import launch
    from study.spec import load_spec

    spec = tiny_spec(
        tmp_path,
        setting={**TINY_SETTING, "restarts": 2},
        budget={"trials_per_strategy": 4, "eval_seeds": 0, "scheduler": "asha", "grace_epochs": 1},
        concurrency=1,  # trials in order: ASHA's decisions do not depend on timing
        strategies={"reset": {"lr": {"low": 1e-5, "high": 1e-1, "log": True}}},
    )
    root = Path(launch(load_spec(spec)))
    trials = trial_results(root / "trials", "search-reset")
    assert len(trials) == 4
    stopped = {k for k, rows in trials.items() if not rows[-1]["run_complete"]}
    assert stopped, "ASHA stopped no trial: the test shows nothing"
    for k in stopped:  # never cut during task 0
        assert trials[k][-1]["restart_epochs_done"] in (1, 3) and trials[k][-1]["task"] > 0
    study = optuna.load_study(study_name="t.reset", storage=f"sqlite:///{root / 'optuna.db'}")
    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert len(by_ray_id) == len(study.trials) == 4
    for folder, rows in trials.items():
        t = by_ray_id[folder.removeprefix("search-reset_")]
        # Optuna gives a PRUNED trial its last intermediate value (and TPE ranks it below every
        # complete one); the state is what says the trial is partial
        state = optuna.trial.TrialState
        assert t.state == (state.PRUNED if folder in stopped else state.COMPLETE)
        assert t.value == pytest.approx(rows[-1]["auc_test_acc"])
        assert sorted(t.intermediate_values) == [r["training_iteration"] for r in rows]
    best = json.loads((root / "study.json").read_text())["best"]["reset"]
    complete = [rows[-1]["auc_test_acc"] for k, rows in trials.items() if k not in stopped]
    assert best["objective"] == pytest.approx(max(complete))


SLOW = pytest.mark.skipif(
    not os.environ.get("PLASTICITY_SLOW_TESTS"),
    reason="slow (minutes); PLASTICITY_SLOW_TESTS=1 runs it, benchmarks/faults.py runs them all",
)


def launch_and_kill(tmp_path, spec: dict, until, env: dict | None = None) -> Path:
    """Launch ``spec`` in a driver process (its own process group), wait until ``until(root)``
    holds or the driver dies by itself (a fault hook), then SIGKILL the group: the driver and
    the local Ray it started. Returns the study folder."""
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "plasticity.cli", "study", "launch", str(tmp_path / "s.yaml")],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = Path(spec["storage"]) / spec["name"]
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if until(root):
                break
            if proc.poll() is not None:
                assert env, "the study ended before it could be interrupted"
                break
            time.sleep(0.5)
        else:
            pytest.fail("the study made no progress")
    finally:
        # the driver's process group, and every process it started that left the group (a
        # Ray worker that outlived it would go on writing checkpoints into the study)
        fault_tools().kill_tree(proc)
    return root


@functools.cache
def fault_tools():
    """benchmarks/faults.py as a module (not a package: loaded from its file)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
    spec = importlib.util.spec_from_file_location("faults_suite", path)
    faults = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = faults  # its dataclasses look their module up there
    spec.loader.exec_module(faults)
    return faults


def one_done_one_running(experiment: Path):
    def until(root: Path) -> bool:
        results = trial_results(root / experiment).values()
        finished = [r for r in results if r and r[-1]["run_complete"]]
        return bool(finished) and len(list((root / experiment).glob("*/result.json"))) >= 2

    return until


def optuna_states(root: Path, study_name: str) -> list[str]:
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{root / 'optuna.db'}")
    return [t.state.name for t in study.trials]


def resume_here(root: Path) -> None:
    from study.commands import resume

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        resume(str(root))
    finally:
        ray.shutdown()


def killable_spec(tmp_path, trials=3, **extra):
    spec = tiny_spec(
        tmp_path,
        budget={"trials_per_strategy": trials, "eval_seeds": 0},
        setting={**TINY_SETTING, "epochs": 12},
        concurrency=1,
        **extra,
    )
    spec["strategies"].pop("reset")
    return spec


def test_a_copied_study_resumes_on_its_own_data(tmp_path):
    """The saved search holds no path: resuming a copy never writes to the original."""
    import shutil

    root = launch_and_kill(tmp_path, killable_spec(tmp_path), one_done_one_running("trials"))
    copy = tmp_path / "elsewhere" / "t"
    shutil.copytree(root, copy)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    resume_here(copy)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before, "resuming the copy changed the original"
    assert optuna_states(copy, "t.expanded") == ["COMPLETE"] * 3
    done = [r for r in trial_results(copy / "trials").values() if r[-1]["run_complete"]]
    assert len(done) >= 3


@SLOW
def test_a_moved_study_resumes(tmp_path):
    root = launch_and_kill(tmp_path, killable_spec(tmp_path), one_done_one_running("trials"))
    moved = tmp_path / "moved" / "t"
    moved.parent.mkdir()
    root.rename(moved)
    resume_here(moved)
    assert optuna_states(moved, "t.expanded") == ["COMPLETE"] * 3
    assert json.loads((moved / "study.json").read_text())["phases"] == {"search-expanded": "done"}


def test_driver_killed_after_optuna_wrote_and_before_rays_snapshot_resumes(tmp_path):
    """The window of UpdateFinishedTrialError: a trial has ended in optuna.db but Ray's snapshot
    still has it running. The fault hook kills the driver right after the first optuna.db
    write; resume completes with every planned trial COMPLETE once."""
    root = launch_and_kill(
        tmp_path,
        killable_spec(tmp_path, trials=2),
        until=lambda root: False,
        env={"PLASTICITY_FAULT": "view-written"},
    )
    assert optuna_states(root, "t.expanded")[:1] == ["COMPLETE"]
    state = json.loads(next((root / "trials").glob("experiment_state-*.json")).read_text())
    statuses = [json.loads(t[0])["status"] for t in state["trial_data"]]
    assert "TERMINATED" not in statuses, "the snapshot already had the trial ended: no window"
    resume_here(root)
    assert optuna_states(root, "t.expanded") == ["COMPLETE"] * 2


@pytest.mark.parametrize(
    "which,start",
    [("newest", "checkpoint_000000"), pytest.param("all", "start", marks=SLOW)],
)
def test_a_corrupt_checkpoint_is_never_loaded(tmp_path, local_ray, which, start):
    """Checkpoints after tasks 0 and 1; the fault after epoch 0 of task 2 garbles the newest
    (or both) before Ray's retry: the trial goes on from the older one (or the start), says
    which, and its records equal an uninterrupted run's."""
    import torch
    from ray import tune

    from plasticity.loop import run_experiment
    from study.driver.tuner import make_trainable
    from study.plan import base_run
    from study.spec import load_spec
    from study.trainable import to_run_config

    spec = load_spec(tiny_spec(tmp_path, setting={**TINY_SETTING, "restarts": 2}))
    config = {
        "strategy": "reset",
        "checkpoint_every": 0,
        "run": base_run(spec, "reset", 0),
        "fail_once_at": {
            "task": 2,
            "epoch": 0,
            "marker": str(tmp_path / "crashed"),
            "corrupt": str(tmp_path / "fault" / "*" / "checkpoint_*"),
            "which": which,
        },
    }
    tuner = tune.Tuner(
        make_trainable(spec),
        param_space=config,
        run_config=tune.RunConfig(
            name="fault",
            storage_path=str(tmp_path),
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    result = tuner.fit()[0]
    assert (tmp_path / "crashed").exists(), "the fault was not injected"
    assert result.error is None and result.metrics["run_complete"]
    assert result.metrics["restored_from"] == start
    rows = next(iter(trial_results(tmp_path / "fault").values()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = run_experiment(to_run_config(config))
    finally:
        torch.set_num_threads(threads)
    fields = ["task", "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert [r["training_iteration"] for r in rows] == list(range(1, 7))
    assert [[r[f] for f in fields] for r in rows] == [
        [getattr(e, f) for f in fields] for e in expected
    ]


# -- the fault suite (benchmarks/faults.py), fault by fault ---------------------------------------
@pytest.fixture(scope="module")
def fault_suite(tmp_path_factory):
    """benchmarks/faults.py, the folder of its studies and its environment."""
    work = tmp_path_factory.mktemp("faults")
    return fault_tools(), work, {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


@SLOW
@pytest.mark.parametrize(
    "fault",
    # every fault of the suite; copy and move have tests of their own above
    [f for f in SUITE if f not in ("copy", "move")],
)
def test_a_disturbed_study_ends_with_exactly_the_undisturbed_trials(fault_suite, fault):
    """Each fault of the suite, struck at a moment of the study's progress: every planned trial
    complete once (in Ray's snapshot and in optuna.db), no row lost or repeated, records
    bit-identical to the same study's undisturbed (run once per kind of study)."""
    faults, work, env = fault_suite
    if fault.startswith("disk-full") and os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    expected = faults.undisturbed(work, env, fault)
    spec = faults.SPECS.get(fault, faults.SPEC)
    case = faults.Case(fault, work, env, spec=spec)
    faults.FAULTS[fault](case)
    least = {"kill": 5, "kill-new-head": 5, "kill-ladder": 3}.get(fault, 1)  # moments passed
    assert case.injected >= least, case.note  # before a kill are skipped
    assert faults.compare(case.root(), expected) == {
        "complete": len(expected),
        "optuna": faults.searched_trials(spec),
        "lost": 0,
        "dup": 0,
        "differ": 0,
        "checkpoints": 0,  # no finished trial keeps one
    }
    if fault == "corrupt":
        assert case.note == "restored_from ['checkpoint_000000']"
    if fault == "node":  # the trial held at task 1's end went on on the other node
        assert case.note.endswith("held at the end of task 1; restored_from ['checkpoint_000000']")
    if fault == "kill-last-state":  # the window was struck: the last trial ran again
        assert "study.json said done: True" in case.note and "from ['start']" in case.note
    if fault == "orphan":  # the orphan outlived the head, wrote late, and resume said so
        assert "alive at release: True" in case.note and "wrote: ['checkpoint_" in case.note
        assert "may still be running elsewhere" in case.note, case.note
    if fault == "disk-full":  # the driver stopped by itself, with one clear last line
        # exit 1 when a write fails, 2 when Ray then reads back a file the full disk truncated
        # (both seen, on the code before and after issue 20: it depends on what fills first)
        assert case.note[:7] in ("exit 1,", "exit 2,"), case.note
        assert "traceback in stderr: False" in case.note, case.note
        assert "last line: plasticity: error:" in case.note, case.note
