"""What a study will do, from its file (and study.json's ``plan``, once extended): its phases,
the trials planned in each, the run every trial of a strategy starts from, the evaluation's
configs, and the plan ``plasticity study validate`` prints (search spaces, trials and epochs
per phase, how many trials the cluster holds at once).

Pure functions of a :class:`~study.spec.StudySpec` (and of Ray's node list for the cluster):
nothing here starts Ray or touches storage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from study.space import optuna_name
from study.spec import Range, StudySpec
from study.trials import EVAL, NO_WHOLE_TRIAL, SEARCH, label, unlabel


def searched(space: Mapping[str, Any]) -> int:
    """How many parameters a strategy's search space searches (ranges and lists of choices)."""
    return sum(isinstance(v, (Range, list)) for v in space.values())


def spec_rungs(spec: StudySpec) -> dict[str, list[int]]:
    """Each strategy's rungs as the study file sets them (:meth:`study.budget.Budget.ladder`)."""
    return {s: spec.budget.ladder(searched(space)) for s, space in spec.strategies.items()}


def rungs(spec: StudySpec, state: Mapping[str, Any] | None = None) -> dict[str, list[int]]:
    """Each strategy's rungs: the study file's, and one more per ``plasticity study extend``
    (study.json's ``plan``: the whole list per strategy; a single number is a study extended
    before ladders, whose search is one rung of that many trials)."""
    out = spec_rungs(spec)
    for strategy, plan in ((state or {}).get("plan") or {}).items():
        out[strategy] = [plan] if isinstance(plan, int) else list(plan)
    return out


def search_plan(spec: StudySpec, state: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Search trials planned per strategy: its largest rung."""
    return {s: r[-1] for s, r in rungs(spec, state).items()}


def planned_trials(search: Mapping[str, int], evals: Mapping[str, int]) -> dict[str, int]:
    """Trials planned per phase, in study.json's order: ``search-S`` (``search[S]`` trials),
    then ``eval-S`` (``evals[S]`` trials; no phase where that is 0)."""
    out = {label(SEARCH, s): n for s, n in search.items()}
    out.update({label(EVAL, s): n for s, n in evals.items() if n})
    return out


def eval_counts(spec: StudySpec, state: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Evaluation trials per strategy: one per evaluation seed at every rung, except where
    study.json's ``ladder`` says a rung reuses the evaluation of the rung before (its best did
    not change) or has no whole trial to evaluate; an upper bound until every rung is decided."""
    n, ladder = spec.budget.eval_seeds, (state or {}).get("ladder") or {}
    out = {}
    for s, ks in rungs(spec, state).items():
        known = {e.get("trials"): e for e in ladder.get(s, [])}
        runs = [
            k
            for k in ks
            if known.get(k, {}).get("reused_from") is None
            and known.get(k, {}).get("status") != NO_WHOLE_TRIAL
        ]
        out[s] = n * len(runs)
    return out


def phases(spec: StudySpec) -> list[str]:
    """study.json's phases: each strategy's search, then (with evaluation) its evaluation."""
    return list(planned_trials(search_plan(spec), eval_counts(spec)))


def budget_text(spec: StudySpec, state: Mapping[str, Any] | None = None) -> str:
    """The budget in one line: the rungs (per strategy when they differ) and, where the
    strategies search different numbers of parameters with the same trials, the warning
    that the comparison is then made at that budget."""
    ladder = rungs(spec, state)
    counts = {s: searched(space) for s, space in spec.strategies.items()}
    if len({tuple(r) for r in ladder.values()}) == 1:
        text = f"{_trials_text(next(iter(ladder.values())))} per strategy"
    else:
        text = "; ".join(f"{s} {_trials_text(r)}" for s, r in ladder.items())
    if spec.budget.policy == "trials_per_param":
        return f"{text} (trials_per_param {spec.budget.trials_per_param} x searched parameters)"
    if len(set(counts.values())) > 1:
        parts = ", ".join(f"{s} {n}" for s, n in counts.items())
        text += (
            f"; the strategies search different numbers of parameters ({parts}): with equal "
            "trials, the ones searching more are compared at less search per parameter"
        )
    return text


def search_kind(spec: StudySpec, strategy: str, trials: int) -> str:
    """How ``strategy``'s search chose its first ``trials`` trials (TPE's random start-up is
    sized to the study file's largest rung); a strategy that fixes every parameter runs its
    one configuration."""
    if not searched(spec.strategies[strategy]):
        return "fixed configuration (nothing searched)"
    return spec.budget.search_kind(trials, spec_rungs(spec)[strategy][-1])


def base_run(spec: StudySpec, strategy: str, seed: int) -> dict[str, Any]:
    """The whole run of one strategy's trial before its searched values go in (see
    :func:`study.space.resolve_run`); validated by building it (which imports the training
    code)."""
    from plasticity.config import RunConfig

    run = RunConfig(**spec.setting.model_dump(), strategies=(strategy,), seed=seed, device="cpu")
    return {**run.to_dict(), "device": "auto"}  # the trial picks its device where it runs


def trial_constants(spec: StudySpec, strategy: str, phase: str) -> dict[str, Any]:
    """What every trial config of ``strategy`` and ``phase`` holds besides its ``run``."""
    return {"strategy": strategy, "phase": phase, "checkpoint_every": spec.checkpoint_every}


def eval_configs(spec: StudySpec, best: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every best configuration on every fresh seed (``budget.eval_seed_values``)."""
    return [
        {**trial_constants(spec, s, EVAL), "run": {**best[s]["config"]["run"], "seed": seed}}
        for s in spec.strategies
        for seed in spec.budget.eval_seed_values()
    ]


def eval_templates(spec: StudySpec) -> dict[str, list[dict[str, Any]]]:
    """Per strategy, :func:`eval_configs` with no best run yet: each config's ``run`` holds
    only what the evaluation sets (the seed); the searcher lays it over the strategy's best
    run once its search has ended."""
    configs = eval_configs(spec, {s: {"config": {"run": {}}} for s in spec.strategies})
    return {s: [c for c in configs if c["strategy"] == s] for s in spec.strategies}


def describe_param(value: Any) -> str:
    """One searchable parameter as text: a range, a set of choices or a fixed value."""
    if isinstance(value, Range):
        kind = "integer" if value.int else "log-uniform" if value.log else "uniform"
        if value.int and value.log:
            kind = "log-integer"
        return f"{kind} [{value.low:g}, {value.high:g}]"
    if isinstance(value, list):
        return "one of " + ", ".join(map(str, value))
    return f"fixed {value}"


def study_slots_text(spec: StudySpec) -> str:
    """How many trials the study runs at once at most, from its own settings (the cluster may
    hold fewer): each strategy's ``concurrency``, side by side, within the optional cap."""
    n = len(spec.strategies) * spec.concurrency
    text = f"up to {n} trial(s) at once ({spec.concurrency} per strategy"
    if spec.max_concurrent_trials is not None and spec.max_concurrent_trials < n:
        text = f"up to {spec.max_concurrent_trials} trial(s) at once (the study's cap; "
        text += f"{spec.concurrency} per strategy"
    return text + ")"


def space_rows(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(strategy, parameter, description) for every parameter of every strategy's space."""
    rows = []
    for strategy, space in spec.strategies.items():
        for key, value in space.items():
            text = describe_param(value)
            if key == "ramp" and "step" in _options(space.get("schedule")):
                text += f" (called {optuna_name(key, 'step')} for step schedules)"
            rows.append((strategy, key, text))
    return rows


def epochs_per_trial(spec: StudySpec, strategy: str) -> tuple[int, int]:
    """The fewest and most epochs one trial of ``strategy`` trains: (restarts + 1) tasks x the
    epochs per task (searched or fixed)."""
    value = spec.strategies[strategy].get("epochs", spec.setting.epochs)
    options = [value.low, value.high] if isinstance(value, Range) else _options(value)
    tasks = spec.setting.restarts + 1
    return tasks * int(min(options)), tasks * int(max(options))


def phase_rows(spec: StudySpec) -> list[dict[str, Any]]:
    """Per phase: its name, planned trials, epochs (low, high) and how its trials are chosen.
    With ``scheduler: asha`` the epochs are an upper bound (trials may be stopped early)."""
    seeds, ladder = spec.budget.eval_seed_values(), rungs(spec)
    rows = []
    for phase, n in planned_trials(search_plan(spec), eval_counts(spec)).items():
        kind, strategy = unlabel(phase)
        lo, hi = epochs_per_trial(spec, strategy)
        if kind == SEARCH:
            trials, how = (n, n), search_kind(spec, strategy, n)
        else:  # once per rung, where the best changed: from one rung's worth to all of them
            trials, how = (len(seeds), n), f"its best at {_trials_text(ladder[strategy])}"
            how += f" on seeds {_seed_text(seeds)}"
        rows.append(
            {"phase": phase, "trials": trials, "epochs": (trials[0] * lo, n * hi), "how": how}
        )
    return rows


def _trials_text(ladder: list[int]) -> str:
    """``4 trials``, ``4, 8 and 16 trials``."""
    numbers = [str(n) for n in ladder]
    head = ", ".join(numbers[:-1])
    return f"{head + ' and ' if head else ''}{numbers[-1]} trials"


def fits(nodes: list[dict[str, Any]], cpu: float, gpu: float) -> int:
    """How many trials of ``cpu`` CPUs and ``gpu`` GPUs the alive nodes of ``ray.nodes()``
    hold at once."""
    total = 0
    for node in nodes:
        have = node.get("Resources", {}) if node.get("Alive") else {}
        k = math.floor(have.get("CPU", 0) / cpu + 1e-9)
        if gpu > 0:
            k = min(k, math.floor(have.get("GPU", 0) / gpu + 1e-9))
        total += k
    return total


def plan_text(spec: StudySpec) -> str:
    """The plan as printed by ``plasticity study validate``."""
    s = spec.setting
    lr = "as in the paper" if s.lr is None else f"{s.lr:g}"
    lines = [
        f"study {spec.name}: {s.model} on {s.dataset}, {s.objective}, {s.restarts + 1} tasks "
        f"(task 0 + {s.restarts} restarts) x {s.epochs} epochs, batch {s.batch_size}, "
        f"{s.optimizer}, lr {lr}",
        f"objective: {spec.metric} (maximised); scheduler {spec.budget.scheduler}"
        + (
            f" (grace {spec.budget.grace_epochs} restart epochs)"
            if spec.budget.scheduler == "asha"
            else ""
        )
        + f"; {study_slots_text(spec)}, each {spec.resources.cpu:g} CPU + "
        f"{spec.resources.gpu:g} GPU",
        f"budget: {budget_text(spec)}",
        f"phases: {', '.join(phases(spec))}",
        "",
        "search spaces (one Optuna study per strategy):",
    ]
    width = max(len(k) for k in spec.strategies)
    keys = max(len(k) for _, k, _ in space_rows(spec))
    last = None
    for strategy, key, text in space_rows(spec):
        name = strategy if strategy != last else ""
        lines.append(f"  {name:{width}}  {key:{keys}}  {text}")
        last = strategy
    lines += ["", _table(phase_rows(spec))]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> str:
    body = [("phase", "trials", "epochs", "how")]
    for r in rows:
        body.append((r["phase"], _range(*r["trials"]), _range(*r["epochs"]), r["how"]))
    total = [_range(*(sum(r[k][i] for r in rows) for i in (0, 1))) for k in ("trials", "epochs")]
    body.append(("total", *total, ""))
    widths = [max(len(row[i]) for row in body) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body
    )


def _range(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _seed_text(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _options(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
