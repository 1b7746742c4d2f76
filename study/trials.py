"""What a trial is, in the study's terms: its phase and label, the keys it reports beside its
epoch record, when it ran whole, and which whole trial is a strategy's best.

Plain Python, no Ray and no torch: the searcher, the driver, the trainable, ``study status``
and the fault suite all read these one definitions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SEARCH, EVAL = "search", "eval"
"""The two kinds of trial (a trial config's ``phase``)."""


def label(phase: str, strategy: str) -> str:
    """``PHASE-STRATEGY``, e.g. ``search-reset``: a phase of study.json, and the start of the
    trial folders of that phase (``trials/search-reset_<trial id>``)."""
    return f"{phase}-{strategy}"


def unlabel(phase_label: str) -> tuple[str, str]:
    """``(phase, strategy)`` of a :func:`label`."""
    phase, strategy = phase_label.split("-", 1)
    return phase, strategy


# Keys the trainable reports besides the epoch record and the objectives. Ray fills keys of its
# own (done, training_iteration, trial_id, ...): ours never take one of those names.
RUN_COMPLETE = "run_complete"
"""True in the report of a trial's last epoch only: the trial ran every epoch of every task."""
RESTART_EPOCHS = "restart_epochs_done"
"""Epochs trained on restart tasks (1..R): ASHA's clock. During task 0 (the same objective for
every strategy, so it says nothing about plasticity) it is 0, so ASHA's first rung always
compares running objectives taken over restart tasks."""
RESTORED_FROM = "restored_from"
"""The checkpoint this run of the trial started from (its folder name), "start" or "" (new)."""
EXTRA_KEYS = (
    RUN_COMPLETE,
    RESTORED_FROM,
    RESTART_EPOCHS,
    "epochs_done",
    "epochs_total",
    "device",
    "node",
    "started_at",
    "reported_at",
)


NO_WHOLE_TRIAL = "no whole trial"
"""A rung's status when none of its search trials ran every epoch (nothing to evaluate)."""


def best_trial(candidates: Iterable[tuple[str, float]]) -> str | None:
    """The best of a strategy's whole search trials, given as ``(trial id, objective)`` in the
    order they were suggested: the highest finite objective, the earliest on a tie (None when
    there is no such trial). The searcher picks the trial the evaluation re-runs by this rule,
    and ``study status`` shows the best so far by it."""
    best, best_value = None, -math.inf
    for trial_id, value in candidates:
        if math.isfinite(value) and (best is None or value > best_value):
            best, best_value = trial_id, value
    return best
