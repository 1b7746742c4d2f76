"""The report's content, computed from loaded results: tables, verdicts, notes and the data of
every figure, as one :class:`Report`. :mod:`analysis.render` writes it out (CSV, Markdown,
figures; :func:`analysis.render.write_report` does both): it imports this module, never the
other way."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis import budget, scenarios, tasks
from analysis.budget import Anytime
from analysis.columns import searched_values
from analysis.load import Loaded
from analysis.scenarios import ScenarioResults
from analysis.stats import (
    METRICS,
    bootstrap_ci,
    paired_difference_ci,
    per_restart,
    per_seed_objectives,
)
from analysis.tasks import LongSequence
from analysis.verdicts import (
    MIN_VERDICT_SEEDS,
    SETTING,
    Tally,
    Verdict,
    ladder_verdicts,
    primary_metric,
    setting_name,
    tallies,
    verdicts,
    with_ladder,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SettingView:
    """The data of one setting's figures."""

    title: str
    """``model/dataset/objective``; also names the figure files (``/`` → ``_``)."""
    epochs: pd.DataFrame
    """The setting's comparison epochs (tidy rows): learning curves and α."""
    restarts: pd.DataFrame
    """Its rows of :func:`analysis.stats.per_restart`."""
    test_meaningful: bool
    """False for random labels, where test loss and accuracy carry no signal."""
    alpha: bool
    """Whether an expanded trial recorded α."""
    diagnostics: pd.DataFrame
    """Per (strategy, trial, task): the mean of each recorded ``diag_*`` column; empty if none."""


@dataclass(frozen=True, eq=False)
class StudyView:
    """The data of one study's search figures and importances."""

    name: str
    metric: str
    trials: pd.DataFrame
    """Per search trial: its objectives and the searched parameters it was given."""
    params: tuple[str, ...]
    """Searched parameters that some trial has a value for (the scatter's panels)."""
    importances: pd.DataFrame
    """Optuna's importances (``strategy``, ``param``, ``importance``); empty if unavailable."""


@dataclass(frozen=True, eq=False)
class Report:
    """Everything ``report.md`` says and shows, before anything is written."""

    records: pd.DataFrame
    """The tidy table of every loaded epoch (written as ``records.parquet``)."""
    compared_trials: int
    """How many of its trials the comparisons use."""
    running: tuple[str, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    """How the comparison was made when it departs from the default (no evaluation phase)."""
    summary: pd.DataFrame
    """:func:`summary_table`."""
    per_restart: pd.DataFrame
    advantage: pd.DataFrame
    """:func:`advantage_table`; empty when no setting has reset and another strategy."""
    tallies: tuple[Tally, ...]
    verdicts: tuple[Verdict, ...]
    settings: tuple[SettingView, ...]
    study_roots: tuple[str, ...]
    best_configs: pd.DataFrame
    """Per study and strategy: the best search trial's objective and parameters."""
    studies: tuple[StudyView, ...]
    """Studies with search trials."""
    seed: int
    reps: int
    min_verdict_seeds: int
    """:data:`MIN_VERDICT_SEEDS` when the report was built (the renderer states it)."""
    band_rng_state: dict[str, Any]
    """The bootstrap generator's state after the tables: the figures' bands continue it, so
    tables and figures come from one stream seeded with ``seed``."""
    scenarios: ScenarioResults | None = None
    """Scenario directions and the aggregate across scenarios (studies with a scenario
    header, or several studies), at every rung of the budget ladder."""
    ladder: pd.DataFrame = field(default_factory=pd.DataFrame)
    """:func:`analysis.budget.ladder_table`: each comparison with reset at every rung, with
    ``kind`` and the comparison's ``along`` sentence."""
    budget_notes: tuple[str, ...] = ()
    anytime: tuple[Anytime, ...] = ()
    """Per study with a recorded search order: :func:`analysis.budget.anytime`."""
    sequences: tuple[LongSequence, ...] = ()
    """Settings with long task sequences (:func:`analysis.tasks.long_sequences`): accuracy per
    task index and early against late; empty for shorter studies."""


def comparison_rows(
    table: pd.DataFrame, member: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, str]:
    """The epochs that compare strategies: runs and evaluation trials (of a study with a budget
    ladder, those of each strategy's largest rung: ``member`` is :func:`analysis.budget.members`);
    for a study without an evaluation phase, each strategy's best search trial (said in the
    report)."""
    rows = table[table.phase.isin(["run", "eval"])]
    if member is not None and not member.empty:
        top = set(budget.largest(member).trial)
        studied = set(member.source)
        rows = rows[~rows.source.isin(studied) | rows.trial.isin(top)]
    if not rows.empty:
        return rows, ""
    search = table[table.phase == "search"]
    per_trial = per_seed_objectives(search)
    keep = []
    for _, g in per_trial.groupby(SETTING + ["strategy"]):
        metric = primary_metric(g.objective.iloc[0])
        keep.append(g.loc[g[metric].idxmax(), "trial"])
    note = (
        "No evaluation phase has finished: strategies are compared on their best search "
        "trial (one seed each, no confidence intervals)."
    )
    return search[search.trial.isin(keep)], note


def summary_table(objs: pd.DataFrame, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """Per setting and strategy: seeds, and mean [95% CI] of every objective."""
    out = []
    for key, g in objs.groupby(SETTING + ["strategy"], sort=False):
        row = dict(zip(SETTING + ["strategy"], key))
        row["seeds"] = int(g.seed.nunique())
        for m in METRICS:
            mean, lo, hi = bootstrap_ci(g[m].to_numpy(), rng, reps)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean, lo, hi
        out.append(row)
    return pd.DataFrame(out)


def advantage_table(objs: pd.DataFrame, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """Per setting and strategy other than reset: mean paired difference to reset on the primary
    metric over seeds both ran, with its 95% bootstrap CI."""
    out = []
    for key, g in objs.groupby(SETTING, sort=False):
        setting = dict(zip(SETTING, key))
        metric = primary_metric(setting["objective"])
        base = g[g.strategy == "reset"].groupby("seed")[metric].mean()
        if base.empty:
            continue
        for s in dict.fromkeys(g.strategy):
            if s == "reset":
                continue
            other = g[g.strategy == s].groupby("seed")[metric].mean()
            seeds = base.index.intersection(other.index)
            if len(seeds) == 0:
                continue
            diff, lo, hi = paired_difference_ci(
                other[seeds].to_numpy(), base[seeds].to_numpy(), rng, reps
            )
            out.append(
                {
                    **setting,
                    "setting": setting_name(setting),
                    "strategy": s,
                    "metric": metric,
                    "pairs": len(seeds),
                    "diff": diff,
                    "lo": lo,
                    "hi": hi,
                }
            )
    return pd.DataFrame(out)


def setting_views(rows: pd.DataFrame, restarts: pd.DataFrame) -> tuple[SettingView, ...]:
    """The figure data of every setting in ``rows`` (the comparison epochs)."""
    views = []
    for key, setting in rows.groupby(SETTING, sort=False):
        info = dict(zip(SETTING, key))
        diag = [c for c in setting.columns if c.startswith("diag_") and setting[c].notna().any()]
        per = pd.DataFrame()
        if diag:
            per = setting.groupby(["strategy", "trial", "task"], sort=False)[diag].mean()
            per = per.reset_index()
        views.append(
            SettingView(
                title=setting_name(info),
                epochs=setting,
                restarts=restarts[(restarts[SETTING] == list(key)).all(axis=1)],
                test_meaningful=info["objective"] != "random_labels",
                alpha=bool((setting.strategy == "expanded").any() and setting.alpha.notna().any()),
                diagnostics=per,
            )
        )
    return tuple(views)


def _read_study(root: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A study's ``study.json`` state and ``study.yaml`` spec; None if either is unreadable."""
    try:
        state = json.loads((root / "study.json").read_text())
        spec = yaml.safe_load((root / "study.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return state, spec


def _best_rows(
    root: Path, state: dict[str, Any], spec: dict[str, Any], metric: str
) -> list[dict[str, Any]]:
    """One row per strategy of the study: its best search trial's objective and parameters."""
    rows = []
    for s, best in state.get("best", {}).items():
        run = best.get("config", {}).get("run", {})
        params = searched_values(spec.get("strategies", {}).get(s, {}), run, s) if run else {}
        rows.append(
            {
                "study": state.get("name", root.name),
                "strategy": s,
                "metric": metric,
                "best": best.get("objective"),
                "params": json.dumps(params, sort_keys=True),
            }
        )
    return rows


def _study_view(
    root: Path, state: dict[str, Any], spec: dict[str, Any], table: pd.DataFrame
) -> StudyView | None:
    """The search figures' data of one study; None if it has no search epochs."""
    search = table[(table.source == str(root)) & (table.phase == "search")]
    if search.empty:
        return None
    objs = per_seed_objectives(search)
    searched = sorted(
        {
            k
            for space in spec.get("strategies", {}).values()
            for k, v in space.items()
            if isinstance(v, (dict, list))
        }
    )
    trial_params = search.groupby("trial").first()
    objs = objs.join(trial_params[[p for p in searched if p in trial_params]], on="trial")
    return StudyView(
        name=state.get("name", root.name),
        metric=spec.get("metric", "auc_test_acc"),
        trials=objs,
        params=tuple(p for p in searched if p in objs and objs[p].notna().any()),
        importances=optuna_importances(root, spec),
    )


def study_views(
    studies: list[Path], table: pd.DataFrame
) -> tuple[pd.DataFrame, tuple[StudyView, ...]]:
    """Best configuration per strategy of every study, and the studies' search data."""
    best_rows, views = [], []
    for root in studies:
        read = _read_study(root)
        if read is None:
            continue
        state, spec = read
        best_rows += _best_rows(root, state, spec, spec.get("metric", "auc_test_acc"))
        view = _study_view(root, state, spec, table)
        if view is not None:
            views.append(view)
    return pd.DataFrame(best_rows), tuple(views)


def optuna_importances(root: Path, spec: dict[str, Any]) -> pd.DataFrame:
    db = root / "optuna.db"
    if not db.is_file():
        return pd.DataFrame()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for s in spec.get("strategies", {}):
        try:
            study = optuna.load_study(study_name=f"{spec['name']}.{s}", storage=f"sqlite:///{db}")
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if len(done) < 2:
                continue
            # Optuna's default evaluator (PED-ANOVA in Optuna 5) warns per parameter when a
            # small search leaves a value range with < 2 trials; the figure's n says as much,
            # so the warning goes to the log instead of the console.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                imp = optuna.importance.get_param_importances(study)
            for w in caught:
                log.info("importances for %s/%s: %s", root, s, w.message)
            for p, v in imp.items():
                rows.append({"strategy": s, "param": p, "importance": v, "trials": len(done)})
        except Exception as e:  # too few distinct values, a single parameter, a locked db...
            log.info("no importances for %s/%s: %s", root, s, e)
    return pd.DataFrame(rows)


def build_report(loaded: Loaded, seed: int = 0, reps: int = 2000) -> Report:
    """The report's content from loaded results; writes nothing (study files are only read)."""
    table = loaded.table
    rng = np.random.default_rng(seed)
    read = {str(root): r for root in loaded.studies if (r := _read_study(root)) is not None}
    states = {root: state for root, (state, _) in read.items()}
    member = budget.members(table, states) if states else pd.DataFrame()
    rows, note = comparison_rows(table, member)
    objs = per_seed_objectives(rows)
    summary = summary_table(objs, rng, reps)
    adv = advantage_table(objs, rng, reps)
    restarts = per_restart(rows)
    best, studies = study_views(loaded.studies, table)
    # the budget's tables draw from their own stream: the tables above stay as they were
    budget_rng = np.random.default_rng([seed, 2])
    evals = table[table.phase == "eval"]
    rung_objs = (
        budget.at_rungs(per_seed_objectives(evals), member)
        if not member.empty and not evals.empty
        else pd.DataFrame()
    )
    lad = ladder_verdicts(rung_objs, budget_rng, reps, MIN_VERDICT_SEEDS, budget.planned(states))
    adv = with_ladder(adv, lad)
    judged = verdicts(adv, lad)
    anytimes = tuple(
        a
        for root, (state, spec) in read.items()
        if (a := budget.anytime(root, spec, state, table, rung_objs, budget_rng, reps)) is not None
    )
    # long sequences draw from a stream of their own, so every other table stays as it was
    sequences = tasks.long_sequences(rows, np.random.default_rng([seed, 3]), reps)
    return Report(
        records=table,
        compared_trials=int(rows.trial.nunique()),
        running=tuple(loaded.running),
        warnings=tuple(loaded.warnings),
        notes=(note,) if note else (),
        summary=summary,
        per_restart=restarts,
        advantage=adv,
        tallies=tallies(judged),
        verdicts=judged,
        settings=setting_views(rows, restarts),
        study_roots=tuple(map(str, loaded.studies)),
        best_configs=best,
        studies=studies,
        seed=seed,
        reps=reps,
        min_verdict_seeds=MIN_VERDICT_SEEDS,
        band_rng_state=rng.bit_generator.state,
        scenarios=scenarios.build(objs, loaded.studies, seed, reps, MIN_VERDICT_SEEDS, rung_objs),
        ladder=lad,
        budget_notes=tuple(budget.budget_notes(states, member)) if states else (),
        anytime=anytimes,
        sequences=sequences,
    )
