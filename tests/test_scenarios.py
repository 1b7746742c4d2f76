"""Scenario directions and the aggregate across scenarios, on made-up studies."""

import math

import pandas as pd
import pytest

from analysis.load import load
from analysis.render import write_report
from analysis.report import build_report
from analysis.scenarios import verdict
from analysis.synthetic import make_study


@pytest.mark.parametrize(
    "expected,pairs,lo,hi,answer",
    [
        ("below", 5, -0.3, -0.1, "holds"),
        ("below", 5, 0.1, 0.3, "reversed"),
        ("below", 5, -0.1, 0.1, "not shown"),
        ("above", 5, 0.1, 0.3, "holds"),
        ("above", 5, -0.3, -0.1, "reversed"),
        ("above", 5, 0.0, 0.3, "not shown"),  # touching 0 is not excluding it
        ("below", 4, -0.3, -0.1, "too few seeds"),
        ("below", 5, math.nan, math.nan, "too few seeds"),
    ],
)
def test_direction_verdict(expected, pairs, lo, hi, answer):
    assert verdict(expected, pairs, lo, hi, min_seeds=5) == answer


def _scenario(direction, metric="auc_test_acc"):
    return {
        "reproduces": "made up",
        "chance": 0.1,
        "expects": [
            {"metric": metric, "strategy": "expanded", "baseline": "reset", "direction": direction}
        ],
    }


def test_directions_and_aggregate_from_two_scenarios(tmp_path):
    # synthetic curves: expanded learns each restart slower than reset on every seed
    a = make_study(tmp_path / "a", eval_seeds=5, scenario=_scenario("below"))
    b = make_study(tmp_path / "b", eval_seeds=5, scenario=_scenario("above"))
    report = build_report(load([a, b]), reps=200)
    d = report.scenarios.directions.set_index("scenario")
    assert d.loc["a", "verdict"] == "holds" and d.loc["b", "verdict"] == "reversed"
    assert (d.pairs == 5).all() and (d["diff"] < 0).all()
    overall = report.scenarios.aggregate.overall.set_index("strategy")
    assert overall.loc["reset", "iqm"] == pytest.approx(1.0)  # reset defines 1
    assert overall.loc["expanded", "iqm"] < 1 and overall.loc["expanded", "p_improve"] == 0
    path = write_report(load([a, b]), tmp_path / "out", reps=200)
    text = path.read_text()
    assert "## Scenarios" in text and "![aggregate](aggregate.png)" in text
    assert (tmp_path / "out" / "aggregate.png").exists()
    saved = pd.read_csv(tmp_path / "out" / "scenario_directions.csv")
    assert list(saved.verdict) == ["holds", "reversed"]


def test_two_seeds_give_numbers_but_no_direction_verdict(tmp_path):
    a = make_study(tmp_path / "a", eval_seeds=2, scenario=_scenario("below"))
    report = build_report(load([a]), reps=100)
    row = report.scenarios.directions.iloc[0]
    assert row.pairs == 2 and row.verdict == "too few seeds" and row["diff"] < 0


def test_a_study_without_scenario_or_evaluation_has_no_scenario_section(tmp_path):
    a = make_study(tmp_path / "a", eval_seeds=5)
    assert build_report(load([a]), reps=50).scenarios is None
    b = make_study(tmp_path / "b", eval_seeds=0, scenario=_scenario("below"))
    assert build_report(load([b]), reps=50).scenarios is None
