"""optuna.db: the views of the search's one record for optuna-dashboard and the analysis.

The record is the searcher in Ray's snapshot (see :mod:`study.search`). ``STUDY/optuna.db``
holds one Optuna study per strategy (``NAME.STRATEGY``), written from the searcher's in-memory
Optuna studies as trials end (each strategy's at most every 10 s, and less often when its
writes would take over 5% of the driver's time: :class:`ViewWriter`), at the study's end and
on every resume; a deleted, stale or copied optuna.db is simply rebuilt. No Ray here.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from study import faults

log = logging.getLogger(__name__)

# optuna.db is rewritten routinely: its "A new study created in RDB" line says nothing
logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.WARNING)


def write_view(name: str, write: Callable[[], None]) -> None:
    """Write a view of the record (optuna.db, study.json): a failed write (a full disk) is one
    warning, never an error (inside Ray's searcher callbacks, Ray would turn it into the end of
    the experiment); the view is rebuilt from the snapshot on resume."""
    try:
        write()
    except OSError as e:
        log.warning("cannot write %s (%s); it is rebuilt on resume", name, e.strerror or e)
    except Exception as e:  # SQLite's full disk reaches here as a storage error, not OSError
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(e, (SQLAlchemyError, optuna.exceptions.StorageInternalError)):
            raise
        log.warning("cannot write %s (%s); it is rebuilt on resume", name, type(e).__name__)


def view_trials(study: optuna.Study, final: bool) -> list[optuna.trial.FrozenTrial]:
    """The trials optuna.db shows. ``final`` (the search has ended): a trial still RUNNING can
    never report again and is shown FAIL."""
    out = []
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False):
        if final and t.state == TrialState.RUNNING:
            t = copy.deepcopy(t)
            t.state, t.datetime_complete = TrialState.FAIL, now
        out.append(t)
    return out


def _replace_rows(
    storage: optuna.storages.RDBStorage, study: optuna.Study, final: bool, kept: int = 0
) -> int:
    """Make ``storage``'s rows of ``study`` its view (other studies' rows kept). ``kept``: its
    first trials were finished when last written here, and a finished trial never changes, so
    their rows stay (when the file still holds them as written) and only the rows after them
    are replaced: a write costs the trials that changed, not every trial of the study.
    Returns how many leading trials are now written finished (the next write's ``kept``)."""
    trials = view_trials(study, final)
    kept = _still_written(storage, study.study_name, trials, kept)
    if kept == 0:
        with contextlib.suppress(KeyError):  # not in this file yet
            optuna.delete_study(study_name=study.study_name, storage=storage)
        optuna.create_study(
            storage=storage, study_name=study.study_name, directions=study.directions
        )
    study_id = storage.get_study_id_from_name(study.study_name)
    if kept:
        _delete_trials_from(storage, study_id, kept)
    for t in trials[kept:]:
        storage.create_new_trial(study_id, template_trial=t)
    finished = [t.state.is_finished() for t in trials]
    return finished.index(False) if False in finished else len(trials)


def _still_written(
    storage: optuna.storages.RDBStorage,
    name: str,
    trials: list[optuna.trial.FrozenTrial],
    kept: int,
) -> int:
    """``kept`` if the file holds the study with at least ``kept`` trials, the last of them
    the view's trial of that number; else 0 (write it whole)."""
    if kept == 0 or kept > len(trials):
        return 0
    try:  # not get_n_trials: Optuna's counts by loading every trial
        study_id = storage.get_study_id_from_name(name)
        row = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, kept - 1))
    except KeyError:
        return 0
    want = trials[kept - 1]
    same = ("number", "state", "values", "params", "user_attrs", "datetime_start")
    return kept if all(getattr(row, a) == getattr(want, a) for a in same) else 0


def _delete_trials_from(storage: optuna.storages.RDBStorage, study_id: int, number: int) -> None:
    """Delete the study's trials numbered ``number`` and up, with their params, values and
    attributes (Optuna has no API to delete a trial: its ORM models cascade the delete, and
    a trial's number is its count of earlier trials, so the next ones added take the numbers
    freed)."""
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        rows = session.query(models.TrialModel).filter(
            models.TrialModel.study_id == study_id, models.TrialModel.number >= number
        )
        for row in rows.all():
            session.delete(row)
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        storage.scoped_session.remove()


class OptunaDbCopy:
    """The working copy of ``STUDY/optuna.db`` that a running driver's views share: one
    SQLite file in a temporary folder, opened once (an Optuna storage costs ~0.2 s to open,
    the first ~1 s in a process), updated in place and copied into the study folder after
    each write. The working file is a copy that is published whole, so its writes skip
    SQLite's syncs to disk; a crash loses nothing, since the views are rebuilt from the
    snapshot on resume. Started from the study's own optuna.db, other studies' rows kept.
    A write that fails on the working copy is tried again on a new copy of the published
    file, and only if that fails too on an empty one (the published file is unreadable); a
    write that fails every way closes the store, so the next one starts from the published
    file again, never from a half-made copy."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        self.storage: optuna.storages.RDBStorage | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.opening: threading.Thread | None = None
        self.kept: dict[str, int] = {}
        """Per Optuna study, its leading trials written finished in the working copy."""

    def open_soon(self) -> None:
        """Open the working copy in a background thread, so that the first write does not:
        it comes at the first trial's end, inside Ray's loop, where the ~1.5 s of a first
        Optuna storage in a process (its imports, the schema) held up the other trials'
        reports and the next trial's start. An open that fails here is left to the first
        write, which opens again and says what is wrong."""

        def open_working() -> None:
            try:
                self._open("working")
            except Exception as e:
                log.debug("opening optuna.db's working copy failed (%s)", e)
                self._close()

        self.opening = threading.Thread(target=open_working, name="optuna-view-open")
        self.opening.start()

    def _opened(self) -> None:
        if self.opening is not None:
            self.opening.join()
            self.opening = None

    def write(self, study: optuna.Study, final: bool) -> float:
        """Write ``study``'s rows and publish the file; returns the seconds it took, not
        counting opening the store."""
        self._opened()
        try:
            for source in ("working", "published", None):
                try:
                    storage = self._open(source)
                    start = time.monotonic()
                    kept = self.kept.pop(study.study_name, 0)
                    self.kept[study.study_name] = _replace_rows(storage, study, final, kept)
                    break
                except OSError:
                    raise
                except Exception as e:  # a corrupt file: SQLAlchemy's and sqlite's errors vary
                    if source is None:
                        raise
                    if source == "published":
                        log.warning(
                            "optuna.db is unreadable (%s); writing it again", type(e).__name__
                        )
            self.folder.upload(self.db, "optuna.db")
        except Exception:
            self.close()
            raise
        spent = time.monotonic() - start
        faults.at(faults.VIEW_WRITTEN)
        return spent

    @property
    def db(self) -> Path:
        return Path(self.tmp.name) / "optuna.db"

    def _open(self, source: str | None) -> optuna.storages.RDBStorage:
        """The storage on the working copy (``source`` "working": the one open, else a copy of
        the published file), on a new copy of the published file ("published"), or on a new
        empty file (None)."""
        if self.storage is not None and source == "working":
            return self.storage
        self._close()
        self.tmp = tempfile.TemporaryDirectory(prefix="optuna-view-")
        if source is not None and self.folder.exists("optuna.db"):
            self.folder.download("optuna.db", self.db)
        storage = optuna.storages.RDBStorage(f"sqlite:///{self.db}")
        self.storage = storage  # closed by close() even if the rest fails
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _unsynced)
        storage.engine.dispose()  # connections from now on skip the syncs
        return storage

    def close(self) -> None:
        self._opened()
        self._close()

    def _close(self) -> None:
        self.kept = {}  # another file from here on: its rows are written whole first
        if self.storage is not None:
            self.storage.engine.dispose()
            self.storage = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None


def _unsynced(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA journal_mode=MEMORY")
    cursor.close()


class ViewWriter:
    """When a search's rows of ``STUDY/optuna.db`` are rewritten (through ``store``, the
    :class:`OptunaDbCopy` the strategies' writers share): on :meth:`__call__` with ``final``,
    and while the search runs at most every ``every`` seconds, and no more often than keeps
    its writes under ``share`` of the driver's time (the driver's loop waits for a write; one
    that is whole, the first of a store, is linear in the trials, the later ones follow the
    trials that changed: :func:`_replace_rows`)."""

    def __init__(self, store: OptunaDbCopy, every: float = 10.0, share: float = 0.05) -> None:
        self.store, self.every, self.share = store, every, share
        self.last, self.spent = -float("inf"), 0.0

    def __call__(self, study: optuna.Study, final: bool = False) -> None:
        wait = max(self.every, self.spent / self.share)
        if not final and time.monotonic() - self.last < wait:
            return
        self.spent = self.store.write(study, final)
        self.last = time.monotonic()
