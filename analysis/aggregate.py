"""Results across scenarios, rliable style (Agarwal et al. 2021, "Deep reinforcement learning at
the edge of the statistical precipice"): per-scenario normalisation, interquartile mean (IQM),
mean, probability of improvement and performance profiles, each with a stratified-bootstrap 95%
percentile confidence interval.

The scores of one strategy are a ``num_runs`` x ``num_tasks`` matrix, one column per scenario
(rliable's "task"). Scenarios may hold different numbers of runs: a column is padded with NaN,
and every function here reads only a column's non-NaN entries.

The bootstrap is written here rather than taken from ``rliable`` 1.2: rliable draws its resampling
indices from NumPy's global RNG (``np.random.choice``) whatever ``random_state`` it is given, so a
seeded ``np.random.Generator`` could not make an interval reproducible; it also needs equal run
counts in every task, and pulls in arch, statsmodels, seaborn and absl-py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.stats import bootstrap_ci
from plasticity.errors import UserError

COLUMNS = ("scenario", "strategy", "seed")


@dataclass(frozen=True)
class AggregateResult:
    """The tables of :func:`aggregate`; every interval is a 95% (``level``) percentile CI."""

    metric: str
    """The score column aggregated (higher is better, or see :func:`normalise`)."""
    baseline: str
    """The strategy that defines 1 on the normalised scale (and the one improved upon)."""
    per_scenario: pd.DataFrame
    """``scenario, strategy, n, mean, lo, hi``: raw scores, bootstrap over the scenario's runs."""
    bounds: pd.DataFrame
    """``scenario, low, high``: chance level and the baseline's mean, the normalisation."""
    overall: pd.DataFrame
    """Per strategy over the common scenarios, on normalised scores: ``scenarios, runs, iqm,
    iqm_lo, iqm_hi, mean, mean_lo, mean_hi, p_improve, p_improve_lo, p_improve_hi`` (probability
    of improvement over the baseline, rliable's unpaired form: every run against every run of
    the baseline) and ``pairs, p_paired, p_paired_lo, p_paired_hi`` (the paired form: each run
    against the baseline's run on the same seed, pairs resampled together); NaN on the
    baseline's own row."""
    profiles: pd.DataFrame
    """``strategy, tau, fraction, lo, hi``: the performance profile of every strategy."""
    excluded: tuple[str, ...]
    """Scenarios left out of ``overall`` and ``profiles``: some strategy has no run there."""


def normalise(scores: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(scores - low) / (high - low)`` per scenario, so chance is 0 and the baseline is 1.

    ``scores``: ``num_runs`` x ``num_tasks``; ``low``, ``high``: ``num_tasks``. For a metric where
    lower is better (a loss) ``high < low`` and the result still grows as the score improves.
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return (np.asarray(scores, dtype=float) - low) / (high - low)


def normalisation_bounds(
    frame: pd.DataFrame, metric: str, chance: float | Mapping[str, float], baseline: str = "reset"
) -> pd.DataFrame:
    """Per scenario of ``frame`` (in order of appearance): ``low`` = its chance level (one number
    for all, or one per scenario: 0.1 for 10 balanced classes, or the majority class's rate) and
    ``high`` = the mean score of ``baseline``'s runs there. Indexed by scenario."""
    scenarios = list(dict.fromkeys(frame.scenario))
    if isinstance(chance, Mapping) and (missing := [s for s in scenarios if s not in chance]):
        raise UserError(f"no chance level given for scenario(s) {', '.join(map(str, missing))}")
    low = [chance[s] if isinstance(chance, Mapping) else chance for s in scenarios]
    high = frame[frame.strategy == baseline].groupby("scenario", sort=False)[metric].mean()
    bounds = pd.DataFrame(
        {"low": np.asarray(low, dtype=float), "high": high.reindex(scenarios).to_numpy()},
        index=pd.Index(scenarios, name="scenario"),
    )
    if bad := list(bounds.index[bounds.high.isna() | np.isclose(bounds.low, bounds.high)]):
        raise UserError(
            f"cannot normalise {metric} in scenario(s) {', '.join(map(str, bad))}: "
            f"{baseline} has no runs there or scores at the chance level"
        )
    return bounds


def _columns(scores: np.ndarray) -> list[np.ndarray]:
    """The non-NaN runs of each scenario of a ``num_runs`` x ``num_tasks`` matrix."""
    x = np.asarray(scores, dtype=float)
    return [col[~np.isnan(col)] for col in x.T]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all runs of all scenarios pooled,
    ``scipy.stats.trim_mean(x, 0.25)`` on the flattened ``num_runs`` x ``num_tasks`` matrix
    (rliable's ``aggregate_iqm``): ``int(0.25 * n)`` runs are cut from each end of the sorted
    ``n``. Pooled, so a scenario with more runs weighs more. Written out rather than calling
    scipy, whose per-call overhead (about 1 ms) dominated a 2,000-resample bootstrap."""
    x = np.sort(np.asarray(scores, dtype=float).ravel())  # NaN padding sorts last
    n = int((~np.isnan(x)).sum())
    cut = int(0.25 * n)
    return float(x[cut : n - cut].mean())


def mean_of_means(scores: np.ndarray) -> float:
    """Mean over scenarios of each scenario's mean over runs (rliable's ``aggregate_mean``):
    ``num_runs`` x ``num_tasks`` -> a number, every scenario weighted equally."""
    return float(np.mean([col.mean() for col in _columns(scores)]))


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) averaged over scenarios (rliable's definition). In each scenario it is the
    Mann–Whitney U statistic of X over its ``n_x * n_y`` pairs of runs: the fraction of pairs in
    which X's run beats Y's, a tie counting 1/2.

    ``scores_x``: ``num_runs_x`` x ``num_tasks``; ``scores_y``: ``num_runs_y`` x ``num_tasks``.
    """
    per_task = []
    for x, y in zip(_columns(scores_x), _columns(scores_y)):
        wins = (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()
        per_task.append(wins / (len(x) * len(y)))
    return float(np.mean(per_task))


def paired_probability_of_improvement(diffs: np.ndarray) -> float:
    """P(X > Y) over paired runs, averaged over scenarios: in each scenario the fraction of
    seeds on which X's run beats Y's run on the same seed (a tie counting 1/2). ``diffs``:
    ``num_pairs`` x ``num_tasks`` of X − Y per seed (NaN padding). Strategies evaluated on the
    same seeds share their data order and initial draws, so a paired comparison removes the
    seed's own variation that the unpaired form (:func:`probability_of_improvement`) keeps."""
    per_task = [((d > 0).sum() + 0.5 * (d == 0).sum()) / len(d) for d in _columns(diffs)]
    return float(np.mean(per_task))


def paired_matrix(
    frame: pd.DataFrame, metric: str, x: str, y: str, scenarios: Sequence[str]
) -> np.ndarray:
    """``num_pairs`` x ``num_tasks``: ``metric`` of ``x`` minus that of ``y`` on each seed
    both ran, one column per scenario (NaN padding)."""
    cols = []
    for s in scenarios:
        here = frame[frame.scenario == s]
        a = here[here.strategy == x].set_index("seed")[metric]
        b = here[here.strategy == y].set_index("seed")[metric]
        seeds = a.index.intersection(b.index).sort_values()
        cols.append((a[seeds] - b[seeds]).to_numpy(dtype=float))
    out = np.full((max(1, max(len(c) for c in cols)), len(cols)), np.nan)
    for j, col in enumerate(cols):
        out[: len(col), j] = col
    return out


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of runs whose score is strictly above each τ (rliable's score distribution):
    ``num_runs`` x ``num_tasks`` and ``num_taus`` -> ``num_taus``. The fraction is taken within
    each scenario and then averaged, so every scenario weighs the same whatever its run count."""
    taus = np.asarray(taus, dtype=float)
    return np.mean([(col[:, None] > taus[None, :]).mean(axis=0) for col in _columns(scores)], 0)


def stratified_resample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap resample of a ``num_runs`` x ``num_tasks`` matrix that never mixes
    scenarios: each column's ``n`` runs are replaced by ``n`` draws with replacement from those
    same runs. Runs come first in each column (sorted) and the NaN padding stays below them."""
    x = np.sort(np.asarray(scores, dtype=float), axis=0)  # np.sort puts NaN last
    n = (~np.isnan(x)).sum(axis=0)
    rows = (rng.random(x.shape) * n).astype(int)  # row j of column m: uniform in 0..n_m-1
    out = x[rows, np.arange(x.shape[1])]
    out[np.arange(x.shape[0])[:, None] >= n] = np.nan
    return out


def stratified_bootstrap(
    stat: Callable[..., float | np.ndarray],
    samples: Sequence[np.ndarray],
    rng: np.random.Generator,
    reps: int = 2000,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``stat(*samples)`` and its percentile CI, each sample (``num_runs_i`` x ``num_tasks``)
    resampled within scenarios and independently of the others (rliable's
    ``StratifiedIndependentBootstrap``). If some scenario of some sample has fewer than two runs
    the bounds are NaN: a single run has no spread to resample and the interval would be too
    narrow."""
    point = np.asarray(stat(*samples), dtype=float)
    if min(int((~np.isnan(np.asarray(s, float))).sum(axis=0).min()) for s in samples) < 2:
        return point, np.full_like(point, np.nan), np.full_like(point, np.nan)
    draws = np.array(
        [stat(*(stratified_resample(s, rng) for s in samples)) for _ in range(reps)], dtype=float
    )
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return point, lo, hi


def score_matrix(
    frame: pd.DataFrame, metric: str, strategy: str, scenarios: Sequence[str]
) -> np.ndarray:
    """``strategy``'s ``metric`` as a ``num_runs`` x ``num_tasks`` matrix: one column per
    scenario in the order given, runs in seed order, NaN below a scenario's last run."""
    mine = frame[frame.strategy == strategy].sort_values("seed")
    cols = [mine.loc[mine.scenario == s, metric].to_numpy(dtype=float) for s in scenarios]
    out = np.full((max(len(c) for c in cols), len(cols)), np.nan)
    for j, col in enumerate(cols):
        out[: len(col), j] = col
    return out


def _checked(frame: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """The rows with a score, after checking the columns and that each run appears once."""
    if missing := [c for c in (*COLUMNS, metric) if c not in frame.columns]:
        raise UserError(f"the score table lacks column(s) {', '.join(missing)}")
    frame = frame.dropna(subset=[metric])
    if baseline not in set(frame.strategy):
        raise UserError(f"the baseline strategy {baseline!r} has no scored runs")
    if frame.duplicated(list(COLUMNS)).any():
        raise UserError("the score table has more than one row for a (scenario, strategy, seed)")
    return frame


def _per_scenario(
    frame: pd.DataFrame, metric: str, rng: np.random.Generator, reps: int, level: float
) -> pd.DataFrame:
    """Mean raw score and its bootstrap CI per (scenario, strategy), with the run count ``n``."""
    rows = []
    for (scenario, strategy), g in frame.groupby(["scenario", "strategy"], sort=False):
        mean, lo, hi = bootstrap_ci(g[metric].to_numpy(), rng, reps, level)
        rows.append(dict(scenario=scenario, strategy=strategy, n=len(g), mean=mean, lo=lo, hi=hi))
    return pd.DataFrame(rows)


def _with_ci(
    name: str,
    stat: Callable[..., float],
    samples: Sequence[np.ndarray],
    rng: np.random.Generator,
    reps: int,
    level: float,
) -> dict[str, float]:
    """``{name, name_lo, name_hi}``: :func:`stratified_bootstrap` of a scalar statistic."""
    point, lo, hi = stratified_bootstrap(stat, samples, rng, reps, level)
    return {name: float(point), f"{name}_lo": float(lo), f"{name}_hi": float(hi)}


def _overall_row(
    strategy: str,
    x: np.ndarray,
    base: np.ndarray | None,
    pairs: np.ndarray | None,
    rng: np.random.Generator,
    reps: int,
    level: float,
) -> dict[str, object]:
    """IQM, mean and (unless ``base`` is None) P(x > base), unpaired and over the ``pairs``
    (x − base per seed), of normalised scores, with CIs."""
    row: dict[str, object] = {"strategy": strategy, "scenarios": x.shape[1]}
    row["runs"] = int((~np.isnan(x)).sum())
    row |= _with_ci("iqm", iqm, [x], rng, reps, level)
    row |= _with_ci("mean", mean_of_means, [x], rng, reps, level)
    if base is None or pairs is None:
        empty = ["p_improve", "p_improve_lo", "p_improve_hi", "pairs"]
        return row | dict.fromkeys([*empty, "p_paired", "p_paired_lo", "p_paired_hi"], np.nan)
    row |= _with_ci("p_improve", probability_of_improvement, [x, base], rng, reps, level)
    row["pairs"] = int((~np.isnan(pairs)).sum())
    if row["pairs"] == 0:
        return row | dict.fromkeys(["p_paired", "p_paired_lo", "p_paired_hi"], np.nan)
    return row | _with_ci("p_paired", paired_probability_of_improvement, [pairs], rng, reps, level)


def _profiles(
    norm: Mapping[str, np.ndarray],
    taus: np.ndarray,
    rng: np.random.Generator,
    reps: int,
    level: float,
) -> pd.DataFrame:
    """:func:`performance_profile` of every strategy's normalised scores with its CI band (one
    bootstrap per strategy, so a band is the same resamples at every τ)."""
    frames = []
    for strategy, x in norm.items():
        fraction, lo, hi = stratified_bootstrap(
            lambda m: performance_profile(m, taus), [x], rng, reps, level
        )
        frames.append(
            pd.DataFrame(dict(strategy=strategy, tau=taus, fraction=fraction, lo=lo, hi=hi))
        )
    return pd.concat(frames, ignore_index=True)


def _default_taus(norm: Mapping[str, np.ndarray]) -> np.ndarray:
    """101 thresholds from min(0, lowest) to max(1, highest) normalised score of any run."""
    pooled = np.concatenate([x[~np.isnan(x)] for x in norm.values()])
    return np.linspace(min(0.0, pooled.min()), max(1.0, pooled.max()), 101)


def aggregate(
    frame: pd.DataFrame,
    metric: str,
    *,
    chance: float | Mapping[str, float],
    rng: np.random.Generator,
    baseline: str = "reset",
    reps: int = 2000,
    taus: np.ndarray | None = None,
    level: float = 0.95,
) -> AggregateResult:
    """Every strategy across scenarios, from a tidy ``frame`` with columns ``scenario,
    strategy, seed, <metric>`` (one row per run; rows without a score are dropped).

    Scores are normalised per scenario (chance -> 0, the baseline's mean -> 1; the bounds are
    fixed, not re-estimated in the bootstrap). The across-scenario tables use the scenarios in
    which every strategy has runs, so all strategies are compared on the same ones. ``taus``
    defaults to 101 points from min(0, lowest) to max(1, highest) normalised score.
    """
    frame = _checked(frame, metric, baseline)
    strategies = list(dict.fromkeys(frame.strategy))
    present = frame.groupby("scenario", sort=False).strategy.nunique()
    scenarios = [s for s in present.index if present[s] == len(strategies)]
    if not scenarios:
        raise UserError("no scenario has runs of every strategy: nothing to aggregate")
    bounds = normalisation_bounds(frame[frame.scenario.isin(scenarios)], metric, chance, baseline)
    norm = {
        s: normalise(score_matrix(frame, metric, s, scenarios), *bounds.loc[scenarios].T.values)
        for s in strategies
    }
    taus = _default_taus(norm) if taus is None else np.asarray(taus, dtype=float)
    normed = frame[frame.scenario.isin(scenarios)].copy()
    b = bounds.loc[normed.scenario]
    normed[metric] = normalise(normed[metric].to_numpy(), b.low.to_numpy(), b.high.to_numpy())
    overall = [
        _overall_row(
            s,
            x,
            None if s == baseline else norm[baseline],
            None if s == baseline else paired_matrix(normed, metric, s, baseline, scenarios),
            rng,
            reps,
            level,
        )
        for s, x in norm.items()
    ]
    return AggregateResult(
        metric=metric,
        baseline=baseline,
        per_scenario=_per_scenario(frame, metric, rng, reps, level),
        bounds=bounds.reset_index(),
        overall=pd.DataFrame(overall),
        profiles=_profiles(norm, taus, rng, reps, level),
        excluded=tuple(s for s in present.index if s not in scenarios),
    )
