"""Statistics over seeds: pure functions on arrays, randomness passed in (rliable style).

Confidence intervals are percentile bootstrap intervals of the mean over seeds; with a single
seed there is no interval and the bounds are NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from plasticity.metrics import OBJECTIVES, per_run, per_task

METRICS = OBJECTIVES


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, reps: int = 2000, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` (``num_seeds``) and its percentile bootstrap CI."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    idx = rng.integers(0, len(values), size=(reps, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return mean, float(lo), float(hi)


def bootstrap_band(
    curves: np.ndarray, rng: np.random.Generator, reps: int = 1000, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise mean and CI of ``curves`` (``num_seeds`` x ``num_points``): the same resampled
    seeds for every point, so a band is one bootstrap, not one per point."""
    curves = np.asarray(curves, dtype=float)
    # numpy's nan-functions copy the array and nanpercentile takes each point's quantile in a
    # Python loop (apply_along_axis): at 1,000 tasks the band took 80 ms a curve, where the
    # plain functions, equal to them on arrays without NaN, are vectorised.
    missing = bool(np.isnan(curves).any())
    mean_of = np.nanmean if missing else np.mean
    percentile = np.nanpercentile if missing else np.percentile
    with warnings.catch_warnings():
        # Runs of a study still running end at different tasks: a resample of only the runs
        # that have not reached a point has no value there, and its NaN is the answer, not a
        # fault (numpy warns "Mean of empty slice" and "All-NaN slice", once per figure line).
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = mean_of(curves, axis=0)
        if curves.shape[0] < 2:
            return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
        idx = rng.integers(0, curves.shape[0], size=(reps, curves.shape[0]))
        means = mean_of(curves[idx], axis=1)  # reps x num_points
        lo, hi = percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
    return mean, lo, hi


def paired_difference_ci(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, reps: int = 2000
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired seeds and its bootstrap CI (seeds resampled together)."""
    return bootstrap_ci(np.asarray(a, float) - np.asarray(b, float), rng, reps)


RUN_KEYS = ["dataset", "model", "objective", "strategy", "seed", "trial", "phase", "source"]
"""What identifies one run of one strategy in the tidy table."""


def per_seed_objectives(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (:data:`RUN_KEYS`) with its objectives
    (:func:`plasticity.metrics.per_run`: ``auc_*`` and ``final_*`` over restarts 1..R) and
    ``restarts_seen``."""
    return per_run(table, RUN_KEYS)


def per_restart(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run and task (:func:`plasticity.metrics.per_task`): final accuracy and area
    under the learning curve of that task, and ``epochs_seen``."""
    return per_task(table, RUN_KEYS)
