"""Scenarios: studies that reproduce a published result, checked and aggregated.

A study file with a ``scenario`` header (see ``study.spec.Scenario``) says which published result
it reproduces and which directions it expects (e.g. continuous ends *below* reset on
``final_train_acc``). Here, from the evaluation runs (fresh seeds) of one or more studies:

- each expected direction gets the paired difference ``strategy − baseline`` over seeds with
  its bootstrap CI and a verdict: ``holds`` (CI on the expected side of 0), ``reversed`` (CI
  on the other side), ``not shown`` (CI contains 0) or ``too few seeds`` (fewer than
  :data:`analysis.verdicts.MIN_VERDICT_SEEDS` pairs);
- every scenario's study metric, normalised per scenario (chance = 0, reset's mean = 1), is
  aggregated across scenarios rliable-style (:func:`analysis.aggregate.aggregate`).

Both at every rung of the studies' budget ladders (:mod:`analysis.budget`, paired by level:
the smallest rung of every study is level 1); the headline is the largest level that every
strategy of every scenario has evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.aggregate import AggregateResult, aggregate
from analysis.budget import headline_level, stability
from analysis.stats import paired_difference_ci
from plasticity.errors import UserError


@dataclass(frozen=True)
class ScenarioResults:
    """Directions checked per scenario, and the aggregate across scenarios."""

    directions: pd.DataFrame
    """``scenario, reproduces, strategy, baseline, metric, expected, level, trials, pairs, diff,
    lo, hi, verdict``: one row per expected direction and rung (``trials``: the search trials
    of the strategy's configuration; ``level``: the rung's place in the ladder)."""
    aggregate: AggregateResult | None
    """Across scenarios, on each scenario's study metric, at the headline level (the largest
    that every strategy of every scenario has evaluated; None: it cannot be computed)."""
    note: str = ""
    """Why there is no aggregate, when there is none."""
    by_level: tuple[tuple[int, str, AggregateResult | None], ...] = ()
    """``(level, trials, aggregate)`` at every rung, smallest first (``trials``: e.g. "8", or
    "4-40" where the strategies' rungs differ)."""
    headline: int = 1
    """The level of :attr:`aggregate`."""


def read_specs(roots: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``{study folder: study.yaml as a dict}`` for the studies that can be read."""
    specs = {}
    for root in roots:
        try:
            spec = yaml.safe_load((Path(root) / "study.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(spec, dict):
            specs[str(root)] = spec
    return specs


def verdict(expected: str, pairs: int, lo: float, hi: float, min_seeds: int) -> str:
    """``holds``, ``reversed``, ``not shown`` or ``too few seeds`` for a paired CI."""
    if pairs < min_seeds or np.isnan(lo):
        return "too few seeds"
    above, below = lo > 0, hi < 0
    if (above and expected == "above") or (below and expected == "below"):
        return "holds"
    return "reversed" if above or below else "not shown"


def _paired(objs: pd.DataFrame, strategy: str, baseline: str, metric: str) -> tuple:
    a = objs[objs.strategy == strategy].groupby("seed")[metric].mean()
    b = objs[objs.strategy == baseline].groupby("seed")[metric].mean()
    seeds = a.index.intersection(b.index)
    return a[seeds].to_numpy(), b[seeds].to_numpy()


def directions(
    objs: pd.DataFrame,
    specs: Mapping[str, dict[str, Any]],
    rng: np.random.Generator,
    reps: int,
    min_seeds: int,
) -> pd.DataFrame:
    """One row per expected direction of every scenario; ``objs`` is one row per evaluation run
    (``source, strategy, seed`` and the objectives)."""
    rows = []
    for source, spec in specs.items():
        scenario = spec.get("scenario") or {}
        mine = objs[objs.source == source]
        for e in scenario.get("expects", []):
            strategy, baseline = e.get("strategy", "continuous"), e.get("baseline", "reset")
            expected = e.get("direction", "below")
            a, b = _paired(mine, strategy, baseline, e["metric"])
            diff, lo, hi = paired_difference_ci(a, b, rng, reps)
            rows.append(
                {
                    "scenario": spec.get("name", Path(source).name),
                    "reproduces": scenario.get("reproduces", ""),
                    "strategy": strategy,
                    "baseline": baseline,
                    "metric": e["metric"],
                    "expected": expected,
                    "pairs": len(a),
                    "diff": diff,
                    "lo": lo,
                    "hi": hi,
                    "verdict": verdict(expected, len(a), lo, hi, min_seeds),
                }
            )
    return pd.DataFrame(rows)


def scenario_scores(objs: pd.DataFrame, specs: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """``scenario, strategy, seed, score``: each run's study metric (the one its search
    maximised), the tidy input of :func:`analysis.aggregate.aggregate`."""
    frames = []
    for source, spec in specs.items():
        mine = objs[objs.source == source]
        metric = spec.get("metric", "auc_test_acc")
        frame = mine.groupby(["strategy", "seed"], as_index=False)[metric].mean()
        frame = frame.rename(columns={metric: "score"})
        frame.insert(0, "scenario", spec.get("name", Path(source).name))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _trials_label(rungs: pd.Series) -> str:
    low, high = int(rungs.min()), int(rungs.max())
    return str(low) if low == high else f"{low}-{high}"


def build(
    objs: pd.DataFrame,
    roots: Sequence[Path],
    seed: int,
    reps: int,
    min_seeds: int,
    rung_objs: pd.DataFrame | None = None,
) -> ScenarioResults | None:
    """Scenario results for the studies among ``roots`` that have a scenario header, or for
    several studies (each a scenario); None when there is nothing to aggregate. ``rung_objs``
    (:func:`analysis.budget.at_rungs`) gives the evaluation runs of every rung; without it,
    the evaluation runs in ``objs`` are one rung."""
    specs = read_specs(roots)
    if not any(s.get("scenario") for s in specs.values()) and len(specs) < 2:
        return None
    if rung_objs is not None and not rung_objs.empty:
        evals = rung_objs[rung_objs.source.isin(list(specs))]
    else:
        evals = objs[(objs.phase == "eval") & objs.source.isin(list(specs))]
        evals = evals.assign(level=1, rung=np.nan)
    if evals.empty:
        return None
    rng = np.random.default_rng([seed, 1])  # apart from the tables' stream: those stay as they were
    chance = {
        spec.get("name", Path(src).name): (spec.get("scenario") or {}).get("chance", 0.1)
        for src, spec in specs.items()
    }
    frames, by_level, notes = [], [], {}
    for level in sorted(evals["level"].unique()):
        at = evals[evals["level"] == level]
        label = _trials_label(at.rung) if at.rung.notna().any() else ""
        agg = None
        try:
            agg = aggregate(scenario_scores(at, specs), "score", chance=chance, rng=rng, reps=reps)
        except UserError as e:  # no reset runs, or reset at chance: nothing to normalise by
            notes[int(level)] = f"no aggregate across scenarios: {e}"
        found = directions(at, specs, rng, reps, min_seeds)
        if not found.empty:
            found.insert(6, "level", int(level))
            found.insert(7, "trials", label)
        frames.append(found)
        by_level.append((int(level), label, agg))
    dirs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    heads = headline_level(evals)
    head = int(heads.min())  # every scenario's strategies evaluated there
    if not dirs.empty:
        dirs = _along_the_ladder(dirs, heads, specs, min_seeds)
    aggs = {lv: a for lv, _, a in by_level}
    return ScenarioResults(dirs, aggs[head], notes.get(head, ""), tuple(by_level), head)


def _along_the_ladder(
    dirs: pd.DataFrame,
    heads: pd.Series,
    specs: Mapping[str, dict[str, Any]],
    min_seeds: int,
) -> pd.DataFrame:
    """The directions ordered per direction from its smallest rung, with ``headline`` (the
    scenario's largest level every strategy has evaluated) and ``along``: the direction's
    :func:`analysis.budget.stability` sentence (empty where the strategies' rungs differ)."""
    name = {src: spec.get("name", Path(src).name) for src, spec in specs.items()}
    level = {name[src]: int(lv) for src, lv in heads.items() if src in name}
    keys = ["scenario", "strategy", "baseline", "metric"]
    order = {k: i for i, k in enumerate(dict.fromkeys(map(tuple, dirs[keys].to_numpy())))}
    dirs = dirs.assign(_order=[order[tuple(k)] for k in dirs[keys].to_numpy()])
    dirs = dirs.sort_values(["_order", "level"], kind="stable").drop(columns="_order")
    dirs["headline"] = [level.get(sc) == int(lv) for sc, lv in zip(dirs.scenario, dirs.level)]
    along = {}
    for key, g in dirs.groupby(keys, sort=False):
        numeric = all(str(t).isdigit() for t in g.trials)
        rows = g.assign(trials=[int(t) for t in g.trials]) if numeric else None
        along[key] = stability(rows, min_seeds).sentence if numeric and len(g) > 1 else ""
    dirs["along"] = [along[tuple(k)] for k in dirs[keys].to_numpy()]
    return dirs.reset_index(drop=True)
