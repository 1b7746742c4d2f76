"""The searcher: Ray Tune's OptunaSearch, told only about whole trials, and the one record of
the search.

One record: the Optuna study lives in memory inside the searcher, and Ray Tune saves the
searcher with every experiment snapshot (``searcher-state-*.pkl``, written in the same step as
the trial states of ``experiment_state-*.json`` and uploaded with them). So the search's Optuna
record and Ray's trials always come from the same moment: a restore rolls both back together,
a trial can never be COMPLETE in one and running in the other, and the record holds no path (a
copied or moved study folder resumes on its own data, anywhere). ``STUDY/optuna.db`` is a view
derived from it for optuna-dashboard and the analysis: rewritten from the searcher as trials end
(:data:`VIEWS`), at the end of each search and whenever a study is resumed, so a deleted, stale
or copied optuna.db is simply rebuilt.

Ray's OptunaSearch records a trial's last reported value as COMPLETE whenever a value is there,
so a trial that ASHA stopped, or one that crashed after its retries, would enter Optuna (and
TPE's model) with the objective of a run cut short. Here a trial is COMPLETE only when its last
report has :data:`~study.trainable.RUN_COMPLETE`; a stopped trial is PRUNED and an errored one
FAIL. (Optuna gives a PRUNED trial its last intermediate value as its value, and TPE ranks
pruned trials below every complete one.)

It lives in an importable module (never ``__main__``): Ray pickles the searcher by reference.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from study.trainable import RUN_COMPLETE

log = logging.getLogger(__name__)

RAY_TRIAL_ID = "ray_trial_id"
"""Optuna user attribute naming the Ray trial (and so its folder ``STRATEGY_ID``)."""

VIEWS: dict[str, Callable[[optuna.Study], None]] = {}
"""The running driver's writers of optuna.db, by Optuna study name: set for the phase it runs,
never pickled (the searcher must hold no path)."""

# optuna.db is rewritten routinely: its "A new study created in RDB" line says nothing
logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.WARNING)


def trial_state(result: dict[str, Any] | None, error: bool) -> TrialState:
    """How Optuna must record a trial that Ray has ended, given its last ``result``: COMPLETE
    only if that result closes the run, FAIL if it crashed (after its retries), else PRUNED (a
    scheduler stopped it)."""
    if result and result.get(RUN_COMPLETE) and not error:
        return TrialState.COMPLETE
    return TrialState.FAIL if error else TrialState.PRUNED


class WholeTrialSearch(OptunaSearch):
    """OptunaSearch (single objective, define-by-run) that records whole trials only."""

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def _frozen(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return None
        return self._ot_study._storage.get_trial(ot_trial._trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        frozen = self._frozen(trial_id)
        if frozen is None or frozen.state.is_finished() or self.metric not in result:
            return
        step = int(result["training_iteration"])
        if step not in frozen.intermediate_values:  # a retried trial repeats its steps
            self._ot_trials[trial_id].report(result[self.metric], step)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        frozen = self._frozen(trial_id)
        if frozen is None:
            log.warning("trial %s is unknown to the search; not recorded in Optuna", trial_id)
            return
        state = trial_state(result, error)
        if result:  # Ray hands the last report to on_trial_complete only
            self.on_trial_result(trial_id, result)
        if frozen.state.is_finished():
            if state == TrialState.COMPLETE and frozen.state != TrialState.COMPLETE:
                self._record_retry(frozen, trial_id, result)
            return
        value = result[self.metric] if state == TrialState.COMPLETE else None
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except (ValueError, RuntimeError) as e:  # e.g. a NaN objective: Optuna marks it FAIL
            log.warning("trial %s: %s", trial_id, e)
        self._completed_trials.add(trial_id)
        writer = VIEWS.get(self._study_name)
        if writer is not None:
            writer(self._ot_study)

    def _record_retry(self, failed: optuna.trial.FrozenTrial, trial_id: str, result: dict) -> None:
        """A trial that had failed after its retries and that a resume then ran to the end:
        Optuna cannot reopen a finished trial, so the whole run is added as a new COMPLETE
        trial with the same parameters (the FAIL stays, as the record of the failed attempt)."""
        trials = self._ot_study.get_trials(deepcopy=False)
        if any(t.user_attrs.get("retry_of") == failed.number for t in trials):
            return  # recorded already
        self._ot_study.add_trial(
            optuna.trial.create_trial(
                params=failed.params,
                distributions=failed.distributions,
                value=result[self.metric],
                user_attrs={**failed.user_attrs, "retry_of": failed.number},
                state=TrialState.COMPLETE,
            )
        )


class RootedSearchGenerator(SearchGenerator):
    """Ray's SearchGenerator, which restores the Experiment of its snapshot, storage path and
    all: a copied or moved study would create its new trials in the original's folder. Here a
    restored generator puts them where the study is now (the folder of the running driver's
    :data:`VIEWS` entry)."""

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        searcher = self.searcher
        while hasattr(searcher, "searcher"):  # ConcurrencyLimiter -> WholeTrialSearch
            searcher = searcher.searcher
        view = VIEWS.get(getattr(searcher, "_study_name", ""))
        if view is None or self._experiment is None:
            return
        storage = copy.copy(self._experiment.storage)
        folder = view.folder
        storage.storage_path, storage.storage_filesystem = folder.root, folder.fs
        storage.storage_fs_path = folder.path
        self._experiment.storage = self._experiment.spec["storage"] = storage


def saved_study(fs: Any, experiment: str) -> optuna.Study | None:
    """The Optuna study of the newest searcher snapshot of a Ray Tune experiment (on the
    pyarrow filesystem ``fs``); None if it has none yet."""
    from pyarrow import fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
    names = sorted(
        i.path
        for i in infos
        if i.base_name.startswith("searcher-state-") and i.base_name.endswith(".pkl")
    )
    if not names:
        return None
    with fs.open_input_stream(names[-1]) as f:
        saved = pickle.loads(f.read())
    return saved.get("_ot_study") if isinstance(saved, dict) else None


def saved_trial_configs(fs: Any, experiment: str) -> list[dict[str, Any]]:
    """The configs of the trials in the newest snapshot of a Ray Tune experiment (on the
    pyarrow filesystem ``fs``); [] if it has none yet."""
    import json

    from pyarrow import fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
    names = sorted(
        i.path
        for i in infos
        if i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json")
    )
    if not names:
        return []
    with fs.open_input_stream(names[-1]) as f:
        state = json.loads(f.read())
    return [json.loads(trial)["config"] for trial, _ in state["trial_data"]]


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


def write_view(db: Path, study: optuna.Study, final: bool) -> None:
    """Replace ``study``'s rows in the SQLite file ``db`` (other studies' rows kept); an
    unreadable file is started again (every view is rebuilt from its searcher on resume)."""
    for attempt in range(2):
        storage = None
        try:
            storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
            with contextlib.suppress(KeyError):  # not in this file yet
                optuna.delete_study(study_name=study.study_name, storage=storage)
            view = optuna.create_study(
                storage=storage, study_name=study.study_name, directions=study.directions
            )
            view.add_trials(view_trials(study, final))
            return
        except Exception as e:  # a corrupt view: SQLAlchemy's and sqlite's errors vary
            if attempt:
                raise
            log.warning("%s is unreadable (%s); writing it again", db.name, type(e).__name__)
            db.unlink(missing_ok=True)
        finally:
            if storage is not None:
                storage.engine.dispose()


class ViewWriter:
    """Rewrites a search's rows of ``STUDY/optuna.db`` through ``folder`` (a
    :class:`study.driver.StudyFolder`): at most every ``every`` seconds while the search runs,
    and on :meth:`__call__` with ``final``. The file is built in a temporary folder and moved
    into place, so a reader never sees half of it."""

    def __init__(self, folder: Any, every: float = 10.0) -> None:
        self.folder, self.every, self.last = folder, every, -float("inf")

    def __call__(self, study: optuna.Study, final: bool = False) -> None:
        if not final and time.monotonic() - self.last < self.every:
            return
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "optuna.db"
            if self.folder.exists("optuna.db"):
                self.folder.download("optuna.db", db)
            write_view(db, study, final)
            self.folder.upload(db, "optuna.db")
        self.last = time.monotonic()
        _fault_point("view-written")


def _fault_point(name: str) -> None:
    """Testing hook (the fault suite): with ``PLASTICITY_FAULT=name`` in the environment the
    driver dies here, as by SIGKILL (with its whole process group when it leads one, so the
    local Ray it started dies too)."""
    import os
    import signal

    if os.environ.get("PLASTICITY_FAULT") != name:
        return
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
