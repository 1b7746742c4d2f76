"""``plasticity study status``, ``list`` and ``presets``: what studies hold, read-only.

No Ray, no torch, no pandas, so it answers at once: ``study.json`` (phases, bests) and, in every
experiment folder of the study, Ray's newest experiment snapshot (each trial's status, config
and last result), which are the files a resume restores from. So status is right for a running,
interrupted or finished study, on a local path or a URI, and does not depend on how the study
lays out its experiments: trials are grouped by the strategy and phase their own config names.

A trial is *finished* when its last result says it ran every epoch (``run_complete``), *stopped*
when ASHA ended it early (Optuna holds it as PRUNED), *failed* after its retries, *running* when
the snapshot last saw it running (for an interrupted study: it continues from its newest
checkpoint on resume, or from the start if it has none), *pending* when created but not started;
trials of the plan that Ray has not created yet are *to do*.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow.fs as pafs

from analysis.columns import searched_values
from plasticity.errors import UserError
from study.plan import budget_text, eval_counts, planned_trials, rungs, search_plan
from study.store.checkpoints import leases_text, live_leases
from study.store.folder import StudyFolder
from study.store.snapshot import newest_snapshot, newest_whole
from study.store.state import open_study
from study.trials import EVAL, RUN_COMPLETE, SEARCH, best_trial, label

STATES = ("finished", "running", "pending", "stopped", "failed")


@dataclass
class Trial:
    strategy: str
    phase: str  # "search" or "eval"
    state: str  # one of STATES
    objective: float
    run: dict[str, Any]
    started: float
    last: float
    trial_id: str = ""


@dataclass
class StrategyStatus:
    strategy: str
    planned: dict[str, int]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    best: float = math.nan
    params: dict[str, Any] = field(default_factory=dict)
    superseded: int = 0
    """evaluation trials of an earlier best, replaced when the study was extended (before
    ladders)"""
    rungs: list[int] = field(default_factory=list)
    evaluated: list[int] = field(default_factory=list)
    """Rungs whose evaluation ran whole (or that reuse one that did)."""


def trial_state(status: str, last_result: dict[str, Any]) -> str:
    """Ray's trial status and last result → one of :data:`STATES`."""
    if status == "TERMINATED":
        return "finished" if last_result.get(RUN_COMPLETE) else "stopped"
    if status == "ERROR":
        return "failed"
    if status == "PENDING":
        return "pending"
    return "running"  # RUNNING, PAUSED: the snapshot saw it under way


def read_trials(folder: Any, metric: str) -> list[Trial]:
    """Every trial of every experiment folder in the study, from Ray's newest snapshots."""
    trials = []
    for info in folder.fs.get_file_info(pafs.FileSelector(folder.path)):
        if info.type != pafs.FileType.Directory:
            continue
        newest = newest_snapshot(folder.fs, info.path, "experiment_state-") or info.path
        where = f"{folder.root}/{info.base_name}/{newest.rsplit('/', 1)[-1]}"
        try:
            used, saved = newest_whole(folder.fs, info.path) or (newest, [])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{where} is unreadable (truncated?)") from None
        if used != newest:
            print(
                f"note: {where} is unreadable (truncated?): showing the newest whole snapshot",
                file=sys.stderr,
            )
        for t in saved or []:
            trials.append(
                Trial(
                    trial_id=t.trial_id,
                    strategy=t.config.get("strategy", "?"),
                    phase=t.config.get("phase", "?"),
                    state=trial_state(t.status, t.last_result),
                    objective=float(t.last_result.get(metric, math.nan)),
                    run=t.config.get("run", {}),
                    started=float(t.start_time or math.nan),
                    last=float(t.last_result_time or math.nan),
                )
            )
    return trials


def strategy_status(spec: Any, state: dict[str, Any], trials: list[Trial]) -> list[StrategyStatus]:
    """Per strategy: trial counts per phase and state against the plan; the best finished
    search trial's objective and searched parameters (:func:`study.trials.best_trial`)."""
    planned = planned_trials(search_plan(spec, state), eval_counts(spec, state))
    superseded = set(state.get("superseded", []))
    finished = {t.trial_id for t in trials if t.state == "finished"}
    ladder = rungs(spec, state)
    out = []
    for s in spec.strategies:
        row = StrategyStatus(s, {p: planned.get(label(p, s), 0) for p in (SEARCH, EVAL)})
        row.rungs = ladder[s]
        row.evaluated = [
            e["trials"]
            for e in (state.get("ladder") or {}).get(s, [])
            if e.get("status") == "done" and e["evals"] and set(e["evals"]) <= finished
        ]
        for phase in (SEARCH, EVAL):
            mine = [
                t
                for t in trials
                if t.strategy == s and t.phase == phase and t.trial_id not in superseded
            ]
            row.counts[phase] = {k: sum(t.state == k for t in mine) for k in STATES}
        row.superseded = sum(t.strategy == s and t.trial_id in superseded for t in trials)
        done = {
            t.trial_id: t
            for t in trials
            if t.strategy == s and t.phase == SEARCH and t.state == "finished"
        }
        best = best_trial((i, t.objective) for i, t in done.items())
        if best is not None:
            row.best = done[best].objective
            row.params = searched_values(spec.strategies[s], done[best].run, s)
        elif s in state.get("best", {}):
            row.best = state["best"][s].get("objective", math.nan)
        out.append(row)
    return out


def _count(counts: dict[str, int], planned: int) -> str:
    seen = sum(counts.values())
    parts = [f"{counts['finished']}/{planned} done"]
    parts += [f"{counts[k]} {k}" for k in STATES[1:] if counts[k]]
    if planned > seen:
        parts.append(f"{planned - seen} to do")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _created(state: dict[str, Any]) -> float:
    try:
        return datetime.strptime(state.get("created", ""), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return math.nan


def overall(state: dict[str, Any], trials: list[Trial]) -> str:
    """``finished``, ``not started`` or ``running or interrupted``."""
    phases = state.get("phases", {})
    if phases and all(v == "done" for v in phases.values()):
        return "finished"
    if all(v == "pending" for v in phases.values()) and not trials:
        return "not started"
    return "running or interrupted"


def status_text(path: str) -> str:
    """The report ``plasticity study status PATH`` prints."""
    folder, spec, state = open_study(path, trusted=True)
    trials = read_trials(folder, spec.metric)
    last = max((t.last for t in trials if not math.isnan(t.last)), default=math.nan)
    created = _created(state)
    lines = [
        f"study {spec.name!r} at {folder.root}: {overall(state, trials)}",
        f"  created {state.get('created', '?')} by plasticity {state.get('version', '?')}; "
        f"wall time so far {_duration(last - created)}; last report "
        f"{_duration(time.time() - last)} ago",
        "  phases: " + ", ".join(f"{p} {v}" for p, v in state.get("phases", {}).items()),
        f"  metric: {spec.metric} (max); budget: {budget_text(spec, state)}",
    ]
    leases = live_leases(folder.fs, folder.path)
    if leases:
        lines.append(f"  {leases_text(leases)}")
    rows = strategy_status(spec, state, trials)
    width = max(len(r.strategy) for r in rows)
    for r in rows:
        best = "-" if math.isnan(r.best) else f"{r.best:.4f}"
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(r.params.items()))
        lines.append(
            f"  {r.strategy:{width}s}  search {_count(r.counts['search'], r.planned['search'])}"
            + (f"; evaluated at {_and(r.evaluated)}" if r.evaluated else "")
            + f"; eval {_count(r.counts['eval'], r.planned['eval'])}"
            + (f" (+{r.superseded} superseded)" if r.superseded else "")
            + f"; best {best}"
            + (f" ({params})" if params else "")
        )
    return "\n".join(lines)


def _and(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def list_text(storage: str) -> str:
    """One line per study under ``storage`` (``plasticity study list``)."""
    base = StudyFolder(storage)
    info = base.fs.get_file_info(base.path)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"no such storage: {storage}")
    if info.type != pafs.FileType.Directory:
        raise UserError(f"{storage} is a file, not a folder of studies")
    lines = []
    for entry in sorted(base.fs.get_file_info(pafs.FileSelector(base.path)), key=_name):
        if entry.type != pafs.FileType.Directory:
            continue
        root = f"{base.root}/{entry.base_name}"
        if not StudyFolder(root).exists("study.json"):
            continue
        try:
            folder, spec, state = open_study(root, trusted=True)
            trials = read_trials(folder, spec.metric)
        except UserError as e:
            lines.append(f"{entry.base_name}: unreadable ({e})")
            continue
        superseded = set(state.get("superseded", []))
        planned = sum(planned_trials(search_plan(spec, state), eval_counts(spec, state)).values())
        done = sum(t.state == "finished" and t.trial_id not in superseded for t in trials)
        phases = state["phases"]
        lines.append(
            f"{entry.base_name}: {overall(state, trials)}; "
            f"{sum(v == 'done' for v in phases.values())}/{len(phases)} phases, "
            f"{done}/{planned} trials finished; {spec.setting.model}/{spec.setting.dataset} "
            f"{spec.setting.objective}, {len(spec.strategies)} strategies; "
            f"created {state.get('created', '?')}"
        )
    return "\n".join(lines) if lines else f"no studies in {storage}"


def _name(info: pafs.FileInfo) -> str:
    return info.base_name


def presets_text() -> str:
    """One line per shipped study (``plasticity study presets``)."""
    from study.spec import load_spec, preset_names, preset_path

    lines = []
    for name in preset_names():
        spec = load_spec(preset_path(name), trusted=True)  # shipped, and checked by the tests
        s, budget = spec.setting, spec.budget
        per = "searched parameter" if budget.policy == "trials_per_param" else "strategy"
        trials = ", ".join(map(str, budget.ladder(1)))
        lines.append(
            f"{name:26s} {s.model}/{s.dataset} {s.objective}, {s.restarts} restarts, "
            f"{s.optimizer} β2={s.beta2} wd={s.weight_decay}, "
            f"{len(spec.strategies)} strategies x {trials} trials per {per}, "
            f"{budget.eval_seeds} eval seeds"
        )
    return "\n".join(lines)
