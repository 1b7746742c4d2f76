"""study.json and study.yaml: what a study folder says about itself.

``study.yaml`` is the validated study file, written once at launch. ``study.json`` is::

    kind, version, layout, name, created   what wrote it, and when
    budget_policy  {kind: trials_per_strategy|trials_per_param, values (the study file's
                   numbers), searched: {STRATEGY: parameters searched}, rungs: {STRATEGY:
                   [its rungs]}}: how the rungs of the budget ladder were counted
    phases      {search-STRATEGY: pending|running|done, eval-STRATEGY: ...}
    best        {STRATEGY: {config, objective, trial, trials}}: each search's best whole
                trial at its largest decided rung (``trials``)
    eval        one row per rung and evaluation trial: strategy, seed, trials (the rung),
                trial, objectives (a reused evaluation appears under each rung using it)
    ladder      {STRATEGY: [{trials, status, best, objective, evals, reused_from}]}: one
                entry per rung (:meth:`study.search.StudySearch.ladder_rows`)
    search_order  {STRATEGY: [search trial ids in the order they were suggested]}
    plan        {STRATEGY: [rungs]}, once ``plasticity study extend`` added one (a number:
                a study extended before ladders)
    superseded  studies extended before ladders: evaluations of a best the extension replaced

All but the first line is a view of the search's one record (the searcher in Ray's snapshot,
see :mod:`study.search`), rewritten as trials end by :func:`sync_state` and rebuilt from the
snapshot on resume.
"""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from plasticity import __version__
from plasticity.errors import UserError
from study.plan import phases, searched, spec_rungs
from study.spec import StudySpec, load_spec
from study.store.folder import StudyFolder
from study.trials import SEARCH

KIND = "plasticity-study"
LAYOUT = 2
"""study.json's ``layout``: 2 is one experiment (``trials/``) for the whole study; studies
without it have an experiment per phase (``search-STRATEGY/``, ``eval/``) and resume with the
plasticity that wrote them (``plasticity analyze`` reads both)."""


def new_state(spec: StudySpec) -> dict[str, Any]:
    """study.json of a study about to be launched: every phase pending."""
    return {
        "kind": KIND,
        "version": __version__,
        "layout": LAYOUT,
        "name": spec.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_policy": {
            "kind": spec.budget.policy,
            "values": spec.budget.ladder(1),
            "searched": {s: searched(space) for s, space in spec.strategies.items()},
            "rungs": spec_rungs(spec),
        },
        "phases": {p: "pending" for p in phases(spec)},
        "best": {},
    }


def write_new(folder: StudyFolder, spec: StudySpec, state: dict[str, Any]) -> None:
    """study.yaml and study.json of a new study (after every check before a launch passed)."""
    folder.write_text("study.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    write_state(folder, state)


def write_state(folder: StudyFolder, state: dict[str, Any]) -> None:
    folder.write_text("study.json", json.dumps(state, indent=2))


def open_study(path: str, trusted: bool = False) -> tuple[StudyFolder, StudySpec, dict[str, Any]]:
    """Read a study folder; :class:`UserError` if it is not one. ``trusted``: for commands
    that only read (status, list), study.yaml is taken as validated when it was written,
    without the checks that need the training code (see :func:`study.spec.load_spec`)."""
    folder = StudyFolder(path)
    if not folder.exists("study.json") and folder.exists("records.parquet"):
        raise UserError(
            f"{path} is a run folder, not a study; analyze it: plasticity analyze {path}"
        )
    if not folder.exists("study.json"):
        raise UserError(
            f"{path} is not a study (no study.json); launch one with `plasticity study launch`"
        )
    try:
        state = json.loads(folder.read_text("study.json"))
        raw = yaml.safe_load(folder.read_text("study.yaml"))
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"{path}: study files are unreadable ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise UserError(f"{path} is not a study (study.json has no kind {KIND!r})")
    storage = folder.root.rsplit("/", 1)[0]
    if not isinstance(raw, dict):
        raise UserError(f"{path}: study.yaml does not hold a study")
    # the name it was launched with: the searcher's Optuna studies (saved with Ray's
    # snapshot) and the tracking runs are named after it, whatever the folder is called now
    name = state.get("name")
    if not isinstance(name, str) or not name:
        name = folder.root.rsplit("/", 1)[1]
    spec = load_spec(raw, trusted=trusted, storage=storage, name=name)
    _check_version(path, state, spec)
    _check_plan(path, state, spec)
    state.setdefault("best", {})
    return folder, spec, state


def _check_plan(path: str, state: dict[str, Any], spec: StudySpec) -> None:
    """study.json's ``plan`` (written by extend): per strategy of the study, its rungs, which
    begin with the study file's and grow (or, written before ladders, one whole number no
    smaller than the study file's largest rung)."""
    plan, ladder = state.get("plan", {}), spec_rungs(spec)

    def fits(strategy: str, value: Any) -> bool:
        if strategy not in ladder:
            return False
        if type(value) is int:
            return value >= ladder[strategy][-1]
        return (
            isinstance(value, list)
            and all(type(n) is int for n in value)
            and value[: len(ladder[strategy])] == ladder[strategy]
            and value == sorted(set(value))
        )

    if not isinstance(plan, dict) or not all(fits(s, v) for s, v in plan.items()):
        raise UserError(
            f"{path}: study.json's plan {plan!r} is not the rungs of search trials (growing, "
            f"starting with the study file's {ladder}) of this study's strategies"
        )


def _check_version(path: str, state: dict[str, Any], spec: StudySpec) -> None:
    """A study.json this plasticity cannot continue: another layout, or other phases."""
    written = f"written by plasticity {state.get('version', '?')}, this is {__version__}"
    if state.get("layout", 1) != LAYOUT:
        raise UserError(
            f"{path}: study.json is of layout {state.get('layout', 1)} (an experiment per "
            f"phase; {written}, which runs layout {LAYOUT}); resume it with that version "
            "(plasticity analyze reads both)"
        )
    phases_now = state.get("phases")
    if not isinstance(phases_now, dict) or set(phases_now) != set(phases(spec)):
        raise UserError(
            f"{path}: study.json's phases {sorted(phases_now or [])} are not this study's "
            f"{phases(spec)} ({written}); resume it with that version"
        )


def sync_state(folder: StudyFolder, state: dict[str, Any], search: Any) -> None:
    """Write study.json from the searcher (a :class:`study.search.StudySearch`): each phase's
    status, each strategy's best and the evaluation's objectives."""
    state["phases"] = search.phases()
    state["best"] = search.bests()
    state["eval"] = search.eval_rows()
    state["ladder"] = search.ladder_rows()
    state["search_order"] = {s: search.trials_of(s, SEARCH) for s in search.order}
    if search.superseded:
        state["superseded"] = list(search.superseded)
    write_state(folder, state)
