"""Long task sequences (Kumar et al. 2023, Dohare et al. 2024): accuracy on each new task against
its index, and early against late in the sequence. Pure functions of the epoch table (rows of
:func:`analysis.load.load`), randomness passed in.

Definitions (pinned; tests check each on hand-made tables):

- **online accuracy** of a task: the mean of ``train_acc`` over the task's recorded epochs.
  ``train_acc`` is measured on each minibatch just before the update it causes, so with one
  epoch per task (the published protocol) this is the *average online task accuracy* of Kumar
  et al.; over restarts 1..R its mean is the study objective ``auc_train_acc``.
- **dormant share** of a task: ``diag_dormant`` (:func:`plasticity.diagnostics.dormant_ratio`)
  at the task's latest epoch that recorded it; NaN where diagnostics were off.
- **early and late**: with R the highest task recorded in the setting, the first K restart tasks
  ``1..K`` and the last K ``R-K+1..R``, K = ceil(R / 10) (10% of the restart tasks, at least
  1; integer arithmetic, so 300 restarts give 30, not 31). A run's early (late) value is its
  mean over the window's tasks it recorded; ``late − early`` is paired within each seed and
  bootstrapped over seeds.
- **long sequence**: a setting with at least :data:`LONG_SEQUENCE` restart tasks.
- **wall time per task**: the sum of the record's ``seconds`` (train + evaluation) over a task's
  epochs, averaged over a run's tasks (0..R), then over seeds; ``time_vs_reset`` divides it by
  reset's in the same setting and the same study (:func:`time_vs_reset`). Trials that shared a
  machine slow each other: compare within a study, never across studies or machines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.stats import RUN_KEYS, bootstrap_ci, paired_difference_ci
from analysis.verdicts import SETTING, setting_name

LONG_SEQUENCE = 20
"""Restart tasks from which a setting gets the long-sequence section (2 tasks in each window):
the scenarios (5 restarts) and the paper's full shuffle (15) stay below it; the paper's class
shuffle (30) and Kumar et al.'s protocol (hundreds of one-epoch tasks) reach it."""
DORMANT = "diag_dormant"


def task_table(epochs: pd.DataFrame, keys: list[str] = RUN_KEYS) -> pd.DataFrame:
    """One row per ``keys`` + ``task`` of ``epochs`` (the epoch table): ``online_acc`` (mean
    ``train_acc`` over the task's epochs), ``final_test_acc`` (``test_acc`` at its latest
    epoch), ``dormant`` (``diag_dormant`` at its latest epoch that recorded it, NaN if none),
    ``seconds`` (its epochs' wall time summed, NaN if not recorded) and ``epochs_seen``."""
    frame = epochs.assign(
        _dormant=epochs.get(DORMANT, np.nan), _seconds=epochs.get("seconds", np.nan)
    )
    frame = frame.sort_values("epoch", kind="stable")
    out = frame.groupby([*keys, "task"], sort=False).agg(
        online_acc=("train_acc", "mean"),
        final_test_acc=("test_acc", "last"),
        dormant=("_dormant", "last"),  # "last" skips NaN: the latest epoch that recorded it
        seconds=("_seconds", "sum"),
        timed=("_seconds", "count"),
        epochs_seen=("epoch", "size"),
    )
    out["seconds"] = out.seconds.where(out.timed > 0)  # a sum of nothing is unknown, not 0
    out = out.drop(columns="timed").reset_index()
    return out.sort_values([*keys, "task"], ignore_index=True)


def window(restarts: int, share: int = 10) -> int:
    """K, the tasks in each of the early and late windows of ``restarts`` restart tasks:
    ``ceil(restarts / share)``, at least 1 (``share`` = 10: 10%)."""
    return max(1, -(-restarts // share))


def windows(restarts: int) -> tuple[range, range]:
    """The early and late restart tasks of a sequence with tasks ``0..restarts``."""
    k = window(restarts)
    return range(1, k + 1), range(restarts - k + 1, restarts + 1)


def span(tasks: range) -> str:
    """``"1–30"``; a single task as ``"7"``."""
    return f"{tasks[0]}–{tasks[-1]}" if len(tasks) > 1 else str(tasks[0])


def seed_windows(tasks: pd.DataFrame, early: range, late: range) -> pd.DataFrame:
    """Per seed of one strategy's :func:`task_table` rows: the mean ``online_acc`` and
    ``dormant`` over the ``early`` and over the ``late`` tasks (``seeds`` x 4: ``early``,
    ``late``, ``dormant_early``, ``dormant_late``; NaN for a window a seed has no task of)."""
    parts = {}
    for name, span_ in (("early", early), ("late", late)):
        rows = tasks[tasks.task.isin(span_)].groupby("seed")
        parts[name] = rows.online_acc.mean()
        parts[f"dormant_{name}"] = rows.dormant.mean()
    index = pd.Index(sorted(tasks.seed.unique()), name="seed")
    return pd.DataFrame(parts).reindex(index)


def early_late(tasks: pd.DataFrame, rng: np.random.Generator, reps: int = 2000) -> pd.DataFrame:
    """Per setting and strategy of a :func:`task_table`: the windows (``k``, ``early_tasks``,
    ``late_tasks``), ``seeds``, the mean over seeds of the early and late online accuracy with
    95% bootstrap CIs, ``diff`` = late − early paired over seeds with its CI (``diff_lo``,
    ``diff_hi``), the mean dormant share early and late (NaN when not recorded), and the wall
    time per task, ``seconds_per_task`` and ``time_vs_reset`` (NaN without reset or times)."""
    out = []
    for key, setting in tasks.groupby(SETTING, sort=False):
        restarts = int(setting.task.max())
        early, late = windows(restarts)
        for strategy, g in setting.groupby("strategy", sort=False):
            per_seed = seed_windows(g, early, late)
            row = {**dict(zip(SETTING, key)), "strategy": strategy, "seeds": len(per_seed)}
            row |= {"k": len(early), "early_tasks": span(early), "late_tasks": span(late)}
            for name in ("early", "late"):
                mean, lo, hi = bootstrap_ci(per_seed[name].to_numpy(), rng, reps)
                row |= {name: mean, f"{name}_lo": lo, f"{name}_hi": hi}
            both = per_seed[["early", "late"]].dropna()
            diff, lo, hi = paired_difference_ci(
                both.late.to_numpy(), both.early.to_numpy(), rng, reps
            )
            row |= {"pairs": len(both), "diff": diff, "diff_lo": lo, "diff_hi": hi}
            row |= {
                "dormant_early": per_seed.dormant_early.mean(),
                "dormant_late": per_seed.dormant_late.mean(),
                "seconds_per_task": g.groupby("seed").seconds.mean().mean(),
            }
            out.append(row)
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    ratio = time_vs_reset(tasks)
    frame["time_vs_reset"] = frame.join(ratio, on=[*SETTING, "strategy"]).time_vs_reset
    return frame


def time_vs_reset(tasks: pd.DataFrame) -> pd.Series:
    """Per setting and strategy of a :func:`task_table`: its wall time per task over reset's
    **in the same study** (``source``), the mean over the studies that ran both; NaN where no
    study did. Studies run at other times, or on other machines, are never divided: the
    protocol's strategies run as several studies, one on an idle machine and one beside other
    jobs, and their times differ 4x for the same network."""
    per_run = tasks.groupby([*SETTING, "source", "strategy", "seed"], sort=False).seconds.mean()
    per_study = per_run.groupby(level=[*SETTING, "source", "strategy"], sort=False).mean()
    frame = per_study.rename("seconds").reset_index()
    reset = frame[frame.strategy == "reset"].set_index([*SETTING, "source"]).seconds
    frame = frame.join(reset.rename("_reset"), on=[*SETTING, "source"])
    frame["time_vs_reset"] = frame.seconds / frame._reset
    return frame.groupby([*SETTING, "strategy"], sort=False).time_vs_reset.mean()


def smoothing(restarts: int) -> int:
    """The centred moving-average window of the per-task figure: the odd number
    ``2 * (restarts // 60) + 1`` (about 1/30 of the sequence: 1 below 60 restarts, 11 at 300,
    33 at 1,000), odd so that each task is its window's centre."""
    return 2 * (restarts // 60) + 1


def moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``values`` (``num_runs`` x ``num_tasks``) along tasks over
    ``width`` (odd) tasks; near the ends, and around missing values (NaN), the mean of those
    of the window that exist (NaN where none does)."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    half = width // 2
    present = ~np.isnan(values)
    padded = np.pad(np.where(present, values, 0.0), ((0, 0), (half + 1, half)))
    counts = np.pad(present.astype(float), ((0, 0), (half + 1, half)))
    sums = np.cumsum(padded, axis=1)
    ns = np.cumsum(counts, axis=1)
    total = sums[:, width:] - sums[:, :-width]
    n = ns[:, width:] - ns[:, :-width]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan)


def long_settings(table: pd.DataFrame) -> list[tuple[str, ...]]:
    """The settings (:data:`analysis.verdicts.SETTING` values) of ``table`` (epochs or
    :func:`task_table` rows) with at least :data:`LONG_SEQUENCE` restart tasks."""
    if table.empty:
        return []
    top = table.groupby(SETTING, sort=False).task.max()
    return [key for key, r in top.items() if r >= LONG_SEQUENCE]


@dataclass(frozen=True, eq=False)
class LongSequence:
    """The data of one long setting's section: its table, figure and sentences."""

    title: str
    """``model/dataset/objective`` (:func:`analysis.verdicts.setting_name`)."""
    tasks: pd.DataFrame
    """Its :func:`task_table` rows."""
    early_late: pd.DataFrame
    """Its :func:`early_late` rows, one per strategy."""
    smoothing: int
    """The figure's moving-average window (:func:`smoothing`)."""


def long_sequences(
    rows: pd.DataFrame, rng: np.random.Generator, reps: int = 2000
) -> tuple[LongSequence, ...]:
    """A :class:`LongSequence` per setting of ``rows`` (the comparison epochs) with at least
    :data:`LONG_SEQUENCE` restart tasks; empty for shorter studies."""
    views = []
    for key in long_settings(rows):
        epochs = rows[(rows[SETTING] == list(key)).all(axis=1)]
        tasks = task_table(epochs)
        views.append(
            LongSequence(
                title=setting_name(dict(zip(SETTING, key))),
                tasks=tasks,
                early_late=early_late(tasks, rng, reps),
                smoothing=smoothing(int(tasks.task.max())),
            )
        )
    return tuple(views)
