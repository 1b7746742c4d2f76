"""Before a restore, and while a study runs: keep Ray's experiment snapshot restorable.

Ray Tune rewrites its snapshot files in place, one after the other (ray 2.60's
``_ExperimentCheckpointManager``; see :mod:`study.store.snapshot`), so a full disk or a kill
can leave them truncated, or from two different moments. ``Tuner.restore`` reads the newest
file of each kind and, finding none it can read, starts the experiment again from scratch
over its trials, or fails. Here: a resume refuses a study whose saved trials another study
file made (:func:`check_saved_trials`), sets a broken newest snapshot aside for the newest
whole one (:func:`repair_snapshots`) and puts a truncated tuner.pkl back; the running driver
keeps checked copies of the newest whole snapshot (:class:`SnapshotKeeper`).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any

from plasticity.errors import UserError
from study.plan import base_run
from study.spec import StudySpec
from study.store.folder import EXPERIMENT, StudyFolder
from study.store.snapshot import (
    KEPT,
    SNAPSHOT_FILES,
    TUNER_FILE,
    newest_trials,
    snapshot_sessions,
    trial_statuses,
)
from study.trials import EVAL

log = logging.getLogger(__name__)


def check_saved_trials(folder: StudyFolder, spec: StudySpec) -> None:
    """Refuse a study whose saved trials (the study's snapshot, and so the checkpoints its
    trials would restore from) were made with another configuration than its study.yaml: an
    edited study file would mix two studies. Searched values, the device and the data's place
    may differ (and an evaluation trial's seed); nothing else."""
    free = {"strategy_params", "device", "data_dir", "download"}
    try:
        saved = newest_trials(folder.fs, folder.experiment_path) or []
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable snapshot: Ray's restore says what it can
    for config in (t.config for t in saved):
        strategy = config.get("strategy")
        if strategy not in spec.strategies:
            raise UserError(
                f"{folder.root}: its saved trials include strategy {strategy!r}, which "
                "study.yaml does not have; put the study file back as it was, or launch a new study"
            )
        base = base_run(spec, strategy, spec.budget.search_seed)
        loose = (
            free
            | set(spec.strategies[strategy])
            | ({"seed"} if config.get("phase") == EVAL else set())
        )
        run = config.get("run", {})
        diff = [
            f"{k}: {run.get(k)!r} saved, {base[k]!r} now"
            for k in base
            if k not in loose and run.get(k) != base[k]
        ]
        if diff:
            raise UserError(
                f"{folder.root}: the {strategy} trials were made with another "
                f"configuration than study.yaml ({'; '.join(diff[:3])}); put the study file "
                "back as it was, or launch a new study"
            )


def snapshot_fault(fs: Any, files: dict[str, str]) -> str | None:
    """Why one session's snapshot cannot be restored (None: it can): a file missing or
    unreadable (a full disk or a kill mid-upload truncates it: Ray uploads each file in place),
    or trial states and searcher from different moments (Ray uploads them one after the other,
    so a kill or an error between them leaves a torn pair: a trial ended in one and running in
    the other, which the search never sees end)."""
    loaded = {}
    for prefix, suffix in SNAPSHOT_FILES.items():
        if prefix not in files:
            return f"no {prefix}*{suffix}"
        name = files[prefix].rsplit("/", 1)[-1]
        try:
            with fs.open_input_stream(files[prefix]) as f:
                data = f.read()
            if prefix == "experiment_state-":
                loaded["trials"] = trial_statuses(data)
            else:
                loaded[prefix] = pickle.loads(data)
        except Exception as e:  # truncated or garbled: json, pickle and OS errors vary
            return f"{name} is unreadable ({type(e).__name__})"
    search = loaded["searcher-state-"]
    if isinstance(search, dict) and {"owner", "ended"} <= set(search):  # a StudySearch
        trials = loaded["trials"]
        ended = {t for t, s in trials.items() if s in ("TERMINATED", "ERROR")}
        if set(search["owner"]) != set(trials) or set(search["ended"]) != ended:
            return "its trial states and searcher state are from different moments"
    return None


def repair_snapshots(folder: StudyFolder) -> None:
    """Before ``Tuner.restore``: the newest snapshot of the study's experiment must be whole,
    since Ray restores from the newest file of each kind and, finding none it can read, starts
    the experiment again from scratch or fails. A newest snapshot that is torn or truncated is
    set aside (its files renamed ``*.corrupt``, never deleted) when an older whole one exists
    (in place, or the copy kept while the study ran or by the previous resume: :data:`KEPT`),
    and the study goes on from that one (its later trials run again); with none, the resume
    stops with one line.
    The snapshot restored from is then kept (its copy replaces the previous one). Nothing to
    check for an experiment without snapshots yet."""
    fs, experiment = folder.fs, folder.experiment_path
    _check_tuner_file(folder)
    sessions = snapshot_sessions(fs, experiment)
    kept = snapshot_sessions(fs, experiment, KEPT)
    if not sessions and not kept:
        return
    where = folder.experiment
    good, copy, faults = _newest_whole(fs, sessions, kept)
    if good is None:
        first = next(iter(faults.values()), "no whole snapshot")
        raise UserError(
            f"{where}: the study's snapshot cannot be restored ({first}) and no older whole "
            "one exists; nothing was changed (resuming would start the study again over its "
            "trials): restore the folder from a backup, or launch a new study"
        )
    for bad in faults:
        for path in sessions[bad].values():
            fs.move(path, f"{path}.corrupt")
    if copy is not None:
        for path in kept[copy].values():
            fs.copy_file(path, path.removesuffix(KEPT))
    if faults:
        newest = next(iter(faults))
        log.warning(
            "%s: the newest snapshot (%s) cannot be restored (%s); set aside as *.corrupt, the "
            "study goes on from the snapshot of %s%s",
            where,
            newest,
            faults[newest],
            good,
            " (the whole copy kept while the study ran, maybe of an earlier moment)"
            if copy
            else "",
        )
    try:
        _keep_snapshot(fs, experiment, snapshot_sessions(fs, experiment)[good])
    except OSError as e:  # a full disk: the snapshot itself is whole, the resume goes on
        log.warning("cannot keep a copy of the study's snapshot (%s)", e.strerror or e)


def keep_copy(fs: Any, path: str) -> None:
    """Copy ``path`` to ``path.whole`` (a full disk: one warning; the original is whole)."""
    try:
        fs.copy_file(path, f"{path}{KEPT}")
    except OSError as e:
        log.warning("cannot keep a copy of %s (%s)", path.rsplit("/", 1)[-1], e.strerror or e)


def _check_tuner_file(folder: StudyFolder) -> None:
    """Put a truncated tuner.pkl back from its copy (setting it aside as ``*.corrupt``); with
    no whole copy, stop in one line. A whole one without a copy gets one."""
    fs, path = folder.fs, f"{folder.experiment_path}/{TUNER_FILE}"
    if not folder.exists(f"{EXPERIMENT}/{TUNER_FILE}"):
        return
    if _unpickles(fs, path):
        if not folder.exists(f"{EXPERIMENT}/{TUNER_FILE}{KEPT}"):
            keep_copy(fs, path)
        return
    if not folder.exists(f"{EXPERIMENT}/{TUNER_FILE}{KEPT}") or not _unpickles(fs, path + KEPT):
        raise UserError(
            f"{folder.experiment}: {TUNER_FILE} is truncated and no whole copy of it "
            "exists; nothing was changed: restore the folder from a backup, or launch a new study"
        )
    fs.move(path, f"{path}.corrupt")
    fs.copy_file(path + KEPT, path)
    log.warning(
        "%s: %s was truncated; set aside as %s.corrupt and put back from its copy",
        folder.experiment,
        TUNER_FILE,
        TUNER_FILE,
    )


def _unpickles(fs: Any, path: str) -> bool:
    try:
        with fs.open_input_stream(path) as f:
            pickle.loads(f.read())
    except Exception:  # truncated or garbled: pickle's errors vary
        return False
    return True


def _newest_whole(
    fs: Any, sessions: dict[str, dict[str, str]], kept: dict[str, dict[str, str]]
) -> tuple[str | None, str | None, dict[str, str]]:
    """The newest session whose snapshot is whole, in place or as a kept copy (then named
    again as the second value), and why each newer one in place is not, newest first."""
    faults: dict[str, str] = {}
    good = None
    for session in reversed(sessions):
        fault = snapshot_fault(fs, sessions[session])
        if fault is None:
            good = session
            break
        faults[session] = fault
    for session in reversed(kept):  # a kept copy newer than any whole snapshot in place
        if (good is None or session > good) and snapshot_fault(fs, kept[session]) is None:
            return session, session, faults
    return good, None, faults


def _keep_snapshot(fs: Any, experiment: str, files: dict[str, str]) -> None:
    """Copy one session's whole snapshot ``files`` to ``FILE.whole``; earlier copies go. The
    copy is written as ``FILE.whole.new`` files, checked, then renamed, so a failed or torn
    copy (Ray rewriting a file as it is copied) never replaces a good one. A failed write
    (a full disk) raises OSError."""
    new = {prefix: f"{path}{KEPT}.new" for prefix, path in files.items()}
    for prefix, path in files.items():
        fs.copy_file(path, new[prefix])
    if snapshot_fault(fs, new) is not None:
        for path in new.values():
            fs.delete_file(path)
        return
    kept = snapshot_sessions(fs, experiment, KEPT)
    for path in new.values():
        fs.move(path, path.removesuffix(".new"))
    mine = {p.removesuffix(".new") for p in new.values()}
    for copies in kept.values():
        for path in copies.values():
            if path not in mine:
                fs.delete_file(path)


class SnapshotKeeper:
    """While the study runs: keep a copy (:data:`KEPT`) of the experiment's newest snapshot
    whenever it is whole, at most every ``every`` seconds and no more often than keeps its
    copies under ``share`` of the driver's time (called as trials end, when Ray has written
    the snapshot of the moment before). A full disk during the launch session can
    truncate every snapshot file in place, and without this the study would have nothing to
    resume from (:func:`repair_snapshots` stops in one line); with it, the resume goes on from
    the last whole moment (:func:`_keep_snapshot`); a failure is one warning."""

    def __init__(self, folder: StudyFolder, every: float = 10.0, share: float = 0.05) -> None:
        self.folder, self.experiment = folder, folder.experiment_path
        self.every, self.share, self.spent = every, share, 0.0
        self.last, self.warned = -float("inf"), False

    def __call__(self) -> None:
        # a copy is checked whole, so it costs as much as the snapshot is large (all trials):
        # a large study's copy is taken less often, at most ``share`` of the driver's time
        if time.monotonic() - self.last < max(self.every, self.spent / self.share):
            return
        start = self.last = time.monotonic()
        try:
            self._keep(self.folder.fs)
        except OSError as e:  # a full disk: the copy from before stays
            if not self.warned:
                log.warning("cannot keep a copy of the study's snapshot (%s)", e.strerror or e)
                self.warned = True
        self.spent = time.monotonic() - start

    def _keep(self, fs: Any) -> None:
        sessions = snapshot_sessions(fs, self.experiment)
        if not sessions:
            return
        files = sessions[next(reversed(sessions))]
        if snapshot_fault(fs, files) is not None:
            return  # being written, or torn: keep the copy of a moment before
        _keep_snapshot(fs, self.experiment, files)
