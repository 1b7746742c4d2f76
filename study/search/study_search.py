"""The study's one searcher: every strategy's Optuna search side by side, its best-so-far
evaluated on fresh seeds at every rung of the budget ladder, and the one record of the search."""

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
from study.trials import EVAL, NO_WHOLE_TRIAL, SEARCH, best_trial, label

log = logging.getLogger(__name__)


class StudySearch(Searcher):
    """Every strategy's search and evaluations as one Ray Tune searcher.

    ``searchers``: a :class:`WholeTrialSearch` per strategy, in the study's order; ``rungs``:
    per strategy, ascending numbers of search trials after which its best-so-far is evaluated
    (the search runs to the largest); ``concurrency``: trials of one strategy running at once
    (search or evaluation: TPE learns between a strategy's trials); ``cap``: trials of the
    whole study running at once (None: as many as the strategies' concurrency allows);
    ``evals``: per strategy, its evaluation configs (one per seed), whose ``run`` holds only
    what evaluation changes (the seed) and is laid over the best trial's run.

    A suggestion goes round the strategies in a fixed order, starting after the one served last,
    to the first with a free slot and work left: which strategy gets a slot depends on which
    trials have ended, never on how long anything took. A rung of k trials is *decided* once a
    strategy's first k search trials (in the order they were suggested) have all ended: its
    best is the best of those that ran every epoch (:func:`study.trials.best_trial`). Its
    evaluation then comes before the strategy's next search trial; when the best is the one the
    rung before decided, that evaluation is reused and nothing runs. A search trial that
    crashed after its retries holds back every rung it belongs to: the study ends unfinished,
    and a resume (Ray runs the errored trials again) carries on from there.

    Saved whole with Ray's experiment snapshot (:meth:`save`): the Optuna studies, which trials
    belong to which strategy, phase and rung, how each ended and each rung's best, so a restore
    rolls the search back together with the trials. It holds no path: what the running driver
    adds (where the views go, the rungs of an extension) reaches it through :data:`ATTACHED`.

    Extending (``plasticity study extend``) adds a rung (:meth:`set_rungs`): the strategy's
    Optuna study goes on where it stopped (TPE sees every earlier trial) and its best at the new
    rung is evaluated like any other; the earlier rungs' evaluations stay what they were.
    """

    def __init__(
        self,
        name: str,
        searchers: dict[str, WholeTrialSearch],
        rungs: dict[str, list[int]],
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
        self.next = 0
        self.rungs: dict[str, list[int]] = {s: list(rungs[s]) for s in self.order}
        self.ladder: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in self.order}
        """strategy -> rung -> once decided: {"best": trial id or None (no whole trial),
        "evals": its evaluation trials, "reused_from": the rung whose evaluation it reuses}"""
        self.superseded: list[str] = []
        """Studies from before ladders only: evaluation trials of a best that an extension
        replaced (left out of every comparison)."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Take a saved state (:meth:`save`); older ones are converted (:func:`_from_before`)."""
        self.__dict__.update(_from_before(state) if "ladder" not in state else state)

    @property
    def live(self) -> list[str]:
        """Trials suggested and not ended (running, or about to)."""
        return [t for t in self.owner if t not in self.ended]

    def planned(self, strategy: str) -> int:
        """Search trials planned for ``strategy``: its largest rung."""
        return self.rungs[strategy][-1]

    def set_rungs(self, rungs: dict[str, list[int]] | None) -> list[str]:
        """Lay the driver's rungs over the saved ones (the same on every resume; an extension
        adds larger ones). Returns the strategies that got a rung. A list that drops a rung
        or adds one below the largest is refused."""
        grown = []
        for strategy, new in (rungs or {}).items():
            if strategy not in self.searchers:
                raise ValueError(f"unknown strategy {strategy!r}")
            old = self.rungs[strategy]
            if new == old:
                continue
            if new[: len(old)] != old or new != sorted(set(new)):
                raise ValueError(f"{strategy}: rungs {new} do not extend the rungs {old}")
            self.rungs[strategy] = list(new)
            grown.append(strategy)
        return grown

    def planned_trials(self) -> int:
        """Trials this study will have run when it is done, as far as is known now: every
        search trial and, per rung, an evaluation unless the rung reuses one (a rung not
        decided yet counts one, so this is an upper bound until every rung is decided)."""
        evals = {
            s: sum(
                len(self.evals[s])
                for k in self.rungs[s]
                if self.ladder[s].get(k, {}).get("reused_from") is None
                and self.ladder[s].get(k, {}).get("best", "") is not None
            )
            for s in self.order
        }
        search = {s: self.planned(s) for s in self.order}
        return sum(planned_trials(search, evals).values()) + len(self.superseded)

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
        self._decide(strategy)
        attached = ATTACHED.get(self.name)
        if attached is not None:
            attached.trial_ended(self, strategy, phase, trial_id)

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
    def trials_of(self, strategy: str, phase: str, rung: int | None = None) -> list[str]:
        """``strategy``'s trials of ``phase`` in the order they were suggested (evaluation:
        those run at ``rung``, or at any rung; never a superseded one)."""
        gone = set(self.superseded) if phase == EVAL else set()
        return [
            t
            for t, who in self.owner.items()
            if who == (strategy, phase)
            and t not in gone
            and (rung is None or self.configs[t].get("rung") == rung)
        ]

    def search_ended(self, strategy: str) -> bool:
        """Every planned search trial of ``strategy`` has ended (complete, stopped or errored)."""
        ids = self.trials_of(strategy, SEARCH)
        return len(ids) == self.planned(strategy) and all(t in self.ended for t in ids)

    def best_at(self, strategy: str, rung: int) -> str | None:
        """The best trial of ``strategy``'s first ``rung`` search trials, once decided."""
        return self.ladder[strategy].get(rung, {}).get("best")

    def evaluation(self, strategy: str, rung: int) -> list[str]:
        """The evaluation trials of ``rung`` (those of the rung it reuses, if it does)."""
        decided = self.ladder[strategy].get(rung)
        if decided is None:
            return []
        if decided["reused_from"] is not None:
            return self.ladder[strategy][decided["reused_from"]]["evals"]
        return decided["evals"]

    def lost(self) -> list[str]:
        """The strategies whose whole search has ended with no trial that ran every epoch."""
        return [
            s
            for s in self.order
            if self.planned(s) in self.ladder[s] and self.best_at(s, self.planned(s)) is None
        ]

    def phases(self) -> dict[str, str]:
        """``search-STRATEGY`` and (with evaluation) ``eval-STRATEGY``: pending, running or
        done."""
        out = {label(SEARCH, s): self._search_status(s) for s in self.order}
        if any(self.evals.values()):
            out.update({label(EVAL, s): self._eval_status(s) for s in self.order})
        return out

    def bests(self) -> dict[str, dict[str, Any]]:
        """Each strategy's best at its largest decided rung with a whole trial (an extended
        strategy keeps its earlier best until its new rung is decided)."""
        out = {}
        for s in self.order:
            decided = [k for k in self.rungs[s] if self.best_at(s, k) is not None]
            if decided:
                trial_id = self.best_at(s, decided[-1])
                out[s] = {
                    "config": self.configs[trial_id],
                    "objective": self.ended[trial_id]["value"],
                    "trial": trial_id,
                    "trials": decided[-1],
                }
        return out

    def eval_rows(self) -> list[dict[str, Any]]:
        """One row per rung and evaluation trial that ran every epoch: strategy, seed, the
        rung (``trials``), the trial and its objectives (a reused evaluation's rows appear
        again under each rung that reuses it)."""
        rows = []
        for s in self.order:
            for k in self.rungs[s]:
                for trial_id in self.evaluation(s, k):
                    end = self.ended.get(trial_id)
                    if end and end["complete"]:
                        seed = self.configs[trial_id]["run"]["seed"]
                        row = {"strategy": s, "seed": seed, "trials": k, "trial": trial_id}
                        rows.append({**row, **end["objectives"]})
        return rows

    def ladder_rows(self) -> dict[str, list[dict[str, Any]]]:
        """study.json's ``ladder``: per strategy, one entry per rung (see :attr:`ladder`), with
        its status: pending (not decided), done, or no whole trial."""
        out = {}
        for s in self.order:
            entries = []
            for k in self.rungs[s]:
                decided = self.ladder[s].get(k)
                best = None if decided is None else decided["best"]
                status = "pending" if decided is None else "done" if best else NO_WHOLE_TRIAL
                entries.append(
                    {
                        "trials": k,
                        "status": status,
                        "best": best,
                        "objective": self.ended[best]["value"] if best else None,
                        "evals": list(self.evaluation(s, k)),
                        "reused_from": None if decided is None else decided["reused_from"],
                    }
                )
            out[s] = entries
        return out

    def _search_status(self, strategy: str) -> str:
        if not self.trials_of(strategy, SEARCH):
            return "pending"
        return "done" if self.best_at(strategy, self.planned(strategy)) else "running"

    def _eval_status(self, strategy: str) -> str:
        if not self.trials_of(strategy, EVAL):
            return "pending"
        return (
            "done" if all(self._evaluated(strategy, k) for k in self.rungs[strategy]) else "running"
        )

    def _evaluated(self, strategy: str, rung: int) -> bool:
        """``rung`` is decided and its evaluation ran whole (a rung below the largest with no
        whole trial has nothing to evaluate)."""
        if rung not in self.ladder[strategy]:
            return False
        if self.best_at(strategy, rung) is None:
            return rung != self.planned(strategy)
        trials = self.evaluation(strategy, rung)
        complete = all(self.ended.get(t, {}).get("complete") for t in trials)
        return len(trials) == len(self.evals[strategy]) and complete

    # -- choosing ------------------------------------------------------------------------------
    def _suggest_for(self, strategy: str, trial_id: str) -> dict | None:
        if sum(self.owner[t][0] == strategy for t in self.live) >= self.concurrency:
            return None
        due = self._eval_due(strategy)
        if due is not None:
            rung, template = due
            best_run = self.configs[self.best_at(strategy, rung)]["run"]
            config = {**template, "rung": rung, "run": {**best_run, **template["run"]}}
            self.ladder[strategy][rung]["evals"].append(trial_id)
            phase = EVAL
        elif len(self.trials_of(strategy, SEARCH)) < self.planned(strategy):
            config, phase = self.searchers[strategy].suggest(trial_id), SEARCH
            if not isinstance(config, dict):
                return None
        else:
            return None
        self.owner[trial_id] = (strategy, phase)
        return config

    def _eval_due(self, strategy: str) -> tuple[int, dict[str, Any]] | None:
        """The next evaluation trial to hand out: at the lowest decided rung with a whole best
        that runs its own evaluation and has not handed all of it out."""
        for k in self.rungs[strategy]:
            decided = self.ladder[strategy].get(k)
            if decided is None:
                return None  # rungs are evaluated in order
            if decided["best"] and decided["reused_from"] is None:
                done = len(decided["evals"])
                if done < len(self.evals[strategy]):
                    return k, self.evals[strategy][done]
        return None

    def _decide(self, strategy: str) -> None:
        """Decide every rung of ``strategy`` whose first search trials have all ended with no
        error: its best, and whether it reuses the evaluation of the rung before."""
        ids = self.trials_of(strategy, SEARCH)
        before = None
        for k in self.rungs[strategy]:
            if k in self.ladder[strategy]:
                before = k
                continue
            first = ids[:k]
            if len(first) < k or any(t not in self.ended or self.ended[t]["error"] for t in first):
                return
            best = best_trial(
                (t, self.ended[t]["value"]) for t in first if self.ended[t]["complete"]
            )
            reused = None
            if before is not None and best is not None and best == self.best_at(strategy, before):
                reused = self.ladder[strategy][before]["reused_from"] or before
            self.ladder[strategy][k] = {"best": best, "evals": [], "reused_from": reused}
            before = k

    def _closed(self, strategy: str) -> bool:
        """Nothing more can be suggested for ``strategy`` in this run of the study: its search
        has ended, and every rung is decided with its evaluation handed out (a rung that a
        crashed trial holds back stays undecided, and the study ends unfinished)."""
        if not self.search_ended(strategy):
            return False
        self._decide(strategy)
        return self._eval_due(strategy) is None


def _from_before(state: dict[str, Any]) -> dict[str, Any]:
    """A searcher saved before ladders: one rung per strategy at its planned trials (``plan``,
    or ``trials`` before plans existed), decided where it had picked a best, with the
    evaluation trials not superseded; ``live`` and ``trials`` (kept beside what they derive
    from) go. An extension still under way then (``replaced``) cannot be carried over."""
    state = dict(state)
    if state.get("replaced"):
        from plasticity.errors import UserError

        raise UserError(
            "this study was extended by plasticity 0.1 and its extension had not finished; "
            "finish it with that version (then this one reads it), or launch a new study"
        )
    trials = state.pop("trials", None)
    state.pop("live", None)
    state.pop("replaced", None)
    plan = state.pop("plan", None) or {s: trials for s in state["order"]}
    best = state.pop("best", {})
    superseded = state.setdefault("superseded", [])
    state["rungs"] = {s: [plan[s]] for s in state["order"]}
    state["ladder"] = {s: {} for s in state["order"]}
    for s, b in best.items():
        evals = [t for t, who in state["owner"].items() if who == (s, EVAL) and t not in superseded]
        state["ladder"][s][plan[s]] = {
            "best": None if b is None else b["trial"],
            "evals": evals,
            "reused_from": None,
        }
        for t in evals:  # evaluation configs name their rung from now on
            state["configs"][t] = {**state["configs"][t], "rung": plan[s]}
    return state
