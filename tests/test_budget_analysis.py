"""The analysis of the search budget (issue 21): which evaluation stands at which rung of a
study's ladder, each comparison at every rung with its sentence, the anytime view and the
expected-max curve, the paired probability of improvement, and figure styles that tell every
strategy apart. Numbers are worked out by hand; study folders are analysis.synthetic's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import budget, figures
from analysis.aggregate import aggregate, paired_probability_of_improvement
from analysis.load import load
from analysis.render import write as write_report
from analysis.report import build_report, comparison_rows
from analysis.synthetic import make_study
from study.budget import Budget

# --- expected max of k random configurations --------------------------------------------------


def test_expected_max_by_hand():
    # k = 1: the mean; k = 2: P(max = v_(i)) = (i/n)^2 - ((i-1)/n)^2 = 1/9, 3/9, 5/9
    got = budget.expected_max([3.0, 1.0, 2.0], [1, 2, 3])
    assert got[0] == pytest.approx(2.0)
    assert got[1] == pytest.approx((1 * 1 + 2 * 3 + 3 * 5) / 9)
    assert got[2] == pytest.approx((1 * 1 + 2 * 7 + 3 * 19) / 27)


def test_expected_max_rises_to_the_maximum():
    values = np.random.default_rng(0).normal(size=7)
    got = budget.expected_max(values, range(1, 200))
    assert np.all(np.diff(got) >= -1e-12)
    assert got[-1] == pytest.approx(values.max(), abs=1e-6)


# --- whether a direction holds along the ladder ---------------------------------------------


def rows(*rungs, pairs=5):
    """Rows of budget.ladder_table for one comparison: (trials, diff, lo, hi) per rung."""
    return pd.DataFrame(
        [
            {"level": i, "trials": t, "pairs": pairs, "diff": d, "lo": lo, "hi": hi}
            for i, (t, d, lo, hi) in enumerate(rungs, start=1)
        ]
    )


@pytest.mark.parametrize(
    "rungs, kind, words",
    [
        ([(4, 0.1, 0.05, 0.15)], "single", "at 4 search trials per strategy (a single budget)"),
        (
            [(4, 0.1, 0.05, 0.15), (8, 0.12, 0.08, 0.16), (16, 0.11, 0.07, 0.15)],
            "stable",
            "stable: better at every rung from 4 search trials on",
        ),
        (
            [(4, 0.01, -0.02, 0.04), (8, -0.1, -0.15, -0.05), (16, -0.12, -0.2, -0.04)],
            "stable",
            "stable: worse at every rung from 8 search trials on",
        ),
        (
            [(4, -0.3, -0.35, -0.25), (8, 0.05, 0.01, 0.09)],
            "budget-limited",
            "the direction reverses (-0.300 at 4, +0.050 at 8)",
        ),
        (
            [(4, -0.3, -0.35, -0.25), (16, -0.01, -0.03, 0.01)],
            "budget-limited",
            "the difference is gone at 16 trials",
        ),
        (
            [(4, -0.3, -0.35, -0.25), (16, -0.14, -0.16, -0.12)],
            "budget-limited",
            "worse at every rung from 4 search trials on, but the difference shrinks towards 0",
        ),
        # a reversal, then the same side at two rungs: stable from there, the reversal said
        (
            [(4, 0.008, 0.006, 0.011), (8, -0.007, -0.01, -0.003), (16, -0.006, -0.01, -0.001)],
            "stable",
            "stable: worse at every rung from 8 search trials on, after being better at 4",
        ),
        (
            [(4, 0.0, -0.01, 0.01), (8, 0.1, 0.05, 0.15), (16, 0.1, 0.05, 0.15)],
            "stable",
            "better at every rung from 8 search trials on, after a CI containing 0 at 4",
        ),
        # the shrink rule looks at the rungs of the final side only
        (
            [(4, 0.3, 0.25, 0.35), (8, -0.1, -0.15, -0.05), (16, -0.09, -0.12, -0.06)],
            "stable",
            "after being better at 4",
        ),
        # only at the largest rung is not stability
        (
            [(4, 0.0, -0.01, 0.01), (8, 0.01, -0.01, 0.02), (16, -0.1, -0.15, -0.05)],
            "budget-limited",
            "worse only at the largest rung, 16 trials",
        ),
        # a side that comes and goes is not "only at the largest rung"
        (
            [(4, 0.007, 0.006, 0.008), (8, 0.001, -0.0, 0.004), (16, 0.007, 0.006, 0.008)],
            "budget-limited",
            "better at 4, 16 trials, a CI containing 0 at 8",
        ),
        # a reversal back at the largest rung
        (
            [(4, 0.1, 0.05, 0.15), (8, -0.1, -0.15, -0.05), (16, 0.1, 0.05, 0.15)],
            "budget-limited",
            "the direction reverses",
        ),
        # one evaluation re-used at two rungs by both strategies: identical rows, stable
        ([(4, -0.05, -0.07, -0.03), (8, -0.05, -0.07, -0.03)], "stable", "from 4 search"),
        # exactly half of the earlier gap is not "below half": stable
        ([(4, -0.3, -0.35, -0.25), (16, -0.15, -0.16, -0.12)], "stable", "worse"),
        (
            [(4, 0.01, -0.02, 0.04), (16, -0.01, -0.03, 0.01)],
            "indistinguishable",
            "the CI contains 0 at every rung",
        ),
        ([(4, 0.1, 0.05, 0.15), (8, 0.1, 0.05, 0.15)], "stable", "better"),
    ],
)
def test_stability_follows_its_rules(rungs, kind, words):
    got = budget.stability(rows(*rungs), min_seeds=5)
    assert got.kind == kind
    assert words in got.sentence


def test_stability_needs_enough_seeds_at_every_rung():
    got = budget.stability(rows((4, 0.1, 0.05, 0.15), (8, 0.1, 0.05, 0.15), pairs=4), 5)
    assert got.kind == "too few seeds"


def test_stability_says_which_rungs_are_still_to_come():
    got = budget.stability(rows((4, -0.3, -0.35, -0.25)), 5, rungs=[4, 8, 16])
    assert got.kind == "pending"
    assert "rungs 8, 16 to come" in got.sentence
    got = budget.stability(rows((4, -0.3, -0.35, -0.25), (8, 0.1, 0.05, 0.2)), 5, [4, 8, 16])
    assert got.kind == "budget-limited" and got.sentence.endswith("rungs 16 to come")


# --- which evaluation stands at which rung ---------------------------------------------------


def _states(*roots):
    return {str(r): json.loads((r / "study.json").read_text()) for r in roots}


def test_members_follow_study_json_ladder_including_reused_evaluations(tmp_path):
    root = make_study(
        tmp_path / "s", rungs=(2, 4, 8), eval_seeds=2, reuse=frozenset({("expanded", 4)})
    )
    table = load([root]).table
    member = budget.members(table, _states(root))
    state = json.loads((root / "study.json").read_text())
    for strategy in ("reset", "expanded"):
        for level, entry in enumerate(state["ladder"][strategy], start=1):
            got = member[(member.strategy == strategy) & (member.level == level)]
            assert sorted(t.split("/")[-1] for t in got.trial) == sorted(entry["evals"])
            assert set(got.rung) == {entry["trials"]}
    mine = member[member.strategy == "expanded"].set_index("level").trial
    assert set(mine[1]) == set(mine[2]) and not set(mine[2]) & set(mine[3])
    # the table's rung column is the rung an evaluation trial ran for (the first that used it)
    evals = table[(table.phase == "eval") & (table.strategy == "expanded")]
    assert sorted(evals.rung.unique()) == [2, 8]


def test_members_of_a_study_from_before_ladders_are_one_level(tmp_path):
    root = make_study(tmp_path / "old", trials_per_strategy=3, eval_seeds=2)
    member = budget.members(load([root]).table, _states(root))
    assert set(member.level) == {1} and set(member.rung) == {3}
    assert len(member) == 4  # two strategies x two evaluation seeds


def test_headline_level_is_the_largest_every_strategy_has_evaluated():
    member = pd.DataFrame(
        [
            ("a", "reset", 1, 4, "t1"),
            ("a", "reset", 2, 8, "t2"),
            ("a", "expanded", 1, 4, "t3"),
            ("b", "reset", 1, 4, "t4"),
            ("b", "reset", 2, 8, "t5"),
            ("b", "expanded", 1, 4, "t6"),
            ("b", "expanded", 2, 8, "t7"),
        ],
        columns=budget.MEMBER_COLUMNS,
    )
    assert budget.headline_level(member).to_dict() == {"a": 1, "b": 2}
    assert set(budget.largest(member).trial) == {"t1", "t3", "t5", "t7"}


def test_the_headline_compares_the_largest_rung_only(tmp_path):
    root = make_study(tmp_path / "s", rungs=(2, 4), eval_seeds=2)
    table = load([root]).table
    member = budget.members(table, _states(root))
    rows_, note = comparison_rows(table, member)
    state = json.loads((root / "study.json").read_text())
    top = {t for s in state["ladder"].values() for t in s[-1]["evals"]}
    assert not note
    assert {t.split("/")[-1] for t in rows_.trial.unique()} == top


def test_startup_rule_is_the_study_layers():
    for largest in range(1, 60):
        state = {"budget_policy": {"rungs": {"reset": [2, largest]}}}
        assert budget.startup_trials({}, state, "reset") == Budget().startup(largest)
    spec = {"budget": {"startup_trials": 7}}
    assert budget.startup_trials(spec, {}, "reset") == Budget(startup_trials=7).startup(40) == 7


# --- the report along the ladder -------------------------------------------------------------


def _reversing(strategy, rung):
    """expanded ahead of reset at 2 trials, behind from 4 on (the made-up curves put it 0.18
    behind; the gain at rung 2 puts it 0.12 ahead)."""
    return 0.3 if (strategy, rung) == ("expanded", 2) else 0.0


def test_report_gives_every_comparison_at_every_rung(tmp_path):
    root = make_study(tmp_path / "s", rungs=(2, 4, 8), eval_seeds=5, gain=_reversing)
    report = build_report(load([root]), reps=200)
    lad = report.ladder
    assert list(lad.trials) == [2, 4, 8] and set(lad.strategy) == {"expanded"}
    assert lad["diff"].iloc[0] > 0 > lad["diff"].iloc[-1]
    assert list(lad.kind) == ["better", "worse", "worse"]
    assert list(lad.headline) == [False, False, True]
    (v,) = report.verdicts
    assert (v.trials, v.reset_trials, v.kind) == (8, 8, "worse")
    assert v.diff == pytest.approx(lad["diff"].iloc[-1])
    assert v.along.startswith(
        "stable: worse at every rung from 4 search trials on, after being better at 2"
    )
    # the anytime view: each strategy's search in its order, the best so far never falling
    (at,) = report.anytime
    for _, g in at.search.groupby("strategy"):
        assert list(g.search_index) == list(range(1, 9))
        assert np.all(np.diff(g.best.to_numpy()) >= 0)
        assert g.best.iloc[-1] == pytest.approx(g.objective.max())
    assert set(at.evals.rung) == {2, 4, 8}
    n = Budget().startup(8)
    assert set(at.expected.startup) == {n}
    # expected best of k = 1..n random configurations: from the first n trials suggested
    for s, g in at.search.groupby("strategy"):
        mine = at.expected[at.expected.strategy == s]
        assert list(mine.k) == list(range(1, n + 1))
        first = g[g.search_index <= n].objective.to_numpy()
        np.testing.assert_allclose(mine.expected, budget.expected_max(first, range(1, n + 1)))
    # the verdict is the ladder's headline row: one interval, one kind
    top = lad[lad.headline].iloc[0]
    assert (v.lo, v.hi, v.pairs) == (top.lo, top.hi, top.pairs)

    out = tmp_path / "out"
    write_report(report, out)
    md = (out / "report.md").read_text()
    assert "## The search budget" in md
    assert "at 8 search trials per strategy" in md
    assert "worse than reset (CI below 0); along the ladder, stable: worse at every rung" in md
    assert (out / "ladder.csv").exists() and (out / "s_anytime.png").exists()
    written = pd.read_csv(out / "ladder.csv")
    assert list(written.trials) == [2, 4, 8]


def test_same_seed_same_ladder_numbers(tmp_path):
    root = make_study(tmp_path / "s", rungs=(2, 4), eval_seeds=5, gain=_reversing)
    a = build_report(load([root]), seed=3, reps=200).ladder
    b = build_report(load([root]), seed=3, reps=200).ladder
    pd.testing.assert_frame_equal(a, b)


def test_scenarios_are_aggregated_at_every_rung(tmp_path):
    scenario = {
        "name": "x",
        "chance": 0.1,
        "expects": [{"strategy": "expanded", "metric": "auc_test_acc", "direction": "below"}],
    }
    roots = [
        make_study(tmp_path / n, rungs=(2, 4), eval_seeds=5, gain=_reversing, scenario=scenario)
        for n in ("one", "two")
    ]
    report = build_report(load(roots), reps=200)
    res = report.scenarios
    assert [lv for lv, _, _ in res.by_level] == [1, 2] and res.headline == 2
    assert res.aggregate is res.by_level[-1][2]
    # each direction from its smallest rung, the headline marked, with its ladder sentence
    one = res.directions[res.directions.scenario == "one"]
    assert list(one.trials) == ["2", "4"] and list(one.headline) == [False, True]
    assert list(one.verdict) == ["reversed", "holds"]
    assert set(one.along) == {"budget-limited: the direction reverses (+0.117 at 2, -0.183 at 4)"}
    out = tmp_path / "out"
    write_report(report, out)
    assert (
        "- one: expanded below reset on auc_test_acc: budget-limited: the direction"
        in (out / "report.md").read_text()
    )
    by_rung = pd.read_csv(out / "aggregate_by_rung.csv")
    assert sorted(by_rung.trials.astype(str).unique()) == ["2", "4"]
    expanded = by_rung[by_rung.strategy == "expanded"].set_index("trials")
    # ahead on every seed at 2 trials, behind on every seed at 4: paired P(improve) 1 then 0
    assert expanded.p_paired.to_dict() == {2: 1.0, 4: 0.0}
    # every pair on one side: any resample of the pairs gives the same probability
    assert expanded.p_paired_lo.to_dict() == {2: 1.0, 4: 0.0}
    assert expanded.p_paired_hi.to_dict() == {2: 1.0, 4: 0.0}


def test_a_single_budget_over_different_searches_is_said(tmp_path):
    root = make_study(tmp_path / "s", eval_seeds=5)
    state = json.loads((root / "study.json").read_text())
    state["budget_policy"] = {"searched": {"reset": ["lr"], "expanded": ["lr", "alpha_steps"]}}
    (root / "study.json").write_text(json.dumps(state))
    report = build_report(load([root]), reps=200)
    (note,) = report.budget_notes
    assert "different numbers of parameters (reset 1, expanded 2)" in note
    (v,) = report.verdicts
    assert v.trials == 2 and "(a single budget)" in v.along
    out = tmp_path / "out"
    write_report(report, out)
    md = (out / "report.md").read_text()
    assert note in md and "at 2 search trials per strategy (a single budget)" in md


# --- the paired probability of improvement ------------------------------------------------


def test_paired_probability_of_improvement_by_hand():
    # scenario 1: 2 wins, 1 tie, 1 loss -> 2.5/4; scenario 2 (3 pairs, NaN padded): 1 win -> 1/3
    diffs = np.array([[1.0, 0.2], [0.5, -0.1], [0.0, -0.3], [-2.0, np.nan]])
    assert paired_probability_of_improvement(diffs) == pytest.approx((2.5 / 4 + 1 / 3) / 2)


def test_paired_and_unpaired_differ_where_seeds_carry_the_variation():
    # every seed: x = reset's run + 0.01, seeds spread widely: paired 1, unpaired near 1/2
    rng = np.random.default_rng(0)
    level = rng.normal(0.6, 0.1, size=10)
    frame = pd.concat(
        [
            pd.DataFrame({"scenario": "a", "strategy": "reset", "seed": range(10), "v": level}),
            pd.DataFrame({"scenario": "a", "strategy": "x", "seed": range(10), "v": level + 0.01}),
        ]
    )
    got = aggregate(frame, "v", chance=0.1, rng=np.random.default_rng(0), reps=200)
    row = got.overall.set_index("strategy").loc["x"]
    assert row.p_paired == 1.0 and row.pairs == 10
    assert 0.4 < row.p_improve < 0.7


# --- figure styles ------------------------------------------------------------------------


def test_every_strategy_of_a_figure_has_its_own_style():
    order = ["reset", "continuous", "expanded"] + [f"method{i}" for i in range(37)]
    seen = {tuple(figures.style(s, order).values()) for s in order}
    assert len(seen) == len(order) == 40
    assert figures.style("reset", order)["color"] == "C0"
    assert figures.style("expanded", order)["color"] == "C2"
    # the old rule gave the 8th strategy C0 again, solid, like reset
    ten = ["reset", "continuous", "expanded", "a", "b", "c", "d", "e", "f", "g", "h"]
    styles = [tuple(figures.style(s, ten).values()) for s in ten]
    assert len(set(styles)) == len(ten)


def test_a_running_ladder_is_compared_where_every_strategy_stands(tmp_path):
    # continuous's rung 4 is not evaluated yet: every headline stays at 2 trials, although
    # expanded and reset are both evaluated at 4 (a 4-trial expanded is not set against a
    # 2-trial continuous in one table); the ladder still shows expanded at 4
    root = make_study(
        tmp_path / "s",
        ("reset", "expanded", "continuous"),
        rungs=(2, 4),
        eval_seeds=5,
        gain=_reversing,
    )
    state = json.loads((root / "study.json").read_text())
    state["ladder"]["continuous"][1].update(status="pending", evals=[], best=None)
    (root / "study.json").write_text(json.dumps(state))
    report = build_report(load([root]), reps=200)
    lad = report.ladder.set_index(["strategy", "trials"])
    assert ("expanded", 4) in lad.index and ("continuous", 4) not in lad.index
    verdicts = {v.strategy: v for v in report.verdicts}
    assert verdicts["expanded"].trials == verdicts["continuous"].trials == 2
    assert verdicts["expanded"].kind == "better"
    assert verdicts["expanded"].diff == pytest.approx(lad.loc[("expanded", 2), "diff"])
    assert "rungs 4 to come" in verdicts["continuous"].along


def test_ladder_rows_run_from_the_smallest_rung_per_comparison(tmp_path):
    root = make_study(
        tmp_path / "s", ("reset", "expanded", "continuous"), rungs=(2, 4, 8), eval_seeds=5
    )
    lad = build_report(load([root]), reps=100).ladder
    assert list(zip(lad.strategy, lad.trials)) == [
        (s, k) for s in ("expanded", "continuous") for k in (2, 4, 8)
    ]


def test_anytime_of_a_study_whose_evaluations_have_not_finished(tmp_path):
    """A running study before any evaluation ended: the search's view, no rung evaluations
    (the rung table is then a frame without columns; it raised KeyError: 'strategy')."""
    root = make_study(tmp_path / "s", rungs=(2, 4), eval_seeds=5)
    table = load([root]).table
    spec = yaml.safe_load((root / "study.yaml").read_text())
    state = json.loads((root / "study.json").read_text())
    at = budget.anytime(str(root), spec, state, table, pd.DataFrame(), np.random.default_rng(0), 50)
    assert at is not None and at.evals.empty and list(at.evals.columns)[:2] == ["strategy", "rung"]
    assert set(at.search.strategy) == set(table.strategy)
