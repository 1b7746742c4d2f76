"""Faults: the searcher's one record of the search, its optuna.db view, corrupt checkpoints and
bad input (no Ray started here; the faults under a real Ray are in test_study_ray.py and, in
full, in benchmarks/faults.py)."""

from __future__ import annotations

import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from study.search import WholeTrialSearch, write_view

pytest.importorskip("ray")


def _space(trial):
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    return {"strategy": "reset"}


def _searcher() -> WholeTrialSearch:
    return WholeTrialSearch(_space, metric="obj", mode="max", study_name="s.reset")


def _report(step: int, value: float, complete: bool = False) -> dict:
    return {"training_iteration": step, "obj": value, "run_complete": complete}


def _states(searcher: WholeTrialSearch) -> list[TrialState]:
    return [t.state for t in searcher._ot_study.trials]


def test_searcher_records_whole_trials_only():
    s = _searcher()
    for trial_id in "abcd":
        s.suggest(trial_id)
        s.on_trial_result(trial_id, _report(1, 0.1))
    s.on_trial_complete("a", _report(2, 0.5, complete=True))  # ran every epoch
    s.on_trial_complete("b", _report(2, 0.9))  # a scheduler stopped it
    s.on_trial_complete("c", _report(2, 0.7), error=True)  # crashed after its retries
    assert _states(s) == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.RUNNING,
    ]
    trials = s._ot_study.trials
    assert trials[0].value == 0.5 and trials[0].intermediate_values == {1: 0.1, 2: 0.5}
    assert [t.user_attrs["ray_trial_id"] for t in trials] == list("abcd")
    assert s._ot_study.best_trial.number == 0  # b's partial 0.9 is not a candidate


def test_searcher_ignores_repeats_and_unknown_trials_and_records_a_retried_failure():
    s = _searcher()
    s.suggest("a")
    s.on_trial_result("a", _report(1, 0.1))
    s.on_trial_result("a", _report(1, 0.1))  # a restored trial repeats its iterations
    s.on_trial_result("zz", _report(1, 0.3))  # a trial the snapshot's searcher never saw
    s.on_trial_complete("zz", _report(2, 0.3, complete=True))
    s.on_trial_complete("a", _report(2, 0.4), error=True)
    s.on_trial_result("a", _report(3, 0.4))  # finished trials take no reports
    assert _states(s) == [TrialState.FAIL]
    # a resume retried the failed trial to its end: the whole run is added, the FAIL kept
    s.on_trial_complete("a", _report(2, 0.6, complete=True))
    s.on_trial_complete("a", _report(2, 0.6, complete=True))  # once only
    assert _states(s) == [TrialState.FAIL, TrialState.COMPLETE]
    retry = s._ot_study.trials[1]
    assert retry.value == 0.6 and retry.params == s._ot_study.trials[0].params
    assert retry.user_attrs == {"ray_trial_id": "a", "retry_of": 0}


def test_the_saved_searcher_holds_the_search_and_no_path(tmp_path):
    """What Ray pickles with its snapshot is the whole record: a copy of it resumes alone."""
    s = _searcher()
    s.suggest("a")
    s.on_trial_complete("a", _report(2, 0.5, complete=True))
    s.save(str(tmp_path / "searcher.pkl"))
    saved = (tmp_path / "searcher.pkl").read_bytes()
    assert b"sqlite" not in saved and str(tmp_path).encode() not in saved
    restored = _searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert isinstance(restored._ot_study._storage, optuna.storages.InMemoryStorage)
    assert [t.value for t in restored._ot_study.trials] == [0.5]
    restored.suggest("b")  # and it goes on suggesting
    assert len(restored._ot_study.trials) == 2 and len(s._ot_study.trials) == 1


def test_view_replaces_its_study_keeps_others_and_closes_running_trials_when_final(tmp_path):
    db = tmp_path / "optuna.db"
    other = optuna.create_study(storage=f"sqlite:///{db}", study_name="s.other")
    other.tell(other.ask(), 1.0)
    s = _searcher()
    s.suggest("a")
    s.suggest("b")
    s.on_trial_complete("a", _report(2, 0.5, complete=True))
    write_view(db, s._ot_study, final=False)
    write_view(db, s._ot_study, final=False)  # rewritten, not appended
    view = optuna.load_study(study_name="s.reset", storage=f"sqlite:///{db}")
    assert [t.state for t in view.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    write_view(db, s._ot_study, final=True)
    view = optuna.load_study(study_name="s.reset", storage=f"sqlite:///{db}")
    assert [t.state for t in view.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert _states(s) == [TrialState.COMPLETE, TrialState.RUNNING]  # the record is untouched
    assert len(optuna.load_study(study_name="s.other", storage=f"sqlite:///{db}").trials) == 1


def test_an_unreadable_view_is_written_again(tmp_path, caplog):
    db = tmp_path / "optuna.db"
    db.write_bytes(b"\x00garbage" * 100)
    s = _searcher()
    s.suggest("a")
    s.on_trial_complete("a", _report(2, 0.5, complete=True))
    write_view(db, s._ot_study, final=True)
    assert "unreadable" in caplog.text
    assert sqlite3.connect(db).execute("select count(*) from trials").fetchone() == (1,)
