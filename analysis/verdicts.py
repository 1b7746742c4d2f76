"""Verdicts: each strategy against reset in each setting, on the setting's primary metric, at
the budget it was made at (the ladder's headline rung, :mod:`analysis.budget`), and the tally
over settings. :mod:`analysis.report` builds them with the rest of the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis import budget

SETTING = ["dataset", "model", "objective"]

MIN_VERDICT_SEEDS = 5
"""Paired seeds a comparison needs before the report calls a strategy better or worse than
reset. A percentile bootstrap over fewer seeds has too few distinct resamples to mean much
(two seeds give three possible means), so below this the report gives the numbers only."""

VerdictKind = Literal["better", "worse", "indistinguishable", "too_few_seeds"]


@dataclass(frozen=True)
class Verdict:
    """One strategy against reset in one setting, on the setting's primary metric."""

    setting: str
    """``model/dataset/objective``."""
    strategy: str
    metric: str
    pairs: int
    """Seeds both the strategy and reset ran (the bootstrap resamples these pairs)."""
    diff: float
    """Mean over the paired seeds of strategy − reset."""
    lo: float
    """95% bootstrap CI of ``diff``; NaN with a single pair."""
    hi: float
    kind: VerdictKind
    """What the interval says (above 0, below 0, contains 0), or ``too_few_seeds`` below
    :data:`MIN_VERDICT_SEEDS` pairs."""
    trials: int | None = None
    """Search trials behind the strategy's compared configuration (None: runs, no search)."""
    reset_trials: int | None = None
    """Search trials behind reset's."""
    along: str = ""
    """How the difference moves along the budget ladder (:func:`analysis.budget.stability`);
    empty for runs."""


@dataclass(frozen=True)
class Tally:
    """One strategy against reset over all settings."""

    strategy: str
    settings: int
    wins: int
    """Settings where the mean paired difference is above 0."""
    with_verdict: int
    """Settings with at least :data:`MIN_VERDICT_SEEDS` paired seeds."""
    excluding_zero: int
    """Of those, the ones whose interval excludes 0 (better or worse)."""


def primary_metric(objective: str) -> str:
    """The comparison metric: train accuracy where test labels are random."""
    return "auc_train_acc" if objective == "random_labels" else "auc_test_acc"


def setting_name(row: Any) -> str:
    return f"{row['model']}/{row['dataset']}/{row['objective']}"


def verdict_kind(pairs: int, lo: float, hi: float) -> VerdictKind:
    """What a paired-difference CI over ``pairs`` seeds says about a strategy against reset;
    nothing below :data:`MIN_VERDICT_SEEDS` pairs."""
    if pairs < MIN_VERDICT_SEEDS or np.isnan(lo):
        return "too_few_seeds"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "indistinguishable"


def ladder_verdicts(
    rung_objs: pd.DataFrame,
    rng: np.random.Generator,
    reps: int,
    min_seeds: int,
    plans: dict[tuple[str, str], list[int]] | None = None,
) -> pd.DataFrame:
    """:func:`analysis.budget.ladder_table` per setting on its primary metric, with each rung's
    verdict ``kind`` and, per comparison, the ``along`` sentence of
    :func:`analysis.budget.stability` (``plans``: :func:`analysis.budget.planned`)."""
    if rung_objs.empty:
        return pd.DataFrame()
    lad = budget.ladder_table(
        rung_objs, SETTING, lambda info: primary_metric(info["objective"]), rng, reps
    )
    if lad.empty:
        return lad
    lad.insert(0, "setting", [setting_name(r) for _, r in lad.iterrows()])
    first = {s: i for i, s in enumerate(dict.fromkeys(lad.strategy))}
    lad = lad.assign(_order=lad.strategy.map(first))
    lad = lad.sort_values(["setting", "_order", "level"], kind="stable").drop(columns="_order")
    lad = lad.reset_index(drop=True)
    lad["kind"] = [verdict_kind(int(p), lo, hi) for p, lo, hi in zip(lad.pairs, lad.lo, lad.hi)]
    sources = {
        setting_name(dict(zip(SETTING, key))): list(dict.fromkeys(g.source))
        for key, g in rung_objs.groupby(SETTING, sort=False)
    }

    def rungs(setting: str, strategy: str) -> list[int]:
        found = [(plans or {}).get((src, strategy), []) for src in sources.get(setting, [])]
        return max(found, key=len, default=[])

    along = {
        key: budget.stability(g, min_seeds, rungs(*key)).sentence
        for key, g in lad.groupby(["setting", "strategy"], sort=False)
    }
    lad["along"] = [along[k] for k in zip(lad.setting, lad.strategy)]
    heads = budget.headline_level(rung_objs)
    head = {
        setting: int(min(heads[src] for src in srcs if src in heads))
        for setting, srcs in sources.items()
    }
    lad["headline"] = [int(lv) == head.get(st) for st, lv in zip(lad.setting, lad.level)]
    return lad


def with_ladder(adv: pd.DataFrame, lad: pd.DataFrame) -> pd.DataFrame:
    """:func:`advantage_table` with each comparison that has a budget ladder given by the
    ladder's headline row (the same runs, but the ladder's bootstrap): one interval per
    comparison in the tables, figures and verdicts, not two that differ in the last digit."""
    if adv.empty or lad.empty:
        return adv
    head = lad[lad.headline].set_index(["setting", "strategy", "metric"])
    adv = adv.copy()
    for i, r in adv.iterrows():
        key = (r.setting, r.strategy, r.metric)
        if key in head.index:
            for col in ("pairs", "diff", "lo", "hi"):
                adv.at[i, col] = head.at[key, col]
    return adv


def verdicts(adv: pd.DataFrame, lad: pd.DataFrame | None = None) -> tuple[Verdict, ...]:
    """One verdict per row of :func:`advantage_table`, in its order, with the budget it was
    made at (the ladder table's headline level, :func:`ladder_verdicts`) where the comparison
    has one."""
    top: dict[tuple[str, str], Any] = {}
    if lad is not None and not lad.empty:
        for r in lad[lad.headline].itertuples():
            top[(r.setting, r.strategy)] = r
    out = []
    for r in adv.itertuples():
        at = top.get((r.setting, r.strategy))
        out.append(
            Verdict(
                r.setting,
                r.strategy,
                r.metric,
                int(r.pairs),
                r.diff,
                r.lo,
                r.hi,
                verdict_kind(int(r.pairs), r.lo, r.hi),
                trials=None if at is None else int(at.trials),
                reset_trials=None if at is None else int(at.reset_trials),
                along="" if at is None else at.along,
            )
        )
    return tuple(out)


def tallies(verdicts: tuple[Verdict, ...]) -> tuple[Tally, ...]:
    """Per strategy over its settings: wins on the mean, and, among the settings with enough
    seeds for a verdict, the ones whose CI excludes 0."""
    out = []
    for s in dict.fromkeys(v.strategy for v in verdicts):
        mine = [v for v in verdicts if v.strategy == s]
        judged = [v for v in mine if v.kind != "too_few_seeds"]
        out.append(
            Tally(
                strategy=s,
                settings=len(mine),
                wins=sum(v.diff > 0 for v in mine),
                with_verdict=len(judged),
                excluding_zero=sum(v.kind in ("better", "worse") for v in judged),
            )
        )
    return tuple(out)
