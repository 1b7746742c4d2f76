"""The study's one searcher (every strategy side by side, then each one's evaluation), its
per-strategy scheduler and the study-wide cap, without Ray running (the whole study under a real
Ray is in test_study_ray.py)."""

from __future__ import annotations

import json
from functools import partial
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from plasticity.errors import UserError
from plasticity.metrics import OBJECTIVES
from study.search import PerStrategyScheduler, StudySearch, WholeTrialSearch

METRIC = "auc_test_acc"


def space(trial, strategy: str) -> dict:
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    return {"strategy": strategy, "phase": "search", "run": {"lr": lr, "seed": 0}}


def make_search(
    strategies="abc", trials=2, concurrency=1, cap=None, evals=1, rungs=None
) -> StudySearch:
    searchers = {
        s: WholeTrialSearch(
            partial(space, strategy=s),
            metric=METRIC,
            mode="max",
            sampler=optuna.samplers.RandomSampler(seed=0),
            study_name=f"t.{s}",
        )
        for s in strategies
    }
    templates = {
        s: [{"strategy": s, "phase": "eval", "run": {"seed": 1000 + k}} for k in range(evals)]
        for s in strategies
    }
    ladder = {x: list(rungs or [trials]) for x in strategies}
    return StudySearch("t", searchers, ladder, concurrency, templates, cap=cap, metric=METRIC)


def end(value: float, complete: bool = True) -> dict:
    return {"training_iteration": 2, "run_complete": complete, **dict.fromkeys(OBJECTIVES, value)}


def strategy_of(config) -> str | None:
    return config["strategy"] if isinstance(config, dict) else config


def test_strategies_take_turns_within_their_concurrency_and_the_study_cap():
    s = make_search(cap=2)
    assert [strategy_of(s.suggest(t)) for t in ("1", "2", "3")] == ["a", "b", None]  # the cap
    s.on_trial_complete("1", end(0.5))
    assert strategy_of(s.suggest("3")) == "c"  # the turn goes on after b
    assert s.suggest("4") is None
    s.on_trial_complete("2", end(0.5))
    assert strategy_of(s.suggest("4")) == "a"
    uncapped = make_search()
    assert [strategy_of(uncapped.suggest(t)) for t in "1234"] == ["a", "b", "c", None]
    # one trial per strategy at a time: a's second trial waits for its first
    uncapped.on_trial_complete("2", end(0.5))
    assert [strategy_of(uncapped.suggest(t)) for t in "56"] == ["b", None]


def test_a_strategys_evaluation_starts_when_its_own_search_ends_with_its_best_whole_trial():
    s = make_search("ab", concurrency=2)
    configs = {t: s.suggest(t) for t in ("a1", "b1", "a2", "b2")}
    assert [c["strategy"] for c in configs.values()] == ["a", "b", "a", "b"]
    s.on_trial_complete("a1", end(0.9, complete=False))  # stopped early: never the best
    assert s.suggest("x") is None  # a's search has not ended, b is at its concurrency
    s.on_trial_complete("a2", end(0.4))
    evaluation = s.suggest("ea")
    assert evaluation == {
        "strategy": "a",
        "phase": "eval",
        "rung": 2,
        "run": {"lr": pytest.approx(configs["a2"]["run"]["lr"]), "seed": 1000},
    }
    best = {"config": configs["a2"], "objective": 0.4, "trial": "a2", "trials": 2}
    assert s.bests() == {"a": best}
    assert s.phases() == {
        "search-a": "done",
        "search-b": "running",
        "eval-a": "running",
        "eval-b": "pending",
    }
    s.on_trial_complete("ea", end(0.3))
    row = {"strategy": "a", "seed": 1000, "trials": 2, "trial": "ea"}
    assert s.eval_rows() == [{**row, **dict.fromkeys(OBJECTIVES, 0.3)}]
    assert s.suggest("y") is None  # b's search is still running
    s.on_trial_complete("b1", end(0.6))
    s.on_trial_complete("b2", end(0.6))  # a tie: the earlier trial is the best
    assert s.bests()["b"]["config"] is configs["b1"]
    assert s.suggest("eb")["run"]["seed"] == 1000
    s.on_trial_complete("eb", end(0.2))
    assert s.suggest("z") == StudySearch.FINISHED
    assert set(s.phases().values()) == {"done"}
    states = [t.state for t in s.searchers["a"]._ot_study.trials]
    assert states == [TrialState.PRUNED, TrialState.COMPLETE]  # evaluations are not Optuna's


def test_a_crashed_search_trial_holds_back_its_evaluation_until_a_resume_runs_it(tmp_path):
    s = make_search("ab", trials=1)
    s.suggest("a1"), s.suggest("b1")
    s.on_trial_complete("a1", error=True)  # crashed after its retries
    s.on_trial_complete("b1", end(0.5))
    assert s.suggest("eb")["strategy"] == "b"
    s.on_trial_complete("eb", end(0.5))
    assert s.suggest("x") == StudySearch.FINISHED  # the study stops unfinished
    assert s.phases()["search-a"] == "running" and s.phases()["eval-a"] == "pending"
    path = tmp_path / "searcher-state.pkl"
    s.save(str(path))
    assert str(tmp_path).encode() not in path.read_bytes()  # the record holds no path
    restored = make_search("ab", trials=1)
    restored.restore(str(path))  # a resume: Ray runs the errored trial again
    assert restored.suggest("x") is None  # waiting for it, not finished
    restored.on_trial_complete("a1", end(0.7))
    assert restored.suggest("ea") == {
        "strategy": "a",
        "phase": "eval",
        "rung": 1,
        "run": {**restored.configs["a1"]["run"], "seed": 1000},
    }
    states = [t.state for t in restored.searchers["a"]._ot_study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]  # the retry is recorded whole


def test_a_restored_search_goes_on_exactly_as_the_original(tmp_path):
    s = make_search("ab", trials=3)
    for t in ("1", "2"):
        s.suggest(t)
    s.on_trial_complete("1", end(0.5))
    s.save(str(tmp_path / "s.pkl"))
    restored = make_search("ab", trials=3)
    restored.restore(str(tmp_path / "s.pkl"))
    for search in (s, restored):
        search.on_trial_complete("2", end(0.6))
    assert [s.suggest(t) for t in "345"] == [restored.suggest(t) for t in "345"]


def test_a_strategy_with_no_whole_trial_has_no_best_and_no_evaluation():
    s = make_search("a", trials=1)
    s.suggest("1")
    s.on_trial_complete("1", end(0.5, complete=False))
    assert s.best_at("a", 1) is None and s.bests() == {} and s.lost() == ["a"]
    assert s.suggest("2") == StudySearch.FINISHED
    assert s.phases() == {"search-a": "running", "eval-a": "pending"}
    assert s.ladder_rows()["a"][0]["status"] == "no whole trial"


def test_asha_ranks_a_trial_only_against_its_own_strategys_search():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    asha = partial(
        ASHAScheduler, time_attr="t", metric=METRIC, mode="max", grace_period=1, max_t=100
    )
    scheduler = PerStrategyScheduler(asha, ["a", "b"], METRIC)

    def trial(trial_id: str, strategy: str, phase: str = "search"):
        return SimpleNamespace(trial_id=trial_id, config={"strategy": strategy, "phase": phase})

    trials = [trial("a1", "a"), trial("b1", "b"), trial("a2", "a"), trial("e1", "a", "eval")]
    for t in trials:
        scheduler.on_trial_add(None, t)
    decisions = [
        scheduler.on_trial_result(None, t, {"t": 1, METRIC: value})
        for t, value in zip(trials, (0.9, 0.1, 0.1, 0.0), strict=True)
    ]
    # b1 is alone in b's rung; a2 is below a1 in a's; an evaluation is never stopped
    stop, go = TrialScheduler.STOP, TrialScheduler.CONTINUE
    assert decisions == [go, go, stop, go]
    for t in trials:
        scheduler.on_trial_complete(None, t, {"t": 2, METRIC: 0.5})


def test_the_study_wide_cap_is_validated():
    from study.spec import load_spec

    base = {"name": "x", "strategies": {"reset": {"lr": [1e-3, 2e-3]}}}
    assert load_spec({**base, "max_concurrent_trials": 3}).max_concurrent_trials == 3
    assert load_spec(base).max_concurrent_trials is None
    for bad in (0, True, "4", 2.5):
        with pytest.raises(UserError, match="max_concurrent_trials"):
            load_spec({**base, "max_concurrent_trials": bad})


@pytest.mark.parametrize(
    "written,message",
    [
        # the same phase names as a study without evaluation, but an experiment per phase:
        # resuming it here would start its searches again in trials/
        ({"phases": {"search-reset": "running"}}, "study.json is of layout 1 .*0.1.0.*resume"),
        ({"layout": 2, "phases": {"search": "done"}}, "study.json's phases .*0.1.0.*resume"),
    ],
)
def test_a_study_this_plasticity_cannot_continue_is_refused_with_one_line(
    tmp_path, monkeypatch, written, message
):
    import study.driver.experiment
    from study.commands import resume
    from study.store.state import KIND

    monkeypatch.setattr(study.driver.experiment, "run_study", lambda *a, **k: pytest.fail("run"))
    root = tmp_path / "studies" / "old"
    root.mkdir(parents=True)
    spec = {
        "name": "old",
        "strategies": {"reset": {"lr": [1e-3, 2e-3]}},
        "budget": {"eval_seeds": 0},
    }
    (root / "study.yaml").write_text(yaml.safe_dump(spec))
    (root / "study.json").write_text(json.dumps({"kind": KIND, "version": "0.1.0", **written}))
    with pytest.raises(UserError, match=message):
        resume(str(root))


def test_a_restored_generator_asks_the_searcher_again():
    """A snapshot taken after the searcher said FINISHED (a study stopped by a crashed trial,
    or by Ctrl-C): after the restore, the errored trials run again and their strategies'
    evaluations must still be asked for."""
    from study.search import RootedSearchGenerator

    generator = RootedSearchGenerator(make_search("a", trials=1))
    generator.set_state({"counter": 1, "total_samples": 2, "finished": True, "experiment": None})
    assert not generator.is_finished()


def run_to_the_end(s: StudySearch, values: dict[str, float], prefix: str = "") -> list[str]:
    """Suggest and end trials until the searcher says FINISHED; a search trial's value comes
    from ``values`` by its number within its strategy (e.g. "a1"), an evaluation's is 0.1.
    Returns the ids in the order they were suggested."""
    ids, k = [], 0
    while True:
        trial_id = f"{prefix}{k}"
        config = s.suggest(trial_id)
        if config == StudySearch.FINISHED:
            return ids
        assert isinstance(config, dict), "nothing running, yet nothing suggested"
        ids.append(trial_id)
        strategy, phase = s.owner[trial_id]
        n = len(s.trials_of(strategy, phase))
        s.on_trial_complete(trial_id, end(values.get(f"{strategy}{n}", 0.1)))
        k += 1


def test_an_extended_strategy_gets_a_rung_evaluated_only_if_its_best_changed(tmp_path):
    s = make_search("ab", trials=1, evals=2)
    run_to_the_end(s, {"a1": 0.5, "b1": 0.5})
    first_eval = {x: s.trials_of(x, "eval") for x in "ab"}
    s.save(str(tmp_path / "s.pkl"))
    restored = make_search("ab", trials=1, evals=2)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.set_rungs({"a": [1, 2], "b": [1, 2]}) == ["a", "b"]
    assert restored.set_rungs({"a": [1, 2], "b": [1, 2]}) == []  # the same again: nothing
    with pytest.raises(ValueError, match="do not extend the rungs"):
        restored.set_rungs({"a": [2]})
    # until the new rungs are decided, the earlier bests and evaluations stand
    assert restored.phases()["search-a"] == "running" and restored.phases()["eval-a"] == "running"
    assert restored.bests()["a"]["trial"] == s.bests()["a"]["trial"]
    assert len(restored.eval_rows()) == 4
    added = run_to_the_end(restored, {"a2": 0.9, "b2": 0.2}, prefix="x")
    kinds = [restored.owner[t] for t in added]
    # a: one more search trial, better, so its new rung is evaluated; b: worse, reused
    assert kinds == [("a", "search"), ("b", "search"), ("a", "eval"), ("a", "eval")]
    assert restored.bests()["a"] == {
        "config": restored.configs[added[0]],
        "objective": 0.9,
        "trial": added[0],
        "trials": 2,
    }
    assert restored.bests()["b"] == {**s.bests()["b"], "trials": 2}
    assert restored.superseded == []  # the first rung's evaluation stays what it was
    assert restored.trials_of("a", "eval", rung=1) == first_eval["a"]
    assert restored.evaluation("a", 2) == added[2:]
    assert restored.evaluation("b", 2) == first_eval["b"]  # reused
    new_lr = restored.configs[added[0]]["run"]["lr"]
    assert [restored.configs[t]["run"] for t in added[2:]] == [
        {"lr": new_lr, "seed": 1000},
        {"lr": new_lr, "seed": 1001},
    ]
    rows = sorted((r["strategy"], r["trials"], r["seed"]) for r in restored.eval_rows())
    assert rows == [(x, k, seed) for x in "ab" for k in (1, 2) for seed in (1000, 1001)]
    assert set(restored.phases().values()) == {"done"}
    assert restored.planned_trials() == len(restored.owner) == 2 * 2 + 2 * 2 + 2
    # Optuna's study went on: the new trial is its second, and TPE saw the first
    assert [t.state for t in restored.searchers["a"]._ot_study.trials] == [TrialState.COMPLETE] * 2


def test_a_ladder_evaluates_each_rung_once_and_reuses_an_unchanged_best():
    """Rungs 1, 2 and 4: the best after 1 trial is evaluated, then the best after 2 (the same
    trial: reused, nothing runs), then after 4 (another: evaluated). Each evaluation comes
    before the strategy's next search trial."""
    s = make_search("a", evals=2, rungs=[1, 2, 4])
    order = run_to_the_end(s, {"a1": 0.5, "a2": 0.4, "a3": 0.7, "a4": 0.6})
    kinds = [(s.owner[t][1], s.configs[t].get("rung")) for t in order]
    assert kinds == [
        ("search", None),
        ("eval", 1),
        ("eval", 1),
        ("search", None),  # a2 is worse: rung 2 reuses rung 1's evaluation
        ("search", None),
        ("search", None),
        ("eval", 4),
        ("eval", 4),
    ]
    a1, a3 = order[0], order[4]
    assert [s.best_at("a", k) for k in (1, 2, 4)] == [a1, a1, a3]
    assert s.evaluation("a", 2) == s.evaluation("a", 1) == order[1:3]
    assert [e["reused_from"] for e in s.ladder_rows()["a"]] == [None, 1, None]
    assert [e["status"] for e in s.ladder_rows()["a"]] == ["done"] * 3
    assert s.bests()["a"]["trial"] == a3 and s.bests()["a"]["trials"] == 4
    assert [(r["trials"], r["trial"]) for r in s.eval_rows()] == [
        (1, order[1]), (1, order[2]), (2, order[1]), (2, order[2]), (4, order[6]), (4, order[7])
    ]  # fmt: skip
    assert s.planned_trials() == len(s.owner) == 8
    assert set(s.phases().values()) == {"done"}


def test_a_rung_waits_for_all_its_trials_and_a_crashed_one_holds_it_back():
    """With two trials at once, rung 2 is decided only when both of the first two trials have
    ended, whatever order they end in; a crashed third trial holds back rung 4 (and so the
    study ends unfinished) but not rung 2."""
    s = make_search("a", concurrency=2, evals=1, rungs=[2, 4])
    first = [s.suggest(t) for t in ("1", "2")]
    assert all(c["phase"] == "search" for c in first) and s.suggest("x") is None
    s.on_trial_complete("2", end(0.6))
    assert s.best_at("a", 2) is None and s.suggest("3")["phase"] == "search"  # 1 still runs
    s.on_trial_complete("1", end(0.4))
    assert s.best_at("a", 2) == "2"
    assert s.suggest("e1") == {"strategy": "a", "phase": "eval", "rung": 2,
                               "run": {**s.configs["2"]["run"], "seed": 1000}}  # fmt: skip
    s.on_trial_complete("3", error=True)
    s.on_trial_complete("e1", end(0.5))
    assert s.suggest("4")["phase"] == "search"
    s.on_trial_complete("4", end(0.9))
    assert 4 not in s.ladder["a"] and s.suggest("y") == StudySearch.FINISHED
    assert s.phases() == {"search-a": "running", "eval-a": "running"}
    assert [e["status"] for e in s.ladder_rows()["a"]] == ["done", "pending"]


def test_a_rungs_best_is_among_its_first_trials_only():
    """A later trial that ended first (three at once) is not a candidate for an earlier rung:
    rung 2 is the best of trials 1 and 2, even when trial 3 ended before them, better."""
    s = make_search("a", concurrency=3, evals=1, rungs=[2, 3])
    for t in "123":
        s.suggest(t)
    s.on_trial_complete("3", end(0.9))
    s.on_trial_complete("2", end(0.5))
    assert 2 not in s.ladder["a"]  # trial 1 still runs
    s.on_trial_complete("1", end(0.4))
    assert s.best_at("a", 2) == "2" and s.best_at("a", 3) == "3"
    assert [s.suggest(t)["rung"] for t in ("e2", "e3")] == [2, 3]


def test_a_searcher_saved_before_ladders_loads_as_one_rung(tmp_path):
    """A finished study extended once by plasticity 0.1: its searcher had a plan, a best and
    evaluations (one superseded). It loads as one rung at the planned trials, decided, the
    superseded evaluation kept out; one saved with an extension under way is refused."""
    s = make_search("a", trials=2, evals=1)
    order = run_to_the_end(s, {"a1": 0.5, "a2": 0.7})
    state = s.__dict__.copy()
    for key in ("rungs", "ladder"):
        del state[key]
    old_eval = "e-old"
    state.update(
        plan={"a": 2},
        best={"a": {"config": s.configs[order[1]], "objective": 0.7, "trial": order[1]}},
        superseded=[old_eval],
        replaced={},
        live=set(),
        owner={old_eval: ("a", "eval"), **s.owner},
        configs={old_eval: s.configs[order[2]], **s.configs},
        ended={old_eval: s.ended[order[2]], **s.ended},
    )
    for t in (old_eval, order[2]):
        state["configs"][t] = {k: v for k, v in state["configs"][t].items() if k != "rung"}
    old = StudySearch.__new__(StudySearch)
    old.load_state(state)
    assert old.rungs == {"a": [2]} and old.superseded == [old_eval]
    assert old.best_at("a", 2) == order[1] and old.evaluation("a", 2) == [order[2]]
    assert old.configs[order[2]]["rung"] == 2 and old.planned_trials() == 2 + 1 + 1
    assert set(old.phases().values()) == {"done"}
    with pytest.raises(UserError, match="extension had not finished"):
        StudySearch.__new__(StudySearch).load_state({**state, "replaced": {"a": {}}})


def test_a_restored_generator_lays_the_drivers_plan_over_the_searcher_and_waits_for_it():
    from study.search import RootedSearchGenerator
    from study.search.attached import ATTACHED, Attachment

    search = make_search("a", trials=1)
    run_to_the_end(search, {})
    generator = RootedSearchGenerator(search)
    ATTACHED["t"] = Attachment(folder=None, rungs={"a": [1, 3]}, trial_ended=lambda *a: None)
    try:
        generator.set_state(
            {"counter": 2, "total_samples": 2, "finished": True, "experiment": None}
        )
    finally:
        ATTACHED.pop("t")
    # 3 search trials and 1 evaluation, and at most 1 more if rung 3's best is another trial
    assert search.rungs["a"] == [1, 3] and generator.total_samples == 5
    # Ray's own count of samples would say it is done; only the searcher decides
    generator._counter = 10
    assert not generator.is_finished()


def test_the_saved_search_is_the_newest_whole_one(tmp_path):
    """saved_search (the views' refresh and a resume read it): a searcher snapshot that a kill
    left empty or torn is passed over for the checked copy the driver kept of it, then for an
    older session's; only when none is whole does it raise."""
    from pyarrow import fs as pafs

    from study.search.saved import saved_search

    old, new = "2026-11-25_10-00-00", "2026-11-25_11-00-00"
    exp = tmp_path / "trials"
    exp.mkdir()
    s = make_search("a", trials=3)

    def save(name: str) -> int:
        """Save the search as it is now under ``name``; returns the trials it has ended."""
        s.save(str(exp / name))
        return sum(t.state == TrialState.COMPLETE for t in s.searchers["a"]._ot_study.trials)

    def ended() -> int:
        search = saved_search(pafs.LocalFileSystem(), str(exp))
        return sum(t.state == TrialState.COMPLETE for t in search.searchers["a"]._ot_study.trials)

    names = [f"searcher-state-{old}.pkl", f"searcher-state-{new}.pkl.whole"]
    names.append(f"searcher-state-{new}.pkl")
    for k, name in enumerate(names):
        s.suggest(f"a{k}")
        s.on_trial_complete(f"a{k}", end(0.1 * k))
        assert save(name) == k + 1
    assert ended() == 3  # the newest, whole
    (exp / f"searcher-state-{new}.pkl").write_bytes(b"")  # a kill as Ray rewrote it
    assert ended() == 2  # the kept copy of it
    (exp / f"searcher-state-{new}.pkl.whole").unlink()
    assert ended() == 1  # the older session's
    data = (exp / f"searcher-state-{old}.pkl").read_bytes()
    (exp / f"searcher-state-{old}.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception):  # noqa: B017 (whatever unpickling a torn file raises)
        saved_search(pafs.LocalFileSystem(), str(exp))
