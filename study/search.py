"""The searcher: Ray Tune's OptunaSearch, told only about whole trials, and the one record of
the search.

One record: the Optuna study lives in memory inside the searcher, and Ray Tune saves the
searcher with every experiment snapshot (``searcher-state-*.pkl``, written in the same step as
the trial states of ``experiment_state-*.json`` and uploaded with them; Ray uploads them one
after the other and in place, so a kill or a full disk can tear the pair or truncate a file:
:func:`study.driver.check_snapshots` sets such a snapshot aside before a restore). So the
search's Optuna record and Ray's trials come from the same moment: a restore rolls both back
together, a trial can never be COMPLETE in one and running in the other, and the record holds
no path (a copied or moved study folder resumes on its own data, anywhere). ``STUDY/optuna.db``
is a view derived from it for optuna-dashboard and the analysis: rewritten from the searcher as
trials end (:data:`VIEWS`), at the end of each search and whenever a study is resumed, so a
deleted, stale or copied optuna.db is simply rebuilt.

Ray's OptunaSearch records a trial's last reported value as COMPLETE whenever a value is there,
so a trial that ASHA stopped, or one that crashed after its retries, would enter Optuna (and
TPE's model) with the objective of a run cut short. Here a trial is COMPLETE only when its last
report has :data:`~study.trainable.RUN_COMPLETE`; a stopped trial is PRUNED and an errored one
FAIL. (Optuna gives a PRUNED trial its last intermediate value as its value, and TPE ranks
pruned trials below every complete one.)

A study runs as ONE Ray Tune experiment: :class:`StudySearch` holds one
:class:`WholeTrialSearch` per strategy and hands out their trials side by side, each strategy
within its own ``concurrency`` (so TPE still learns between a strategy's trials), the study
within an optional cap; once a strategy's search trials have all ended it picks that
strategy's best whole trial and hands out its evaluation runs (fixed seeds, no Optuna).
:class:`PerStrategyScheduler` keeps ASHA's ranking within one strategy's search.

It lives in an importable module (never ``__main__``): Ray pickles the searcher by reference.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import math
import pickle
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from plasticity.metrics import OBJECTIVES
from study.trainable import RUN_COMPLETE

log = logging.getLogger(__name__)

RAY_TRIAL_ID = "ray_trial_id"
"""Optuna user attribute naming the Ray trial (and so its folder ``STRATEGY_ID``)."""

VIEWS: dict[str, Callable[[optuna.Study], None]] = {}
"""The running driver's writers of optuna.db, by Optuna study name ("STUDY.STRATEGY"): set
while it runs the study, never pickled (the searcher must hold no path)."""

PROGRESS: dict[str, Callable[[StudySearch], None]] = {}
"""The running driver's recorder of a study's progress (study.json), by study name; called
whenever a trial ends. Never pickled."""

PLANS: dict[str, dict[str, int]] = {}
"""The running driver's plan of search trials per strategy (study.json's ``plan``, which
``plasticity study extend`` raises), by study name: laid over a restored searcher. Never
pickled."""

SEARCH, EVAL = "search", "eval"
"""The two kinds of trial (a trial config's ``phase``)."""

# optuna.db is rewritten routinely: its "A new study created in RDB" line says nothing
logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.WARNING)


def _write_view(name: str, write: Callable[[], None]) -> None:
    """Write a view of the record (optuna.db, study.json) while Ray runs the search: a failed
    write (a full disk) is one warning, never an error that Ray would turn into the end of the
    experiment: the view is rebuilt from the snapshot on resume."""
    try:
        write()
    except OSError as e:
        log.warning("cannot write %s (%s); it is rebuilt on resume", name, e.strerror or e)
    except Exception as e:  # SQLite's full disk reaches here as a storage error, not OSError
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(e, (SQLAlchemyError, optuna.exceptions.StorageInternalError)):
            raise
        log.warning("cannot write %s (%s); it is rebuilt on resume", name, type(e).__name__)


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
            _write_view("optuna.db", partial(writer, self._ot_study))

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


class StudySearch(Searcher):
    """Every strategy's search and evaluation as one Ray Tune searcher.

    ``searchers``: a :class:`WholeTrialSearch` per strategy, in the study's order; ``trials``:
    search trials per strategy; ``concurrency``: trials of one strategy running at once (search
    or evaluation: TPE learns between a strategy's trials); ``cap``: trials of the whole study
    running at once (None: as many as the strategies' concurrency allows); ``evals``: per
    strategy, its evaluation configs, whose ``run`` holds only what evaluation changes (the
    seed) and is laid over the best trial's run once the search has picked it.

    A suggestion goes round the strategies in a fixed order, starting after the one served last,
    to the first with a free slot and work left: which strategy gets a slot depends on which
    trials have ended, never on how long anything took. A strategy's search has ended when its
    planned trials all have; its best is then the best trial that ran every epoch (the earliest
    on a tie), and its evaluation trials follow. A search trial that crashed after its retries
    holds its strategy's evaluation back: the study ends unfinished, and a resume (Ray runs the
    errored trials again) carries on from there.

    Saved whole with Ray's experiment snapshot (:meth:`save`): the Optuna studies, which trials
    belong to which strategy and phase, how each ended and the bests, so a restore rolls the
    search back together with the trials. It holds no path.

    Extending (``plasticity study extend``) raises a strategy's planned search trials
    (:meth:`set_plan`): its Optuna study goes on where it stopped (TPE sees every earlier
    trial), its best is chosen again when the longer search ends, and only if the best is
    another trial are its evaluation trials *superseded* (kept in the experiment, left out of
    the evaluation) and its evaluation run again on the new best.
    """

    def __init__(
        self,
        name: str,
        searchers: dict[str, WholeTrialSearch],
        trials: int,
        concurrency: int,
        evals: dict[str, list[dict[str, Any]]],
        cap: int | None = None,
        metric: str = "auc_test_acc",
    ) -> None:
        super().__init__(metric=metric, mode="max")
        self.name, self.searchers, self.order = name, dict(searchers), list(searchers)
        self.trials, self.concurrency, self.cap = trials, concurrency, cap
        self.evals = {s: list(evals.get(s, [])) for s in self.order}
        self.owner: dict[str, tuple[str, str]] = {}
        """trial id -> (strategy, phase), in the order the trials were suggested"""
        self.configs: dict[str, dict[str, Any]] = {}
        self.live: set[str] = set()
        self.ended: dict[str, dict[str, Any]] = {}
        """trial id -> how it ended: error, complete (every epoch ran), value, objectives"""
        self.best: dict[str, dict[str, Any] | None] = {}
        """strategy -> {"config", "objective", "trial"} once its search has ended; None: no
        whole trial"""
        self.next = 0
        self.plan: dict[str, int] = {s: trials for s in self.order}
        """strategy -> search trials planned (``trials``, until the study is extended)"""
        self.superseded: list[str] = []
        """evaluation trials of a best that a longer search replaced"""
        self.replaced: dict[str, dict[str, Any]] = {}
        """strategy -> its best before an extension, until the longer search has ended"""

    def load_state(self, state: dict[str, Any]) -> None:
        """Take a saved state (:meth:`save`); one saved before plans existed had ``trials``
        for every strategy and nothing superseded."""
        self.__dict__.update(state)
        self.__dict__.setdefault("plan", {s: self.trials for s in self.order})
        self.__dict__.setdefault("superseded", [])
        self.__dict__.setdefault("replaced", {})

    def planned(self, strategy: str) -> int:
        """Search trials planned for ``strategy``."""
        return self.plan.get(strategy, self.trials)

    def set_plan(self, plan: dict[str, int] | None) -> list[str]:
        """Raise strategies' planned search trials to ``plan`` (absolute numbers, so setting
        the same plan twice, e.g. on every resume, changes nothing; a plan below what is
        planned is refused). Returns the strategies whose plan grew: their best is chosen
        again once their longer search has ended."""
        grown = []
        for strategy, n in (plan or {}).items():
            if strategy not in self.searchers:
                raise ValueError(f"unknown strategy {strategy!r}")
            if n < self.planned(strategy):
                raise ValueError(
                    f"{strategy}: {n} search trials is fewer than the {self.planned(strategy)} "
                    "already planned"
                )
            if n == self.planned(strategy):
                continue
            self.plan[strategy] = n
            grown.append(strategy)
            old = self.best.pop(strategy, None)
            if old is not None:
                self.replaced.setdefault(strategy, old)
        return grown

    def planned_trials(self) -> int:
        """Trials this study will have run when it is done, as planned now: every search
        trial, the current evaluation and the superseded evaluation trials."""
        return (
            sum(self.planned(s) for s in self.order)
            + sum(len(self.evals[s]) for s in self.order)
            + len(self.superseded)
        )

    # -- what Ray asks -------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        if self.cap is not None and len(self.live) >= self.cap:
            return None
        n = len(self.order)
        for k in range(n):
            strategy = self.order[(self.next + k) % n]
            config = self._suggest_for(strategy, trial_id)
            if config is not None:
                self.next = (self.next + k + 1) % n
                self.configs[trial_id] = config
                self.live.add(trial_id)
                return config
        return Searcher.FINISHED if all(self._closed(s) for s in self.order) else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        strategy, phase = self.owner.get(trial_id, ("", ""))
        if phase == SEARCH:
            self.searchers[strategy].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id not in self.owner:
            log.warning("trial %s is unknown to the search; not recorded", trial_id)
            return
        strategy, phase = self.owner[trial_id]
        if phase == SEARCH:
            self.searchers[strategy].on_trial_complete(trial_id, result, error)
        complete = trial_state(result, error) == TrialState.COMPLETE
        self.ended[trial_id] = {
            "error": error,
            "complete": complete,
            "value": result[self.metric] if complete else None,
            "objectives": {m: result[m] for m in OBJECTIVES} if complete else None,
        }
        self.live.discard(trial_id)
        self._pick_best(strategy)
        hook = PROGRESS.get(self.name)
        if hook is not None:
            _write_view("study.json", partial(hook, self))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Back to a snapshot's state. The driver restores with ``resume_errored``: Ray runs
        every trial that had errored again, so they are running, not ended, from here on."""
        with open(checkpoint_path, "rb") as f:
            self.load_state(pickle.load(f))
        for trial_id in [t for t, end in self.ended.items() if end["error"]]:
            del self.ended[trial_id]
            self.live.add(trial_id)

    # -- the study's progress ------------------------------------------------------------------
    def trials_of(self, strategy: str, phase: str) -> list[str]:
        """``strategy``'s trials of ``phase`` in the order they were suggested (evaluation:
        those of its current best only)."""
        gone = set(self.superseded) if phase == EVAL else set()
        return [t for t, who in self.owner.items() if who == (strategy, phase) and t not in gone]

    def search_ended(self, strategy: str) -> bool:
        """Every planned search trial of ``strategy`` has ended (complete, stopped or errored)."""
        ids = self.trials_of(strategy, SEARCH)
        return len(ids) == self.planned(strategy) and all(t in self.ended for t in ids)

    def phases(self) -> dict[str, str]:
        """``search-STRATEGY`` and (with evaluation) ``eval-STRATEGY``: pending, running or
        done."""
        out = {f"search-{s}": self._status(s, SEARCH) for s in self.order}
        if any(self.evals.values()):
            out.update({f"eval-{s}": self._status(s, EVAL) for s in self.order})
        return out

    def bests(self) -> dict[str, dict[str, Any]]:
        """Each strategy's best so far: an extended strategy keeps its earlier best until its
        longer search has ended."""
        out = {s: b for s, b in self.replaced.items() if s not in self.best}
        out.update({s: b for s, b in self.best.items() if b is not None})
        return {s: out[s] for s in self.order if s in out}

    def eval_rows(self) -> list[dict[str, Any]]:
        """One row per evaluation trial that ran every epoch: strategy, seed, objectives."""
        rows = []
        for trial_id, (strategy, phase) in self.owner.items():
            end = self.ended.get(trial_id)
            if phase == EVAL and end and end["complete"] and trial_id not in self.superseded:
                seed = self.configs[trial_id]["run"]["seed"]
                rows.append({"strategy": strategy, "seed": seed, **end["objectives"]})
        return rows

    def _status(self, strategy: str, phase: str) -> str:
        ids = self.trials_of(strategy, phase)
        if not ids:
            return "pending"
        if phase == SEARCH:
            done = self.best.get(strategy) is not None
        else:
            planned = len(self.evals[strategy])
            done = len(ids) == planned and all(self.ended.get(t, {}).get("complete") for t in ids)
        return "done" if done else "running"

    # -- choosing ------------------------------------------------------------------------------
    def _suggest_for(self, strategy: str, trial_id: str) -> dict | None:
        if sum(self.owner[t][0] == strategy for t in self.live) >= self.concurrency:
            return None
        if len(self.trials_of(strategy, SEARCH)) < self.planned(strategy):
            config, phase = self.searchers[strategy].suggest(trial_id), SEARCH
            if not isinstance(config, dict):
                return None
        else:
            done = len(self.trials_of(strategy, EVAL))
            if not self._pick_best(strategy) or done >= len(self.evals[strategy]):
                return None
            template = self.evals[strategy][done]
            best_run = self.best[strategy]["config"]["run"]  # type: ignore[index]
            config, phase = {**template, "run": {**best_run, **template["run"]}}, EVAL
        self.owner[trial_id] = (strategy, phase)
        return config

    def _errored(self, strategy: str, phase: str) -> bool:
        return any(self.ended.get(t, {}).get("error") for t in self.trials_of(strategy, phase))

    def _pick_best(self, strategy: str) -> bool:
        """Whether ``strategy``'s evaluation may start: its search has ended with no errored
        trial and with a whole trial (its best is then recorded)."""
        if strategy not in self.best:
            if not self.search_ended(strategy) or self._errored(strategy, SEARCH):
                return False
            whole = [
                (self.ended[t]["value"], -i, t)
                for i, t in enumerate(self.trials_of(strategy, SEARCH))
                if self.ended[t]["complete"] and math.isfinite(self.ended[t]["value"])
            ]
            if whole:
                value, _, trial_id = max(whole)
                self.best[strategy] = {
                    "config": self.configs[trial_id],
                    "objective": value,
                    "trial": trial_id,
                }
            else:
                self.best[strategy] = None
            self._supersede(strategy)
        return self.best[strategy] is not None

    def _supersede(self, strategy: str) -> None:
        """After an extended search has picked its best: if it is another trial than the best
        before, the evaluation trials so far evaluated that one and are superseded."""
        old = self.replaced.pop(strategy, None)
        new = self.best[strategy]
        if old is None or (new is not None and new["config"] == old["config"]):
            return
        self.superseded += self.trials_of(strategy, EVAL)

    def _closed(self, strategy: str) -> bool:
        """Nothing more can be suggested for ``strategy`` in this run of the study."""
        if not self.search_ended(strategy):
            return False
        if not self._pick_best(strategy):  # an errored trial, or no whole trial
            return True
        return len(self.trials_of(strategy, EVAL)) >= len(self.evals[strategy])


class PerStrategyScheduler(FIFOScheduler):
    """A scheduler per strategy's search (``make()`` builds one, e.g. ASHA), so trials are
    ranked only against trials of the same strategy; evaluation trials always run to the end.
    Trials start first come, first served (FIFO), as the searcher suggested them."""

    def __init__(self, make: Callable[[], TrialScheduler], strategies: list[str], metric: str):
        super().__init__()
        self.schedulers = {s: make() for s in strategies}
        self._metric, self._mode = metric, "max"

    def _of(self, trial: Any) -> TrialScheduler | None:
        config = trial.config
        if config.get("phase") != SEARCH:
            return None
        return self.schedulers.get(config.get("strategy"))

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values())

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if (scheduler := self._of(trial)) is not None:
            return scheduler.on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{s}: {x.debug_string()}" for s, x in self.schedulers.items())


class RootedSearchGenerator(SearchGenerator):
    """Ray's SearchGenerator, which restores the Experiment of its snapshot, storage path and
    all: a copied or moved study would create its new trials in the original's folder. Here a
    restored generator puts them where the study is now (the folder of the running driver's
    :data:`VIEWS` entries), and asks the searcher again even if it had said it was finished:
    a restore runs errored trials again, after which the searcher may have more to suggest
    (their strategies' evaluations), and an extended study's searcher gets its new plan
    (:data:`PLANS`).

    The searcher alone says when the study is finished (``Searcher.FINISHED``): Ray's count
    of samples (``num_samples``) cannot know ahead how many evaluation trials an extension
    adds, so it only sizes the progress table."""

    def is_finished(self) -> bool:
        return self._finished

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False  # the searcher says FINISHED again if it is
        searcher = self.searcher
        if isinstance(searcher, StudySearch):
            searcher.set_plan(PLANS.get(searcher.name))
            # what the progress table shows: at most this many (a strategy whose longer
            # search is under way may pick another best and run its evaluation again)
            self._total_samples = searcher.planned_trials() + sum(
                len(searcher.evals[s]) for s in searcher.replaced
            )
        names = [getattr(s, "_study_name", "") for s in getattr(searcher, "searchers", {}).values()]
        view = next((VIEWS[n] for n in names if n in VIEWS), None)
        if view is None or self._experiment is None:
            return
        storage = copy.copy(self._experiment.storage)
        folder = view.store.folder
        storage.storage_path, storage.storage_filesystem = folder.root, folder.fs
        storage.storage_fs_path = folder.path
        self._experiment.storage = self._experiment.spec["storage"] = storage


def newest_snapshot(fs: Any, experiment: str, prefix: str) -> str | None:
    """Path of the newest ``PREFIX<session>SUFFIX`` file (one of the snapshot files,
    :data:`study.driver.SNAPSHOT_FILES`) of a Ray Tune experiment folder (on the pyarrow
    filesystem ``fs``); None if there is none."""
    from study.driver import snapshot_sessions

    paths = [f[prefix] for f in snapshot_sessions(fs, experiment).values() if prefix in f]
    return paths[-1] if paths else None


def saved_search(fs: Any, experiment: str) -> StudySearch | None:
    """The :class:`StudySearch` of the newest searcher snapshot of a Ray Tune experiment (on
    the pyarrow filesystem ``fs``), as saved; None if it has none yet."""
    newest = newest_snapshot(fs, experiment, "searcher-state-")
    if newest is None:
        return None
    with fs.open_input_stream(newest) as f:
        saved = pickle.loads(f.read())
    if not isinstance(saved, dict) or "searchers" not in saved:
        return None
    search = StudySearch.__new__(StudySearch)
    search.load_state(saved)
    return search


def saved_trial_configs(fs: Any, experiment: str) -> list[dict[str, Any]]:
    """The configs of the trials in the newest snapshot of a Ray Tune experiment (on the
    pyarrow filesystem ``fs``); [] if it has none yet."""
    import json

    newest = newest_snapshot(fs, experiment, "experiment_state-")
    if newest is None:
        return []
    with fs.open_input_stream(newest) as f:
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


def _replace_rows(storage: optuna.storages.RDBStorage, study: optuna.Study, final: bool) -> None:
    """Replace ``study``'s rows in ``storage`` (other studies' rows kept)."""
    with contextlib.suppress(KeyError):  # not in this file yet
        optuna.delete_study(study_name=study.study_name, storage=storage)
    view = optuna.create_study(
        storage=storage, study_name=study.study_name, directions=study.directions
    )
    view.add_trials(view_trials(study, final))


class ViewStore:
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
                    _replace_rows(storage, study, final)
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
        _fault_point("view-written")
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
    :class:`ViewStore` the strategies' writers share): on :meth:`__call__` with ``final``,
    and while the search runs at most every ``every`` seconds, and no more often than keeps
    its writes under ``share`` of the driver's time (a write is linear in the trials, and
    the driver's loop waits for it: a large study's views are refreshed less often instead
    of slowing the search)."""

    def __init__(self, store: ViewStore, every: float = 10.0, share: float = 0.05) -> None:
        self.store, self.every, self.share = store, every, share
        self.last, self.spent = -float("inf"), 0.0

    def __call__(self, study: optuna.Study, final: bool = False) -> None:
        wait = max(self.every, self.spent / self.share)
        if not final and time.monotonic() - self.last < wait:
            return
        self.spent = self.store.write(study, final)
        self.last = time.monotonic()


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
