"""One strategy's Optuna search: Ray Tune's OptunaSearch, told only about whole trials.

Ray's ``OptunaSearch.on_trial_complete`` (ray 2.60, ``ray/tune/search/optuna/optuna_search.py``;
since ray-project/ray#15283 it says PRUNED or FAIL only when the last result lacks the metric)
tells Optuna COMPLETE whenever the last result holds the metric, so a trial that ASHA stopped,
or one that crashed after its retries, would enter Optuna (and TPE's model) with the objective
of a run cut short. Here a trial is COMPLETE only when its last report has
:data:`~study.trials.RUN_COMPLETE`; a stopped trial is PRUNED and an errored one FAIL. (Optuna
gives a PRUNED trial its last intermediate value as its value, and TPE ranks pruned trials
below every complete one.)
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from study.trials import RUN_COMPLETE

log = logging.getLogger(__name__)

RAY_TRIAL_ID = "ray_trial_id"
"""Optuna user attribute naming the Ray trial (and so its folder ``PHASE-STRATEGY_ID``)."""


def trial_state(result: dict[str, Any] | None, error: bool) -> TrialState:
    """How Optuna must record a trial that Ray has ended, given its last ``result``: COMPLETE
    only if that result closes the run, FAIL if it crashed (after its retries), else PRUNED (a
    scheduler stopped it)."""
    if result and result.get(RUN_COMPLETE) and not error:
        return TrialState.COMPLETE
    return TrialState.FAIL if error else TrialState.PRUNED


class WholeTrialSearch(OptunaSearch):
    """OptunaSearch (single objective, define-by-run) that records whole trials only.

    It reads OptunaSearch's private ``_ot_study``, ``_ot_trials``, ``_study_name`` and
    ``_completed_trials`` (ray 2.60 has no public access to the Optuna study it drives); the
    rest of the study layer goes through :attr:`optuna_study` and :attr:`study_name`."""

    @property
    def optuna_study(self) -> optuna.Study:
        """The in-memory Optuna study (saved with Ray's snapshot; optuna.db is its view)."""
        return self._ot_study

    @property
    def study_name(self) -> str:
        """``STUDY.STRATEGY``."""
        return self._study_name

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
