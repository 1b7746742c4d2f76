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
