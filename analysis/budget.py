"""The search budget behind every comparison: which evaluation ran at which rung of a study's
budget ladder, each comparison at every rung with one sentence on whether its direction holds
as the budget grows, and the anytime view of each search (best-so-far against trials spent,
and the expected best of k random configurations).

A study's budget ladder (``budget: {trials_per_strategy: [4, 8, 16]}``) evaluates every
strategy's best-so-far configuration after 4, 8 and 16 search trials on the same seeds;
study.json's ``ladder`` names the evaluation trials of each rung (a rung whose best did not
change re-uses the rung before's, so one trial can stand at several rungs). Rungs are paired
across strategies by their place in the ladder, the ``level`` (1 for the smallest): with
``trials_per_param`` the strategies' rungs differ in trials but not in number. A study from
before ladders, or one with a single budget, has one level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats import bootstrap_ci, paired_difference_ci, per_seed_objectives

SHRINK = 0.5
"""A direction whose CI excludes 0 at the largest rung is still called budget-limited when its
mean difference there is below this fraction of its largest earlier one (same sign): a gap that
more search halves is one the budget made. Fixed before the suite was run, never tuned."""

MEMBER_COLUMNS = ["source", "strategy", "level", "rung", "trial"]


def members(table: pd.DataFrame, states: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (study, strategy, rung, evaluation trial): ``source, strategy, level, rung
    (search trials), trial`` (the table's name of the trial). From study.json's ``ladder``; a
    study without one (from before ladders) has one level per strategy, at the number of
    search trials its strategy ran, holding its evaluation trials (``superseded`` ones, of a
    best that an extension replaced, are left out)."""
    rows = []
    for source, state in states.items():
        mine = table[table.source == source]
        names = {t.split("/", 1)[-1]: t for t in mine.trial.unique()}
        if isinstance(state.get("ladder"), dict):
            for strategy, entries in state["ladder"].items():
                for level, entry in enumerate(entries, start=1):
                    for t in entry.get("evals") or []:
                        if t in names:
                            rows.append((source, strategy, level, int(entry["trials"]), names[t]))
            continue
        for strategy, g in mine.groupby("strategy", sort=False):
            searched = int(g.loc[g.phase == "search", "trial"].nunique())
            for t in g.loc[g.phase == "eval", "trial"].unique():
                rows.append((source, strategy, 1, searched, t))
    return pd.DataFrame(rows, columns=MEMBER_COLUMNS)


def at_rungs(objs: pd.DataFrame, member: pd.DataFrame) -> pd.DataFrame:
    """``objs`` (one row per run, :func:`analysis.stats.per_seed_objectives`) for the evaluation
    runs of study rungs, once per rung that uses the run, with ``level`` and ``rung``."""
    return objs.merge(member, on=["source", "strategy", "trial"], how="inner")


def headline_level(member: pd.DataFrame) -> pd.Series:
    """Per study (``source``): the largest level every one of its strategies has evaluated so
    far, the level its headline comparison is made at (all strategies at one level: while a
    study runs, one strategy's larger rung is not compared with another's smaller one)."""
    return member.groupby(["source", "strategy"])["level"].max().groupby("source").min()


def largest(member: pd.DataFrame) -> pd.DataFrame:
    """The members at each study's :func:`headline_level`: the headline comparison."""
    return member[member["level"] == member.source.map(headline_level(member))]


def ladder_table(
    rung_objs: pd.DataFrame,
    keys: Sequence[str],
    metric_of,
    rng: np.random.Generator,
    reps: int,
) -> pd.DataFrame:
    """Per group of ``keys`` (a setting), level and strategy other than reset: the paired
    difference strategy − reset at that level over the seeds both ran, its 95% bootstrap CI,
    and the search trials of both (``trials``, ``reset_trials``). ``metric_of(group key dict)``
    names the metric."""
    out = []
    for key, g in rung_objs.groupby(list(keys) + ["level"], sort=False):
        info = dict(zip(list(keys) + ["level"], key))
        metric = metric_of(info)
        base = g[g.strategy == "reset"]
        if base.empty:
            continue
        b = base.groupby("seed")[metric].mean()
        for s in dict.fromkeys(g.strategy):
            if s == "reset":
                continue
            mine = g[g.strategy == s]
            a = mine.groupby("seed")[metric].mean()
            seeds = a.index.intersection(b.index)
            if len(seeds) == 0:
                continue
            diff, lo, hi = paired_difference_ci(a[seeds].to_numpy(), b[seeds].to_numpy(), rng, reps)
            out.append(
                {
                    **info,
                    "strategy": s,
                    "metric": metric,
                    "trials": int(mine.rung.max()),
                    "reset_trials": int(base.rung.max()),
                    "pairs": len(seeds),
                    "diff": diff,
                    "lo": lo,
                    "hi": hi,
                }
            )
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Stability:
    """How one comparison moves along the ladder."""

    kind: str
    """``single`` (one budget), ``stable``, ``budget-limited``, ``indistinguishable``
    (the CI contains 0 at every rung), ``too few seeds``, or ``pending`` (only the first
    rung evaluated so far)."""
    sentence: str


def _side(lo: float, hi: float) -> int:
    return 1 if lo > 0 else -1 if hi < 0 else 0


def planned(states: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """``{(source, strategy): its rungs}`` as the study plans them (study.json's ``ladder``;
    one rung for a study from before ladders), evaluated yet or not."""
    out = {}
    for source, state in states.items():
        for strategy, entries in (state.get("ladder") or {}).items():
            out[(source, strategy)] = [int(e["trials"]) for e in entries]
    return out


def stability(rows: pd.DataFrame, min_seeds: int, rungs: Sequence[int] = ()) -> Stability:
    """Whether one comparison's direction holds as the budget grows, from its rows of
    :func:`ladder_table` (one per level evaluated so far; ``rungs``: the strategy's planned
    rungs, to say which are still to come).

    *Stable*: the CI excludes 0 on the same side at every rung from some rung on, up to the
    largest, at two rungs at least, and the difference at the largest rung is not below
    :data:`SHRINK` of the largest on that side since (what came before, a reversal or a CI
    containing 0, is said). *Budget-limited*: the difference is gone at the largest rung, shows
    only there (after a reversal, or a CI containing 0 before), or shrinks towards 0 on the same
    side. *Indistinguishable*: the CI contains 0 at every rung."""
    rows = rows.sort_values("level")
    trials = [int(t) for t in rows.trials]
    to_come = [int(k) for k in list(rungs)[len(rows) :]]
    if to_come:
        more = ", ".join(map(str, to_come))
        if len(rows) == 1:
            return Stability(
                "pending", f"only its first rung is evaluated so far (rungs {more} to come)"
            )
        done = stability(rows, min_seeds)
        return Stability(done.kind, f"{done.sentence}; rungs {more} to come")
    if len(rows) == 1:
        return Stability("single", f"at {trials[0]} search trials per strategy (a single budget)")
    if rows.pairs.min() < min_seeds or rows.lo.isna().any():
        return Stability("too few seeds", "too few paired seeds at some rung for a verdict")
    return _judge(rows, trials)


def _judge(rows: pd.DataFrame, trials: list[int]) -> Stability:
    """:func:`stability` of two rungs or more, each with enough seeds."""
    sides = [_side(lo, hi) for lo, hi in zip(rows.lo, rows.hi)]
    diffs = rows["diff"].to_numpy()
    at = ", ".join(f"{d:+.3f} at {t}" for d, t in zip(diffs, trials))
    last = sides[-1]
    if last == 0:
        if any(sides):
            return Stability(
                "budget-limited",
                f"budget-limited: the difference is gone at {trials[-1]} trials ({at})",
            )
        return Stability("indistinguishable", f"the CI contains 0 at every rung ({at})")
    first = len(sides) - 1  # where the final side's run of rungs starts
    while first > 0 and sides[first - 1] == last:
        first -= 1
    word = "better" if last > 0 else "worse"
    if first == len(sides) - 1:
        if -last in sides:
            return Stability("budget-limited", f"budget-limited: the direction reverses ({at})")
        if last in sides[:-1]:  # the side comes and goes
            on = ", ".join(str(t) for t, x in zip(trials, sides) if x == last)
            off = ", ".join(str(t) for t, x in zip(trials, sides) if x != last)
            return Stability(
                "budget-limited",
                f"budget-limited: {word} at {on} trials, a CI containing 0 at {off} ({at})",
            )
        return Stability(
            "budget-limited",
            f"budget-limited: {word} only at the largest rung, {trials[-1]} trials ({at})",
        )
    since = [abs(d) for d in diffs[first:-1]]
    if abs(diffs[-1]) < SHRINK * max(since):
        return Stability(
            "budget-limited",
            f"budget-limited: {word} at every rung from {trials[first]} search trials on, but "
            f"the difference shrinks towards 0 as the budget grows ({at})",
        )
    other = "better" if last < 0 else "worse"
    earlier = [
        f"being {other} at {t}" if side == -last else f"a CI containing 0 at {t}"
        for side, t in zip(sides[:first], trials[:first])
    ]
    before = f", after {' and '.join(earlier)}" if earlier else ""
    return Stability(
        "stable",
        f"stable: {word} at every rung from {trials[first]} search trials on{before} ({at})",
    )


def searched_counts(state: dict[str, Any]) -> dict[str, int]:
    """Parameters each strategy of a study searches (study.json's ``budget_policy``)."""
    searched = (state.get("budget_policy") or {}).get("searched") or {}
    return {s: len(v) if isinstance(v, (list, tuple)) else int(v) for s, v in searched.items()}


def budget_notes(states: dict[str, dict[str, Any]], member: pd.DataFrame) -> list[str]:
    """What the report says about the budget: the policy, and for a study with a single budget
    where its strategies search different numbers of parameters, that the comparison is made
    at one budget which favours the strategies searching fewer."""
    notes = []
    plans = planned(states)
    for source, state in states.items():
        policy = (state.get("budget_policy") or {}).get("kind", "trials_per_strategy")
        counts = searched_counts(state)
        name = state.get("name", Path(source).name)
        rungs = {s: r for (src, s), r in plans.items() if src == source}
        if rungs and max(map(len, rungs.values())) > 1:
            ladders = sorted({tuple(r) for r in rungs.values()})
            shown = "; ".join(", ".join(map(str, r)) for r in ladders)
            notes.append(
                f"{name}: a budget ladder ({policy}: rungs of {shown} search trials); every "
                "comparison is given at each evaluated rung."
            )
        elif len(set(counts.values())) > 1:
            parts = ", ".join(f"{s} {n}" for s, n in counts.items())
            notes.append(
                f"{name}: one budget for all strategies, which search different numbers of "
                f"parameters ({parts}): with few trials a strategy searching more is behind "
                "for lack of search; a ladder (trials_per_strategy: [4, 8, 16]) or "
                "trials_per_param shows whether a verdict holds with more."
            )
    return notes


def expected_max(values: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """The expected best of ``k`` configurations drawn at random, for each ``k``, from the
    ``n`` i.i.d. ``values`` (Dodge et al. 2019, "Show Your Work", eq. 1, exact from the order
    statistics): ``sum_i v_(i) [(i/n)^k - ((i-1)/n)^k]`` with ``v_(1) <= ... <= v_(n)``."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    i = np.arange(1, n + 1)
    return np.array([float((v * ((i / n) ** k - ((i - 1) / n) ** k)).sum()) for k in ks])


def startup_trials(spec: dict[str, Any], state: dict[str, Any], strategy: str) -> int:
    """TPE's random start-up trials of ``strategy``'s search: the study file's
    ``startup_trials``, else the rule of ``study.budget.Budget.startup`` on the study file's
    largest rung (kept equal by a test; this layer does not import the study layer)."""
    budget = spec.get("budget") or {}
    if budget.get("startup_trials"):
        return int(budget["startup_trials"])
    rungs = ((state.get("budget_policy") or {}).get("rungs") or {}).get(strategy) or [4]
    return max(2, min(10, int(rungs[-1]) // 3))


@dataclass(frozen=True, eq=False)
class Anytime:
    """One study's anytime figure."""

    name: str
    metric: str
    search: pd.DataFrame
    """``strategy, search_index, objective, best``: each search trial in the order suggested,
    its objective (NaN if it did not run every epoch) and the best so far."""
    evals: pd.DataFrame
    """``strategy, rung, n, mean, lo, hi``: the evaluation at each rung."""
    expected: pd.DataFrame
    """``strategy, k, expected, startup``: expected best of k random configurations."""


def anytime(
    root: str,
    spec: dict[str, Any],
    state: dict[str, Any],
    table: pd.DataFrame,
    rung_objs: pd.DataFrame,
    rng: np.random.Generator,
    reps: int,
) -> Anytime | None:
    """The anytime data of one study; None for a study without search order (before ladders)."""
    search = table[(table.source == root) & (table.phase == "search")]
    if search.empty or search.search_index.isna().all():
        return None
    metric = spec.get("metric", "auc_test_acc")
    objs = per_seed_objectives(search)
    first = search.groupby("trial")[["search_index", "restarts"]].first()
    objs = objs.join(first, on="trial").dropna(subset=["search_index"])
    whole = objs.restarts_seen >= objs.restarts
    objs["objective"] = objs[metric].where(whole)
    frames, expected = [], []
    for s, g in objs.groupby("strategy", sort=False):
        g = g.sort_values("search_index")
        best = g.objective.fillna(-np.inf).cummax().replace(-np.inf, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "strategy": s,
                    "search_index": g.search_index.astype(int).to_numpy(),
                    "objective": g.objective.to_numpy(),
                    "best": best.to_numpy(),
                }
            )
        )
        n = startup_trials(spec, state, s)
        random = g[g.search_index <= n].objective.dropna().to_numpy()
        if len(random):
            ks = np.arange(1, len(random) + 1)
            expected.append(
                pd.DataFrame(
                    {"strategy": s, "k": ks, "expected": expected_max(random, ks), "startup": n}
                )
            )
    evals = []
    # No evaluation has finished yet (a running study): a frame without columns, no rungs.
    mine = rung_objs[rung_objs.source == root] if not rung_objs.empty else rung_objs
    for (s, rung), g in mine.groupby(["strategy", "rung"], sort=False) if not mine.empty else []:
        mean, lo, hi = bootstrap_ci(g[metric].to_numpy(), rng, reps)
        evals.append({"strategy": s, "rung": rung, "n": len(g), "mean": mean, "lo": lo, "hi": hi})
    return Anytime(
        name=state.get("name", Path(root).name),
        metric=metric,
        search=pd.concat(frames, ignore_index=True),
        evals=pd.DataFrame(evals, columns=["strategy", "rung", "n", "mean", "lo", "hi"]),
        expected=pd.concat(expected, ignore_index=True) if expected else pd.DataFrame(),
    )
