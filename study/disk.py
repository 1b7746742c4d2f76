"""The disk a study needs: per trial checkpoint, peak and final, for ``study validate``.

A trial's checkpoint is its run's largest saved state, built by the strategy's own code on the
meta device (:func:`plasticity.footprint.checkpoint_bytes`: within 0.2% of a real one for every
built-in strategy). A running trial has at most ``KEEP + 1`` checkpoints on disk (Ray writes the
next before it deletes the oldest); a finished one has none (:mod:`study.store.checkpoints`).

What stays is each trial's results and its share of Ray's snapshot, estimated from one report
row of the study (its JSON, with the trial's config, as Ray writes it): ``result.json``, the
TensorBoard events and ``progress.csv`` take :data:`RESULT_FILES` times the rows' bytes; Ray's
snapshot keeps per trial :data:`PER_METRIC` bytes per numeric metric (its running statistics)
and :data:`SNAPSHOT_ROWS` rows, twice (the snapshot and the whole copy the driver keeps; the
copy is refreshed at most 5% of the driver's time, so it may be of an earlier, smaller moment:
counted whole, an upper bound).
These factors were measured on ray 2.60 (a 4-trial study: 43 KB per trial folder, 40 KB per
trial in experiment_state.json).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass

from study.plan import base_run, epochs_per_trial, eval_counts, search_plan
from study.spec import StudySpec
from study.store.checkpoints import KEEP

RESULT_FILES = 2.7
"""result.json (1), TensorBoard's events (~1) and progress.csv (~0.25) per row's JSON bytes."""
PER_METRIC = 650
"""Bytes per numeric metric of a trial in Ray's snapshot (metric_analysis, metric_n_steps)."""
SNAPSHOT_ROWS = 10
"""Rows' worth of a trial in Ray's snapshot (its last result, the checkpoint manager's results,
its config three times)."""
FIXED = 200_000
"""The study's own files: tuner.pkl and its copy, optuna.db's schema, study.json, study.yaml."""


@dataclass(frozen=True)
class Disk:
    checkpoint: dict[str, int]
    """Per strategy, bytes of one trial's largest checkpoint."""
    final: int
    """Bytes the finished study keeps."""
    peak: int
    """Bytes at most while it runs: the final, plus every slot's running trial's checkpoints."""

    def text(self, free: int | None = None, where: str = "") -> str:
        per = ", ".join(f"{s} {_mb(b)}" for s, b in self.checkpoint.items())
        out = (
            f"checkpoint per trial {per} (a finished trial keeps none); "
            f"peak {_mb(self.peak)}, final {_mb(self.final)}"
        )
        if free is not None:
            out += f"; {_mb(free)} free at {where}"
            if free < self.peak:
                out += f" -- WARNING: less than the peak the study needs ({_mb(self.peak)})"
        return out


def _mb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def report_row(spec: StudySpec, strategy: str) -> dict:
    """One report of ``strategy``'s trials as Ray writes it to result.json: the epoch's record
    and objectives (:func:`study.trainable.epoch_metrics`), our keys, Ray's keys and the
    trial's config; full-precision floats, as real ones are."""
    from plasticity.loop import Record
    from plasticity.metrics import OBJECTIVES

    x = 0.12345678901234567
    record = Record(strategy, 0, 0, 0, 100, x, x, x, x, x, 10**6, 10**6, x, True, x).to_dict()
    run = base_run(spec, strategy, spec.budget.search_seed)
    if run.get("diagnostics"):
        record.update({f"diag_{i}": x for i in range(10)})
    ours = {"epochs_done": 9, "epochs_total": 9, "restart_epochs_done": 6, "run_complete": False}
    ours |= {"restored_from": "", "device": "cpu", "node": "f" * 56, "started_at": 1.8e9 + x}
    ours |= {"reported_at": 1.8e9 + x}
    ray = {"timestamp": 1800000000, "checkpoint_dir_name": "checkpoint_000000", "done": False}
    ray |= {"should_checkpoint": True, "training_iteration": 9, "trial_id": "0123abcd_00000"}
    ray |= {"date": "2026-12-04_19-57-12", "time_this_iter_s": x, "time_total_s": x}
    ray |= {"pid": 123456, "hostname": "a-host-name", "node_ip": "10.0.0.1"}
    ray |= {"time_since_restore": x, "iterations_since_restore": 9, "experiment_tag": "1_" * 40}
    config = {"strategy": strategy, "phase": "search", "checkpoint_every": 0, "run": run}
    return {**record, **dict.fromkeys(OBJECTIVES, x), **ours, **ray, "config": config}


def row_bytes(spec: StudySpec, strategy: str) -> tuple[int, int]:
    """Bytes of one report row (:func:`report_row`) and its numeric metrics' count."""
    row = report_row(spec, strategy)
    numeric = sum(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values())
    return len(json.dumps(row)), numeric


def estimate(spec: StudySpec) -> Disk:
    """The study's disk (see the module's docstring): upper bounds where trials differ (the
    most epochs a trial may train, an ``expanded`` trial's frozen part always kept)."""
    from plasticity.config import RunConfig
    from plasticity.footprint import checkpoint_bytes

    search, evals = search_plan(spec), eval_counts(spec)
    checkpoint, final, running = {}, FIXED, []
    for strategy in spec.strategies:
        run = base_run(spec, strategy, spec.budget.search_seed)
        epochs = epochs_per_trial(spec, strategy)[1]
        tasks = spec.setting.restarts + 1
        config = RunConfig.from_dict({**run, "device": "cpu", "epochs": epochs // tasks})
        checkpoint[strategy] = checkpoint_bytes(config, strategy)
        row, numeric = row_bytes(spec, strategy)
        trials = search[strategy] + evals.get(strategy, 0)
        per_trial = epochs * row * RESULT_FILES + 2 * (PER_METRIC * numeric + SNAPSHOT_ROWS * row)
        final += math.ceil(trials * per_trial)
        every = spec.checkpoint_every or epochs // tasks
        written = math.ceil(epochs / every)
        running.append(min(written, KEEP + 1) * checkpoint[strategy])
    slots = [b for b in running for _ in range(spec.concurrency)]  # the largest first
    slots = sorted(slots, reverse=True)[: spec.max_concurrent_trials or len(slots)]
    return Disk(checkpoint, final, final + sum(slots))


def free_bytes(storage: str) -> int | None:
    """Free bytes where a local storage lives (its nearest existing folder); None for a URI."""
    from pathlib import Path

    if "://" in storage:
        return None
    path = Path(storage).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free
