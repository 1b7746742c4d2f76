"""Study folders in Ray Tune's on-disk format with made-up numbers, for tests and benchmarks.

Writes what the analysis reads: ``study.json``, ``study.yaml``, and per experiment an
``experiment_state-*.json`` naming the trials plus one folder per trial with ``params.json`` and
``result.json`` (one JSON report per line). Options reproduce what a resumed study leaves:
repeated ``training_iteration`` reports and orphan trial folders. ``layout=2`` (the default) is
the driver's: one experiment ``trials/`` with folders ``PHASE-STRATEGY_ID``; ``layout=1`` the
earlier one: ``search-STRATEGY/`` and ``eval/``, folders ``STRATEGY_ID``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

SETTING = {
    "dataset": "mnist-5k",
    "model": "mlp",
    "objective": "class_shuffle",
    "restarts": 2,
    "epochs": 3,
    "batch_size": 8192,
}


def trial_config(strategy: str, phase: str, run: dict[str, Any], seed: int) -> dict[str, Any]:
    """A trial config as the driver makes it (``run`` is the trial's run; see study.space)."""
    run = {**run, "strategies": [strategy], "seed": seed, "strategy_params": {strategy: {}}}
    return {"strategy": strategy, "phase": phase, "checkpoint_every": 0, "run": run}


def accuracy(strategy: str, seed: int, task: int, epoch: int) -> float:
    """A made-up learning curve: reset learns fastest, continuous slowest after task 0."""
    speed = {"reset": 0.3, "expanded": 0.2, "continuous": 0.1}.get(strategy, 0.15)
    if task == 0:
        speed = 0.3
    return round(min(0.95, 0.1 + speed * (epoch + 1) + 0.001 * (seed % 1000)), 6)


def write_trial(
    folder: Path,
    trial_id: str,
    config: dict[str, Any],
    epochs: int,
    tasks: int,
    acc: Callable[[str, int, int, int], float] = accuracy,
    repeat_from: int | None = None,
    diag: Callable[[str, int, int, int], dict[str, float]] | None = None,
) -> None:
    """One trial folder; ``repeat_from`` re-reports iterations from there on (a restore);
    ``diag(strategy, seed, task, epoch)``: the report's diagnostics (``diag_*`` keys)."""
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(config))
    run = config.get("trial", config)["run"]
    strategy, seed = run["strategies"][0], run["seed"]
    rows = []
    for task in range(tasks):
        for epoch in range(epochs):
            it = task * epochs + epoch + 1
            a = acc(strategy, seed, task, epoch)
            rows.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "task": task,
                    "epoch": epoch,
                    "step": it,
                    "train_loss": 2 - a,
                    "train_acc": a,
                    "test_loss": 2 - a,
                    "test_acc": a,
                    "alpha": float("nan"),
                    "training_iteration": it,
                    "trial_id": trial_id,
                    "run_complete": it == tasks * epochs,
                    "config": config,
                    **(diag(strategy, seed, task, epoch) if diag else {}),
                }
            )
    if repeat_from is not None:
        rows = rows[: len(rows) - 1] + rows[repeat_from - 1 :]  # died before the last report
    (folder / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def write_experiment(
    root: Path,
    name: str,
    trials: list[tuple[str, dict[str, Any]]],
    epochs: int,
    tasks: int,
    orphans: int = 0,
    repeat: dict[str, int] | None = None,
    phase_in_name: bool = False,
    accs: dict[str, Callable[[str, int, int, int], float]] | None = None,
    acc: Callable[[str, int, int, int], float] = accuracy,
    diag: Callable[[str, int, int, int], dict[str, float]] | None = None,
) -> None:
    """One Ray Tune experiment folder; ``accs``: a trial's own learning curve (default
    ``acc``); ``diag``: every trial's diagnostics (see :func:`write_trial`)."""
    exp = root / name
    exp.mkdir(parents=True)
    state = {
        "trial_data": [
            [json.dumps({"trial_id": tid, "status": "TERMINATED", "config": cfg}), "{}"]
            for tid, cfg in trials
        ],
        "runner_data": {},
        "stats": {},
    }
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    for tid, cfg in trials:
        trial = cfg.get("trial", cfg)
        kind = f"{trial['phase']}-{trial['strategy']}" if phase_in_name else trial["strategy"]
        write_trial(
            exp / f"{kind}_{tid}",
            tid,
            cfg,
            epochs,
            tasks,
            acc=(accs or {}).get(tid, acc),
            repeat_from=(repeat or {}).get(tid),
            diag=diag,
        )
    for i in range(orphans):
        tid, cfg = trials[0]
        write_trial(exp / f"orphan_{i}", f"orphan{i}", cfg, epochs, tasks)


def make_study(
    root: Path,
    strategies: tuple[str, ...] = ("reset", "expanded"),
    trials_per_strategy: int = 2,
    eval_seeds: int = 2,
    orphans: int = 0,
    repeat: bool = False,
    setting: dict[str, Any] | None = None,
    scenario: dict[str, Any] | None = None,
    layout: int = 2,
    rungs: tuple[int, ...] | None = None,
    gain: Callable[[str, int], float] | None = None,
    reuse: frozenset[tuple[str, int]] = frozenset(),
    acc: Callable[[str, int, int, int], float] = accuracy,
    diag: Callable[[str, int, int, int], dict[str, float]] | None = None,
) -> Path:
    """A finished study folder at ``root``; returns it. With ``rungs``, a study with a budget
    ladder as the driver writes it (layout 2): ``max(rungs)`` search trials per strategy, each
    rung's evaluation on the same seeds, its accuracy raised by ``gain(strategy, rung)``, and
    a rung in ``reuse`` (``(strategy, rung)``) re-using the rung before's evaluation trials
    (its best did not change). The i-th search trial's accuracy is raised by ``0.01 * (i % 3)``.
    Without rungs, ``acc(strategy, seed, task, epoch)`` is every trial's accuracy (default
    :func:`accuracy`) and ``diag`` its diagnostics (``diag_*`` keys; none by default).
    """
    if rungs is not None:
        return _ladder_study(root, strategies, eval_seeds, setting, scenario, rungs, gain, reuse)
    setting = _write_spec(root, strategies, setting, scenario)
    tasks, epochs = setting["restarts"] + 1, setting["epochs"]
    ids = (f"{n:08x}" for n in range(1, 10**6))
    search, best = {}, {}
    for s in strategies:
        search[s] = [
            (next(ids), trial_config(s, "search", {**setting, "lr": 10 ** -(2 + i % 3)}, seed=0))
            for i in range(trials_per_strategy)
        ]
        best[s] = {"config": search[s][0][1], "objective": 0.5}
    evals = [
        (next(ids), trial_config(s, "eval", best[s]["config"]["run"], 1000 + k))
        for s in strategies
        for k in range(eval_seeds)
    ]
    repeated = {trials[0][0]: epochs + 1 for trials in search.values()} if repeat else None
    phases = {f"search-{s}": "done" for s in strategies}
    if layout == 1:
        for s in strategies:
            write_experiment(
                root, f"search-{s}", search[s], epochs, tasks, orphans=orphans, repeat=repeated,
                acc=acc, diag=diag,
            )  # fmt: skip
        if evals:
            trials = [(t, {"trial": c}) for t, c in evals]
            write_experiment(root, "eval", trials, epochs, tasks, acc=acc, diag=diag)
            phases["eval"] = "done"
    else:
        trials = [t for s in strategies for t in search[s]] + evals
        write_experiment(
            root, "trials", trials, epochs, tasks, orphans, repeat=repeated, phase_in_name=True,
            acc=acc, diag=diag,
        )  # fmt: skip
        phases.update({f"eval-{s}": "done" for s in strategies if eval_seeds})
    state = {"kind": "plasticity-study", "name": root.name, "phases": phases, "best": best}
    if layout != 1:
        state["layout"] = layout
    (root / "study.json").write_text(json.dumps(state))
    return root


def _write_spec(
    root: Path,
    strategies: tuple[str, ...],
    setting: dict[str, Any] | None,
    scenario: dict[str, Any] | None,
    budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The study folder and its study.yaml; returns the whole setting."""
    setting = {**SETTING, **(setting or {})}
    root.mkdir(parents=True)
    spec: dict[str, Any] = {"name": root.name, "setting": setting, "metric": "auc_test_acc"}
    if budget is not None:
        spec["budget"] = budget
    spec["strategies"] = {s: {"lr": {"low": 1e-4, "high": 1e-2, "log": True}} for s in strategies}
    if scenario is not None:
        spec["scenario"] = scenario
    (root / "study.yaml").write_text(yaml.safe_dump(spec))
    return setting


def _raised(by: float) -> Callable[[str, int, int, int], float]:
    return lambda strategy, seed, task, epoch: round(accuracy(strategy, seed, task, epoch) + by, 6)


def _ladder_study(
    root: Path,
    strategies: tuple[str, ...],
    eval_seeds: int,
    setting: dict[str, Any] | None,
    scenario: dict[str, Any] | None,
    rungs: tuple[int, ...],
    gain: Callable[[str, int], float] | None,
    reuse: frozenset[tuple[str, int]],
) -> Path:
    setting = _write_spec(root, strategies, setting, scenario, {"trials_per_strategy": list(rungs)})
    tasks, epochs = setting["restarts"] + 1, setting["epochs"]
    ids = (f"{n:08x}" for n in range(1, 10**6))
    trials, accs, order, ladder, best = [], {}, {}, {}, {}
    for s in strategies:
        order[s] = []
        for i in range(max(rungs)):
            tid = next(ids)
            run = {**setting, "lr": 10 ** -(2 + i % 3)}
            trials.append((tid, trial_config(s, "search", run, seed=0)))
            accs[tid] = _raised(0.01 * (i % 3))
            order[s].append(tid)
        ladder[s] = []
        for k in rungs:
            if (s, k) in reuse and ladder[s]:
                before = ladder[s][-1]
                ladder[s].append({**before, "trials": k, "reused_from": before["trials"]})
                continue
            evals = []
            for seed in range(1000, 1000 + eval_seeds):
                tid = next(ids)
                config = {**trial_config(s, "eval", trials[-1][1]["run"], seed), "rung": k}
                trials.append((tid, config))
                accs[tid] = _raised(gain(s, k) if gain else 0.0)
                evals.append(tid)
            entry = {"trials": k, "status": "done", "best": order[s][k - 1], "objective": 0.5}
            ladder[s].append({**entry, "evals": evals, "reused_from": None})
        best[s] = {"config": trial_config(s, "search", setting, 0), "objective": 0.5}
    write_experiment(root, "trials", trials, epochs, tasks, phase_in_name=True, accs=accs)
    phases = {f"{p}-{s}": "done" for s in strategies for p in ("search", "eval")}
    state = {
        "kind": "plasticity-study",
        "layout": 2,
        "name": root.name,
        "budget_policy": {
            "kind": "trials_per_strategy",
            "values": list(rungs),
            "searched": {s: ["lr"] for s in strategies},
            "rungs": {s: list(rungs) for s in strategies},
        },
        "phases": phases,
        "best": best,
        "ladder": ladder,
        "search_order": order,
    }
    (root / "study.json").write_text(json.dumps(state))
    return root
