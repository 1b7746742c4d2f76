"""How fast and how well new tasks are learned: the study objectives, from epoch records.

Pure functions of record dicts (no torch), shared by the study trainable and the analysis.

For restart tasks ``r = 1..R`` (task 0 is the original objective, the same for every
strategy), with ``acc[r, e]`` the accuracy after epoch ``e`` of task ``r``:

- ``auc_*_acc``   = mean_r mean_e acc[r, e]: the area under each task's learning curve
  (normalised by its length), averaged over restarts. High when new tasks are learned fast
  *and* well.
- ``final_*_acc`` = mean_r acc[r, E-1]: accuracy at the end of each task.

``*`` is ``test`` or ``train``; under ``random_labels`` only ``train`` means anything. While a
run is in progress the values cover the tasks seen so far (the current one up to its latest
epoch); before the first restart they are computed on task 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def objectives(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``auc_test_acc``, ``final_test_acc``, ``auc_train_acc``, ``final_train_acc``."""
    by_task: dict[int, list[Mapping[str, Any]]] = {}
    for r in records:
        by_task.setdefault(int(r["task"]), []).append(r)
    if not by_task:
        return {}
    tasks = [t for t in by_task if t > 0] or [0]
    out = {}
    for split in ("test", "train"):
        key = f"{split}_acc"
        curves = [sorted(by_task[t], key=lambda r: r["epoch"]) for t in tasks]
        out[f"auc_{key}"] = sum(sum(r[key] for r in c) / len(c) for c in curves) / len(curves)
        out[f"final_{key}"] = sum(c[-1][key] for c in curves) / len(curves)
    return out
