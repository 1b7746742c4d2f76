"""Running a study's one Ray Tune experiment to its end, and refreshing its views.

:func:`run_study` connects to Ray, checks that a trial fits, then fits the experiment (or
restores it and fits on): the searcher hands out every strategy's trials; as each trial ends
the driver writes its strategy's optuna.db view and study.json (:func:`refresh_views` at the
end, from the last snapshot), and keeps a whole copy of the snapshot. It returns when every
planned trial has ended, and stops with one line otherwise.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from plasticity.errors import UserError
from study import faults
from study.driver.ray_setup import (
    check_resources,
    connected,
    quiet_restores,
    snapshot_when_needed,
)
from study.driver.repair import SnapshotKeeper, keep_copy, repair_snapshots
from study.driver.tuner import make_trainable, make_tuner, pending_trials
from study.plan import rungs as study_rungs
from study.search.attached import ATTACHED, Attachment
from study.search.saved import saved_search
from study.spec import StudySpec
from study.store.checkpoints import drop_checkpoints, sweep_checkpoints
from study.store.folder import StudyFolder
from study.store.snapshot import TUNER_FILE
from study.store.state import sync_state, write_new
from study.store.views import OptunaDbCopy, ViewWriter, write_view
from study.trials import SEARCH, label

log = logging.getLogger(__name__)


def run_study(
    folder: StudyFolder,
    spec: StudySpec,
    state: dict[str, Any],
    address: str | None,
    new: bool = False,
) -> str:
    """Run what is not done of the study; ``new``: write the study's files first, once the
    cluster has passed :func:`check_resources`. Returns the study's folder."""
    quiet_restores()
    snapshot_when_needed()
    with connected(address):
        check_resources(spec)
        if new:
            write_new(folder, spec, state)
        _run(folder, spec, state, make_trainable(spec))
    return folder.root


def _run(folder: StudyFolder, spec: StudySpec, state: dict[str, Any], trainable: Any) -> None:
    """Fit (or restore and fit) the study's experiment to its end; study.json follows the
    searcher as trials end, and says what is done when it stops."""
    store = OptunaDbCopy(folder)  # optuna.db, kept open while the study runs
    writers = {s: ViewWriter(store) for s in spec.strategies}
    keeper = SnapshotKeeper(folder)
    rungs = study_rungs(spec, state)

    def progress(search: Any) -> None:
        sync_state(folder, state, search)
        keeper()

    def planned() -> int:  # exact once every rung is decided, which fit checks at its end
        search = saved_search(folder.fs, folder.experiment_path)
        if search is None:
            return 1  # not one trial has ended: more are planned than that
        search.set_rungs(rungs)
        return search.planned_trials()

    def unfinished() -> str:
        return ", ".join(p for p, v in state["phases"].items() if v != "done") or "the study"

    views = TrialEndViews(writers, progress, partial(drop_finished, folder))
    ATTACHED[spec.name] = Attachment(folder, rungs, views)
    stopped = None
    try:
        store.open_soon()  # the finally below waits for it and closes the store
        with pending_trials(spec):
            fit(folder, partial(make_tuner, folder, spec, trainable, rungs), trainable, planned,
                unfinished)  # fmt: skip
    except UserError as e:  # the study stopped unfinished; a lost strategy says more
        stopped = e
    finally:
        ATTACHED.pop(spec.name, None)
        try:
            lost = refresh_views(folder, spec, state, store)
        finally:
            store.close()
    if lost:
        raise UserError(f"no trial of {lost[0]!r} ran every epoch; see {folder.experiment}")
    if stopped is not None:
        raise stopped


@dataclass(frozen=True)
class TrialEndViews:
    """What the driver writes as a trial ends (the searcher calls it): the optuna.db view of
    the trial's strategy, if it was a search trial, then study.json (and the snapshot's copy).
    A write that fails is one warning (:func:`~study.store.views.write_view`)."""

    optuna_db: dict[str, Callable[[Any], None]]
    """Per strategy, the writer of its Optuna study's rows (a :class:`ViewWriter`)."""
    study_json: Callable[[Any], None]
    """Writes study.json from the searcher."""

    ended: Callable[[str, str, str], None] | None = None
    """``ended(trial_id, strategy, phase)``, for a trial that ended without an error, after
    study.json: deletes its checkpoints (:func:`drop_finished`)."""

    def __call__(self, search: Any, strategy: str, phase: str, trial_id: str = "") -> None:
        if phase == SEARCH:
            optuna_study = search.searchers[strategy].optuna_study
            write_view("optuna.db", partial(self.optuna_db[strategy], optuna_study))
        write_view("study.json", partial(self.study_json, search))
        if self.ended is not None and trial_id and not search.ended[trial_id]["error"]:
            self.ended(trial_id, strategy, phase)
        if all(v == "done" for v in search.phases().values()):
            faults.at(faults.LAST_STATE_WRITTEN)


def drop_finished(folder: StudyFolder, trial_id: str, strategy: str, phase: str) -> None:
    """Delete the checkpoints of a trial that ended without an error (the search will not run
    it again; see :mod:`study.store.checkpoints` for why before Ray's snapshot is safe). A
    failure (a slow or full storage) is one warning: the sweep at the study's end retries."""
    name = trial_dirname_of(trial_id, strategy, phase)
    try:
        emptied = drop_checkpoints(folder.fs, f"{folder.experiment_path}/{name}")
        log.info("%s ended: %d checkpoint folder(s) emptied", name, emptied)
    except OSError as e:
        log.warning("cannot delete the checkpoints of %s (%s)", name, e.strerror or e)


def sweep_finished(folder: StudyFolder, search: Any) -> None:
    """Delete the checkpoints of every trial the saved search (what a restore goes on from)
    records as ended without an error, and of every trial folder it does not know: a trial
    that started after the snapshot a restore rolled back to, whose config the search suggests
    again under a new id (Ray never resumes it). This takes what the driver could not delete
    as trials ended and what orphaned trials (of a head that died) wrote late. A failure is
    one warning."""
    names = [
        trial_dirname_of(t, *search.owner[t])
        for t, end in search.ended.items()
        if not end["error"] and t in search.owner
    ]
    try:
        names += unknown_trial_folders(folder, set(search.owner))
        gone = sweep_checkpoints(folder.fs, folder.experiment_path, names)
    except OSError as e:
        log.warning("cannot delete the finished trials' checkpoints (%s)", e.strerror or e)
        return
    if gone:
        log.info("deleted %d checkpoint folder(s) of finished trials", gone)


def unknown_trial_folders(folder: StudyFolder, known: set[str]) -> list[str]:
    """Trial folders (``PHASE-STRATEGY_ID``) of the experiment whose id is not in ``known``."""
    from pyarrow import fs as pafs

    infos = folder.fs.get_file_info(pafs.FileSelector(folder.experiment_path, allow_not_found=True))
    return [
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory
        and "_" in i.base_name
        and i.base_name.rsplit("_", 1)[1] not in known
    ]


def trial_dirname_of(trial_id: str, strategy: str, phase: str) -> str:
    """A trial's folder name, as :func:`study.driver.tuner.trial_dirname` makes it."""
    return f"{label(phase, strategy)}_{trial_id}"


def fit(
    folder: StudyFolder,
    new_tuner: Callable[[], Any],
    trainable: Any,
    planned: Callable[[], int],
    unfinished: Callable[[], str],
):
    """Fit the study's experiment: restored from its snapshot (after :func:`repair_snapshots`)
    if it has one, else from ``new_tuner()``. ``planned()``: the trials it has when done;
    ``unfinished()`` names what is not finished when it stops short."""
    from ray import tune

    repair_snapshots(folder)
    if tune.Tuner.can_restore(folder.experiment):
        log.info("restoring %s", folder.experiment)
        tuner = tune.Tuner.restore(folder.experiment, trainable=trainable, resume_errored=True)
    else:
        tuner = new_tuner()
        keep_copy(folder.fs, f"{folder.experiment_path}/{TUNER_FILE}")
    try:
        results = tuner.fit()
    except (EOFError, pickle.UnpicklingError) as e:
        # Ray reads back each errored trial's error.pkl, which a full disk can truncate
        raise UserError(
            f"a file of the experiment is truncated ({type(e).__name__}: {e}; a full disk?); "
            f"the study is not finished: free space, then plasticity study resume {folder.root}"
        ) from None
    if results.errors:  # never "finished" with fewer complete trials than planned
        last = str(results.errors[0]).strip().splitlines() or ["?"]
        raise UserError(
            f"{len(results.errors)} of {planned()} trial(s) failed after their retries "
            f"({last[-1][:160]}); the study is not finished: fix the cause, then "
            f"plasticity study resume {folder.root}"
        )
    if results.num_terminated < planned():
        # Ctrl-C (Tune stops gracefully and returns): the phase is not done
        raise UserError(
            f"study interrupted during {unfinished()}; continue it with: "
            f"plasticity study resume {folder.root}"
        )
    return results


def refresh_views(
    folder: StudyFolder,
    spec: StudySpec,
    state: dict[str, Any],
    store: OptunaDbCopy | None = None,
) -> list[str]:
    """Rewrite optuna.db and study.json from the experiment's newest snapshot (what a resume
    restores): at a study's end, and before a resume, where views that a crash left ahead of
    the snapshot, deleted ones or ones copied with their folder are made whole again. Returns
    the strategies whose search ended with no trial that ran every epoch. A snapshot that
    cannot be read (torn by a full disk or a kill: the resume sets it aside) or views that
    cannot be written (a full disk: they are rebuilt on resume) are one warning."""
    try:
        search = saved_search(folder.fs, folder.experiment_path)
    except Exception as e:  # pickle's and the filesystem's errors vary
        log.warning("cannot read the study's snapshot to update its views (%s)", type(e).__name__)
        return []
    if search is None:
        return []
    search.set_rungs(study_rungs(spec, state))  # a saved searcher from before an extension
    own = store is None
    store = store or OptunaDbCopy(folder)  # opened once for every strategy's rows
    try:
        for strategy, searcher in search.searchers.items():
            final = search.search_ended(strategy)
            write_view("optuna.db", partial(store.write, searcher.optuna_study, final))
        write_view("study.json", partial(sync_state, folder, state, search))
        sweep_finished(folder, search)
    finally:
        if own:
            store.close()
    return search.lost()
