"""Bounded disk: a finished trial's checkpoints emptied (a tombstone left, which a resume's
retry reads as "run from the start"), running trials' leases, and the disk estimate of
``study validate`` (the checkpoint size against real ones; the peak and final against a real
study's folder, under Ray, at the end)."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from pyarrow import fs as pafs

from study.store.checkpoints import (
    TOMBSTONE,
    Lease,
    drop_checkpoints,
    end_lease,
    leases_text,
    live_leases,
    sweep_checkpoints,
    write_lease,
)

LOCAL = pafs.LocalFileSystem()


def _checkpoint(folder: Path, state: bytes = b"state") -> Path:
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(state)
    (folder / "records.json").write_text("[]")
    return folder


def test_a_finished_trials_checkpoints_are_emptied_to_a_tombstone_and_late_writes_swept(tmp_path):
    trial = tmp_path / "trials" / "search-reset_ab_00001"
    for n in (1, 2):
        _checkpoint(trial / f"checkpoint_00000{n}")
    (trial / "result.json").write_text("{}")
    assert drop_checkpoints(LOCAL, str(trial)) == 2
    for n in (1, 2):
        assert sorted(p.name for p in (trial / f"checkpoint_00000{n}").iterdir()) == [TOMBSTONE]
    assert (trial / "result.json").exists()  # only checkpoints go
    assert drop_checkpoints(LOCAL, str(trial)) == 0  # nothing more to empty
    # an orphaned worker writes its checkpoint late, into a tombstone and a new folder
    (trial / "checkpoint_000002" / "state.pt").write_bytes(b"late")
    _checkpoint(trial / "checkpoint_000003")
    assert sweep_checkpoints(LOCAL, str(tmp_path / "trials"), [trial.name, "gone_00009"]) == 2
    assert not list(trial.glob("checkpoint_*/state.pt"))


def _restore(config, data, folder: Path):
    from ray import tune

    from study.trainable import restore

    return restore(config, data, tune.Checkpoint.from_directory(str(folder)))


def test_a_tombstoned_checkpoint_makes_the_trial_run_from_the_start(tmp_path, tiny, tiny_config):
    """A resume from a snapshot older than the trial's end hands the trial its newest
    checkpoint, emptied since: the trial goes on from an older real one, else from the start."""
    from plasticity.loop import StrategyRun, save_state

    config = tiny_config.replace(strategies=("reset",))
    run = StrategyRun(config, "reset", tiny)
    trial = tmp_path / "trial"
    records = []
    for n in range(2):
        for _ in range(config.epochs):
            records.append(run.run_epoch().to_dict())
        folder = trial / f"checkpoint_00000{n}"
        folder.mkdir(parents=True)
        save_state(folder / "state.pt", run.state_dict())
        (folder / "records.json").write_text(json.dumps(records))
    newest = trial / "checkpoint_000001"
    assert _restore(config, tiny, newest)[2] == "checkpoint_000001"
    drop_checkpoints(LOCAL, str(trial))
    run, records, start = _restore(config, tiny, newest)
    assert (start, records, run.epochs_done) == ("start", [], 0)
    # an older checkpoint that is still whole is taken
    folder = trial / "checkpoint_000000"
    (folder / TOMBSTONE).unlink()
    fresh = StrategyRun(config, "reset", tiny)
    for _ in range(config.epochs):
        fresh.run_epoch()
    save_state(folder / "state.pt", fresh.state_dict())
    (folder / "records.json").write_text(json.dumps([{}] * config.epochs))
    assert _restore(config, tiny, newest)[2] == "checkpoint_000000"


def test_leases_name_the_trials_that_may_still_run(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_gcs_rpc_server_reconnect_timeout_s", raising=False)
    study, now, here = str(tmp_path), time.time(), socket.gethostname()
    write_lease(LOCAL, study, Lease("a_00001", "other-host", 11, "n1", now - 30, 2.0))
    write_lease(LOCAL, study, Lease("a_00002", "other-host", 12, "n1", now - 200, 2.0))  # stale
    write_lease(LOCAL, study, Lease("a_00003", here, os.getpid(), "n2", now - 5, 1.0))
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    write_lease(LOCAL, study, Lease("a_00004", here, dead, "n2", now - 5, 1.0))
    (tmp_path / "running" / "torn.json").write_text('{"trial": ')
    live = live_leases(LOCAL, study, now)
    assert [x.trial for x in live] == ["a_00001", "a_00003"]  # oldest report first
    text = leases_text(live, now)
    assert text.startswith("2 trial(s) may still be running elsewhere (a_00001 on other-host")
    assert "last report 30 s ago" in text and "\n" not in text
    monkeypatch.setenv("RAY_gcs_rpc_server_reconnect_timeout_s", "10")  # a shorter grace
    assert [x.trial for x in live_leases(LOCAL, study, now)] == ["a_00003"]
    end_lease(LOCAL, study, "a_00003")
    end_lease(LOCAL, study, "a_00003")  # gone already: nothing to do
    assert live_leases(LOCAL, study, now) == []


def test_status_says_when_trials_may_still_run_elsewhere(tmp_path):
    """A study folder with one fresh lease of another host: status names it."""
    from study.status import status_text

    root = tmp_path / "s"
    (root / "trials").mkdir(parents=True)
    spec = {"name": "s", "setting": {"dataset": "mnist-5k", "model": "mlp-small"}}
    spec["strategies"] = {"reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
    from study.spec import load_spec
    from study.store.folder import StudyFolder
    from study.store.state import new_state, write_new

    parsed = load_spec({**spec, "storage": str(tmp_path)})
    write_new(StudyFolder(str(root)), parsed, new_state(parsed))
    assert "elsewhere" not in status_text(str(root))
    write_lease(LOCAL, str(root), Lease("x_00001", "head-2", 7, "n", time.time(), 1.0))
    assert "1 trial(s) may still be running elsewhere (x_00001 on head-2 pid 7" in status_text(
        str(root)
    )


def test_a_trial_end_deletes_its_checkpoints_unless_it_errored_and_the_last_state_point():
    from study import faults
    from study.driver.experiment import TrialEndViews

    class Search:
        ended = {"a": {"error": False}, "b": {"error": True}}

        def __init__(self, phases):
            self._phases = phases

        def phases(self):
            return self._phases

    calls, points = [], []
    views = TrialEndViews({}, lambda s: calls.append("study.json"), lambda *a: calls.append(a))
    original = faults.at
    faults.at = points.append
    try:
        views(Search({"search-reset": "running"}), "reset", "eval", "a")
        views(Search({"search-reset": "running"}), "reset", "eval", "b")
        assert calls == ["study.json", ("a", "reset", "eval"), "study.json"] and points == []
        views(Search({"search-reset": "done"}), "reset", "eval", "b")
        assert points == [faults.LAST_STATE_WRITTEN]
    finally:
        faults.at = original


# -- the estimate ------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["reset", "expanded", "injection", "l2_init", "cbp"])
def test_the_checkpoint_estimate_is_a_real_checkpoints_size(tiny, tiny_config, strategy):
    """Built on the meta device by the strategy's own code; a real run's state after its first
    task boundary (``expanded``'s schedule keeps its frozen part: the largest it holds)."""
    from plasticity.footprint import checkpoint_state, state_bytes
    from plasticity.loop import StrategyRun

    config = tiny_config.replace(strategies=(strategy,))
    run = StrategyRun(config, strategy, tiny)
    for _ in range(config.epochs + 1):
        run.run_epoch()
    real = io.BytesIO()
    torch.save(run.state_dict(), real)
    assert state_bytes(checkpoint_state(config, strategy)) == pytest.approx(real.tell(), rel=0.01)


def test_the_disk_line_warns_when_the_storage_has_less_than_the_peak():
    from study.disk import Disk

    disk = Disk({"reset": 3_200_000}, final=9_000_000, peak=20_000_000)
    line = disk.text(free=10**12, where="/data")
    assert line == (
        "checkpoint per trial reset 3.2 MB (a finished trial keeps none); peak 20.0 MB, "
        "final 9.0 MB; 1000.0 GB free at /data"
    )
    assert disk.text(free=10**7, where="/data").endswith(
        "-- WARNING: less than the peak the study needs (20.0 MB)"
    )


def _size(root: Path) -> tuple[int, int]:
    """Bytes under ``root`` and of its largest checkpoint folder (files vanish as we look)."""
    total, checkpoints = 0, {}
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                n = os.path.getsize(os.path.join(folder, name))
            except OSError:
                continue
            total += n
            if Path(folder).name.startswith("checkpoint_"):
                checkpoints[folder] = checkpoints.get(folder, 0) + n
    return total, max(checkpoints.values(), default=0)


@pytest.mark.ray
def test_the_disk_estimate_matches_a_real_study(tmp_path):
    """A study of 3 expanded trials (2 checkpoints each), one at a time: its folder's size,
    sampled as it runs, peaks within 20% of the estimate, its largest checkpoint is within 5%
    of the estimated one, and it ends within 20% of the final estimate with no checkpoint."""
    import ray
    import yaml

    from study.commands import launch
    from study.disk import estimate
    from study.spec import load_spec

    raw = {
        "name": "d",
        "setting": {"dataset": "mnist-5k", "model": "mlp-small", "restarts": 1, "epochs": 2},
        "strategies": {"expanded": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}},
        "budget": {"trials_per_strategy": 3, "eval_seeds": 0},
        "resources": {"cpu": 1},
        "concurrency": 1,
        "storage": str(tmp_path),
    }
    spec = load_spec(yaml.safe_load(yaml.safe_dump(raw)))
    want = estimate(spec)
    root, peak, largest, stop = tmp_path / "d", [0], [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total, checkpoint = _size(root)
            peak[0], largest[0] = max(peak[0], total), max(largest[0], checkpoint)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sampler.start()
        launch(spec)
    finally:
        stop.set()
        sampler.join()
        ray.shutdown()
    final, _ = _size(root)
    # The driver's checked copy of the snapshot is held to 5% of its time (issue 23), so in a
    # study this short it is a copy of an early moment, smaller than the snapshot; the estimate
    # counts it whole (an upper bound). Compare the folder with its copy brought up to date.
    (snapshot,) = root.glob("trials/experiment_state-*.json")
    copy = snapshot.with_name(snapshot.name + ".whole")
    lag = snapshot.stat().st_size - (copy.stat().st_size if copy.exists() else 0)
    assert not list(root.glob("trials/*/checkpoint_*/state.pt"))
    assert largest[0] == pytest.approx(want.checkpoint["expanded"], rel=0.05)
    assert peak[0] == pytest.approx(want.peak, rel=0.2), (peak[0], want)
    assert final <= want.final
    assert final + lag == pytest.approx(want.final, rel=0.2), (final, lag, want)


def test_the_sweep_takes_finished_trials_and_folders_the_search_does_not_know(tmp_path):
    """As the study stops: the saved search's trials that ended without an error, and the
    folders of trials a restore rolled back (never resumed), are emptied; a running or
    errored trial keeps its checkpoints (a resume goes on from them)."""
    from study.driver.experiment import sweep_finished
    from study.store.folder import StudyFolder

    class Search:
        owner = {"a": ("reset", "search"), "b": ("reset", "search"), "c": ("reset", "eval")}
        ended = {"a": {"error": False}, "b": {"error": True}}

    trials = tmp_path / "trials"
    for name in ("search-reset_a", "search-reset_b", "eval-reset_c", "search-reset_zz"):
        _checkpoint(trials / name / "checkpoint_000000")
    (trials / "experiment_state-x.json").write_text("{}")
    sweep_finished(StudyFolder(str(tmp_path)), Search())
    left = sorted(p.parent.parent.name for p in trials.glob("*/checkpoint_*/state.pt"))
    assert left == ["eval-reset_c", "search-reset_b"]
