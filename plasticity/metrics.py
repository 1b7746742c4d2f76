"""How fast and how well new tasks are learned: the study objectives, from epoch records.

Defined once here and used by every consumer (the study trainable's running objective, the
``plasticity run`` summary, the analysis tables): pure functions of an epoch table (one row per
epoch record, :class:`plasticity.loop.Record` fields; no torch).

For restart tasks ``r = 1..R`` (task 0 is the original objective, the same for every
strategy), with ``acc[r, e]`` the accuracy after epoch ``e`` of task ``r``:

- ``auc_*_acc``   = mean_r mean_e acc[r, e]: the area under each task's learning curve
  (normalised by its length), averaged over restarts. High when new tasks are learned fast
  *and* well.
- ``final_*_acc`` = mean_r acc[r, E-1]: accuracy at the end of each task.

``*`` is ``test`` or ``train``; under ``random_labels`` only ``train`` means anything.
Interrupted or running runs: each task counts with the epochs it has recorded (``mean_e`` over
those, ``final`` at the latest of them); before the first restart the values are task 0's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a table is made: a study file's metric names
    import pandas as pd  # (study status, study presets) need no pandas

SPLITS = ("test", "train")
OBJECTIVES = tuple(f"{kind}_{split}_acc" for split in SPLITS for kind in ("auc", "final"))
"""``auc_test_acc``, ``final_test_acc``, ``auc_train_acc``, ``final_train_acc``."""


def per_task(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys`` + ``task``: ``auc_*`` (mean accuracy over the task's recorded
    epochs), ``final_*`` (accuracy at its latest recorded epoch) and ``epochs_seen``."""
    g = frame.sort_values("epoch", kind="stable").groupby([*keys, "task"], sort=False)
    aggs: dict[str, Any] = {}
    for split in SPLITS:
        aggs[f"auc_{split}_acc"] = (f"{split}_acc", "mean")
        aggs[f"final_{split}_acc"] = (f"{split}_acc", "last")
    return g.agg(**aggs, epochs_seen=("epoch", "size")).reset_index()


def per_run(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys``: the :data:`OBJECTIVES` averaged over restart tasks 1..R of
    :func:`per_task` (task 0 alone for a run that has not reached a restart), and
    ``restarts_seen`` (the highest task recorded)."""
    tasks = per_task(frame, keys)
    restarted = tasks.groupby(list(keys), sort=False)["task"].transform("max") > 0
    used = tasks[(tasks.task > 0) | ~restarted]
    out = used.groupby(list(keys), sort=False)[list(OBJECTIVES)].mean()
    out["restarts_seen"] = tasks.groupby(list(keys), sort=False)["task"].max()
    return out.reset_index()


def objectives(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The :data:`OBJECTIVES` of one run's records (empty for no records)."""
    import pandas as pd

    frame = pd.DataFrame(list(records))
    if frame.empty:
        return {}
    frame["_run"] = 0
    row = per_run(frame, ["_run"]).iloc[0]
    return {k: float(row[k]) for k in OBJECTIVES}


def running_objectives(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """:func:`objectives` without pandas, equal to it up to float rounding (a sum's last
    bit: pandas adds in its own way), for the study trainable's reports after every epoch
    but the last, where building a frame and grouping it took ~24 ms against ~10 us here.
    The value a search records, the last report's, comes from :func:`objectives`. Like
    pandas, a missing (None or NaN) accuracy is skipped: ``auc`` averages the values
    present, ``final`` is the latest one present."""
    tasks: dict[Any, list[Mapping[str, Any]]] = {}
    for r in records:
        tasks.setdefault(r["task"], []).append(r)
    if not tasks:
        return {}
    used = [t for t in tasks if t > 0] or list(tasks)  # per_run: task 0 before a restart
    out = {}
    for split in SPLITS:
        auc, final = [], []
        for t in used:
            values = [
                v
                for r in sorted(tasks[t], key=lambda r: r["epoch"])  # stable, as per_task's
                if (v := r.get(f"{split}_acc")) is not None and not math.isnan(v)
            ]
            if values:
                auc.append(math.fsum(values) / len(values))
                final.append(values[-1])
        out[f"auc_{split}_acc"] = math.fsum(auc) / len(auc) if auc else math.nan
        out[f"final_{split}_acc"] = math.fsum(final) / len(final) if final else math.nan
    return {k: float(out[k]) for k in OBJECTIVES}
