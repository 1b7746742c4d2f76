"""Studies at scale: the benchmark-only trial that only reports (``benchmarks/scale.py --noop``)
behaves like a real trial towards the driver."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")


def test_report_only_reports_like_a_real_trial(monkeypatch, tmp_path: Path):
    """One report per epoch with a real record's keys, a checkpoint at each task's end (as the
    real trainable with ``checkpoint_every`` unset), the last report complete with its
    objectives; the same config reports the same values (a retry repeats them)."""
    from plasticity.loop import Record
    from plasticity.metrics import OBJECTIVES
    from study import trainable
    from study.trials import RUN_COMPLETE

    config = {
        "strategy": "reset",
        "phase": "search",
        "checkpoint_every": None,
        "run": {"dataset": "mnist-5k", "model": "mlp-small", "restarts": 2, "epochs": 3,
                "strategies": ["reset"], "lr": 0.01, "seed": 0},
    }  # fmt: skip

    def run() -> list[tuple[dict, bool]]:
        reports = []

        def report(metrics, checkpoint=None):
            if checkpoint is not None:
                saved = json.loads((Path(checkpoint.path) / "records.json").read_text())
                assert len(saved) == metrics["epochs_done"]
            reports.append((metrics, checkpoint is not None))

        monkeypatch.setattr(trainable.tune, "report", report)
        trainable.report_only(config, started_at=0.0)
        return reports

    reports = run()
    assert len(reports) == 9
    assert [i for i, (_, saved) in enumerate(reports) if saved] == [2, 5, 8]
    record_keys = {f.name for f in dataclasses.fields(Record)} - {"diagnostics"}
    assert all(record_keys <= set(m) for m, _ in reports)
    last = reports[-1][0]
    assert last[RUN_COMPLETE] and not any(m[RUN_COMPLETE] for m, _ in reports[:-1])
    assert set(OBJECTIVES) <= set(last)
    again = run()
    assert [m["test_acc"] for m, _ in again] == [m["test_acc"] for m, _ in reports]


class _Trial:
    """What Ray's snapshot manager reads of a trial: its kept checkpoints."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.kept: list[int] = []
        self.run_metadata = SimpleNamespace(
            checkpoint_manager=SimpleNamespace(best_checkpoint_results=self.kept)
        )

    def checkpoint(self, manager) -> bool:
        """One more checkpoint (two kept, as CheckpointConfig(num_to_keep=2)); whether Ray
        would now force a snapshot."""
        self.kept.append(len(self.kept))
        del self.kept[:-2]
        manager.on_trial_checkpoint(self)
        return manager._should_force_sync_up


def test_a_snapshot_is_forced_only_when_a_trial_could_lose_the_checkpoint_it_names():
    """Ray forces a snapshot once a trial has checkpointed num_to_keep (2) times since the last
    one, so that no snapshot names a deleted checkpoint. A trial that had no checkpoint at the
    last snapshot has none to lose: its 2 checkpoints force nothing (the per-trial snapshot
    that made the driver's cost grow with the study); a third, which deletes its first, does.
    A trial that had a checkpoint at the last snapshot forces one at its second, as Ray does."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    from study.driver.ray_setup import snapshot_when_needed

    snapshot_when_needed()
    snapshot_when_needed()  # idempotent

    def manager():
        return _ExperimentCheckpointManager(
            storage=None, checkpoint_period="auto", sync_every_n_trial_checkpoints=2
        )

    new, m = _Trial(), manager()
    assert [new.checkpoint(m), new.checkpoint(m)] == [False, False]
    assert new.checkpoint(m)
    old, m = _Trial(), manager()
    old.kept.append(-1)  # a checkpoint from before the last snapshot
    assert [old.checkpoint(m), old.checkpoint(m)] == [False, True]
