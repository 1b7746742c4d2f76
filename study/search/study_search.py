"""The study's one searcher: every strategy's Optuna search side by side, each followed by its
evaluation on fresh seeds, and the one record of the search."""

from __future__ import annotations

import logging
import pickle
from typing import Any

from optuna.trial import TrialState
from ray.tune.search import Searcher

from plasticity.metrics import OBJECTIVES
from study.plan import planned_trials
from study.search.attached import ATTACHED
from study.search.whole_trial import WholeTrialSearch, trial_state
from study.trials import EVAL, SEARCH, best_trial, label

log = logging.getLogger(__name__)


class StudySearch(Searcher):
    """Every strategy's search and evaluation as one Ray Tune searcher.

    ``searchers``: a :class:`WholeTrialSearch` per strategy, in the study's order; ``plan``:
    search trials per strategy; ``concurrency``: trials of one strategy running at once (search
    or evaluation: TPE learns between a strategy's trials); ``cap``: trials of the whole study
    running at once (None: as many as the strategies' concurrency allows); ``evals``: per
    strategy, its evaluation configs, whose ``run`` holds only what evaluation changes (the
    seed) and is laid over the best trial's run once the search has picked it.

    A suggestion goes round the strategies in a fixed order, starting after the one served last,
    to the first with a free slot and work left: which strategy gets a slot depends on which
    trials have ended, never on how long anything took. A strategy's search has ended when its
    planned trials all have; its best is then the best trial that ran every epoch
    (:func:`study.trials.best_trial`), and its evaluation trials follow. A search trial that
    crashed after its retries holds its strategy's evaluation back: the study ends unfinished,
    and a resume (Ray runs the errored trials again) carries on from there.

    Saved whole with Ray's experiment snapshot (:meth:`save`): the Optuna studies, which trials
    belong to which strategy and phase, how each ended and the bests, so a restore rolls the
    search back together with the trials. It holds no path: what the running driver adds (where
    the views go, the plan of an extension) reaches it through :data:`ATTACHED`.

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
        plan: dict[str, int],
        concurrency: int,
        evals: dict[str, list[dict[str, Any]]],
        cap: int | None = None,
        metric: str = "auc_test_acc",
    ) -> None:
        super().__init__(metric=metric, mode="max")
        self.name, self.searchers, self.order = name, dict(searchers), list(searchers)
        self.concurrency, self.cap = concurrency, cap
        self.evals = {s: list(evals.get(s, [])) for s in self.order}
        self.owner: dict[str, tuple[str, str]] = {}
        """trial id -> (strategy, phase), in the order the trials were suggested"""
        self.configs: dict[str, dict[str, Any]] = {}
        self.ended: dict[str, dict[str, Any]] = {}
        """trial id -> how it ended: error, complete (every epoch ran), value, objectives"""
        self.best: dict[str, dict[str, Any] | None] = {}
        """strategy -> {"config", "objective", "trial"} once its search has ended; None: no
        whole trial"""
        self.next = 0
        self.plan: dict[str, int] = {s: plan[s] for s in self.order}
        """strategy -> search trials planned (raised when the study is extended)"""
        self.superseded: list[str] = []
        """evaluation trials of a best that a longer search replaced"""
        self.replaced: dict[str, dict[str, Any]] = {}
        """strategy -> its best before an extension, until the longer search has ended"""

    def load_state(self, state: dict[str, Any]) -> None:
        """Take a saved state (:meth:`save`). Older states: one saved before plans existed had
        ``trials`` for every strategy and nothing superseded; ``live`` and ``trials`` were
        kept beside what they are derived from."""
        state = dict(state)
        trials = state.pop("trials", None)
        state.pop("live", None)
        self.__dict__.update(state)
        self.__dict__.setdefault("plan", {s: trials for s in self.order})
        self.__dict__.setdefault("superseded", [])
        self.__dict__.setdefault("replaced", {})

    @property
    def live(self) -> list[str]:
        """Trials suggested and not ended (running, or about to)."""
        return [t for t in self.owner if t not in self.ended]

    def set_plan(self, plan: dict[str, int] | None) -> list[str]:
        """Raise strategies' planned search trials to ``plan`` (absolute numbers, so setting
        the same plan twice, e.g. on every resume, changes nothing; a plan below what is
        planned is refused). Returns the strategies whose plan grew: their best is chosen
        again once their longer search has ended."""
        grown = []
        for strategy, n in (plan or {}).items():
            if strategy not in self.searchers:
                raise ValueError(f"unknown strategy {strategy!r}")
            if n < self.plan[strategy]:
                raise ValueError(
                    f"{strategy}: {n} search trials is fewer than the {self.plan[strategy]} "
                    "already planned"
                )
            if n == self.plan[strategy]:
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
        evals = {s: len(self.evals[s]) for s in self.order}
        return sum(planned_trials(self.plan, evals).values()) + len(self.superseded)

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
        self._pick_best(strategy)
        attached = ATTACHED.get(self.name)
        if attached is not None:
            attached.trial_ended(self, strategy, phase)

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

    # -- the study's progress ------------------------------------------------------------------
    def trials_of(self, strategy: str, phase: str) -> list[str]:
        """``strategy``'s trials of ``phase`` in the order they were suggested (evaluation:
        those of its current best only)."""
        gone = set(self.superseded) if phase == EVAL else set()
        return [t for t, who in self.owner.items() if who == (strategy, phase) and t not in gone]

    def search_ended(self, strategy: str) -> bool:
        """Every planned search trial of ``strategy`` has ended (complete, stopped or errored)."""
        ids = self.trials_of(strategy, SEARCH)
        return len(ids) == self.plan[strategy] and all(t in self.ended for t in ids)

    def phases(self) -> dict[str, str]:
        """``search-STRATEGY`` and (with evaluation) ``eval-STRATEGY``: pending, running or
        done."""
        out = {label(SEARCH, s): self._status(s, SEARCH) for s in self.order}
        if any(self.evals.values()):
            out.update({label(EVAL, s): self._status(s, EVAL) for s in self.order})
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
        if len(self.trials_of(strategy, SEARCH)) < self.plan[strategy]:
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
            trial_id = best_trial(
                (t, self.ended[t]["value"])
                for t in self.trials_of(strategy, SEARCH)
                if self.ended[t]["complete"]
            )
            self.best[strategy] = None
            if trial_id is not None:
                self.best[strategy] = {
                    "config": self.configs[trial_id],
                    "objective": self.ended[trial_id]["value"],
                    "trial": trial_id,
                }
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
