"""Cross-scenario aggregates (analysis/aggregate.py) on hand-made arrays with answers worked out
by hand; a few bootstrap reps only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.aggregate import (
    aggregate,
    iqm,
    mean_of_means,
    normalisation_bounds,
    normalise,
    performance_profile,
    probability_of_improvement,
    score_matrix,
    stratified_bootstrap,
    stratified_resample,
)
from analysis.figures import cross_scenario
from plasticity.errors import UserError

NAN = np.nan


def test_iqm_by_hand():
    # rliable's own case: eight 1s and 2s, middle four [1, 1, 2, 2].
    assert iqm(np.array([[1, 2], [2, 2], [1, 1], [2, 1]])) == 1.5
    # Pooled over both scenarios: sorted 0 1 2 3 4 9 10 100, cut 2 each end -> (2+3+4+9)/4.
    # The mean would be 16.125, the median 3.5, the mean of per-scenario IQMs (1.5+9.5)/2 = 5.5.
    assert iqm(np.array([[0, 10], [1, 9], [2, 100], [3, 4]])) == 4.5
    # NaN padding is not a run: 1 2 3 | 7 8 9 10 pooled is 7 runs, cut int(1.75) = 1 each end.
    assert iqm(np.array([[1, 7], [2, 8], [3, 9], [NAN, 10]])) == pytest.approx(29 / 5)


def test_iqm_is_scipy_trim_mean():
    """Two implementations: ours against scipy.stats.trim_mean(x, 0.25), rliable's definition."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in range(1, 13):
        x = rng.normal(size=(n, 3))
        assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25, axis=None))


def test_mean_of_means_weights_scenarios_equally():
    # Scenario means 2 and 10; pooling the three runs would give (1 + 3 + 10) / 3.
    assert mean_of_means(np.array([[1, 10], [3, NAN]])) == 6.0


def test_probability_of_improvement_by_hand():
    # Scenario 1: X=[1,2], Y=[1,1]: pairs (1,1) tie 1/2 twice, (2,1) win twice -> 3/4.
    # Scenario 2: X=[0,3], Y=[1,2]: only 3 beats both -> 2/4. Average over scenarios 0.625
    # (pooling the scenarios' runs instead would give 9/16).
    x = np.array([[1, 0], [2, 3]])
    y = np.array([[1, 1], [1, 2]])
    assert probability_of_improvement(x, y) == 0.625
    assert probability_of_improvement(y, x) == 0.375
    # rliable's test case, with 4 runs against 3.
    x = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
    y = np.array([[1, 1], [2, 2], [3, 3]])
    assert probability_of_improvement(x, y) == pytest.approx(1 / 3)
    # Identical samples: every comparison a tie or a mirror pair -> 1/2 exactly.
    assert probability_of_improvement(x, x) == 0.5


def test_probability_of_improvement_is_mann_whitney_u():
    """Two implementations: ours against scipy's Mann–Whitney U / (n_x n_y), with ties."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, size=(5, 3)), rng.integers(0, 4, size=(7, 3))
    by_scipy = [stats.mannwhitneyu(x[:, m], y[:, m]).statistic / 35 for m in range(3)]
    assert probability_of_improvement(x, y) == pytest.approx(np.mean(by_scipy))


def test_normalise_chance_to_zero_and_baseline_to_one():
    frame = pd.DataFrame(
        {
            "scenario": ["a", "a", "a", "b", "b", "b"],
            "strategy": ["reset", "reset", "other", "reset", "reset", "other"],
            "seed": [0, 1, 0, 0, 1, 0],
            "acc": [0.5, 0.6, 0.775, 0.3, 0.5, 0.3],
        }
    )
    bounds = normalisation_bounds(frame, "acc", {"a": 0.1, "b": 0.2})
    assert bounds.low.tolist() == [0.1, 0.2]
    assert bounds.high.tolist() == pytest.approx([0.55, 0.4])  # reset's means
    other = score_matrix(frame, "acc", "other", ["a", "b"])
    # a: (0.775 - 0.1) / (0.55 - 0.1) = 1.5; b: (0.3 - 0.2) / (0.4 - 0.2) = 0.5
    assert normalise(other, bounds.low, bounds.high) == pytest.approx(np.array([[1.5, 0.5]]))
    assert normalise(np.array([[0.1, 0.4]]), bounds.low, bounds.high) == pytest.approx(
        np.array([[0.0, 1.0]])
    )
    # A loss (lower is better): chance 2.3, baseline 0.3; a loss of 1.3 is halfway -> 0.5.
    assert normalise(np.array([[1.3]]), [2.3], [0.3]) == pytest.approx(np.array([[0.5]]))


def test_normalisation_refuses_a_flat_or_missing_baseline():
    frame = pd.DataFrame(
        {"scenario": ["a", "b"], "strategy": ["reset", "other"], "seed": [0, 0], "acc": [0.1, 1]}
    )
    with pytest.raises(UserError, match="scenario.*a, b"):
        normalisation_bounds(frame, "acc", 0.1)  # a: reset at chance; b: no reset
    with pytest.raises(UserError, match="no chance level.*b"):
        normalisation_bounds(frame, "acc", {"a": 0.1})


def test_performance_profile_by_hand():
    # Scenario a: 0, 0.5, 1, 1.5; scenario b: 2, 2 (padded). Strictly above τ, per scenario:
    # τ=0.5 -> a 2/4, b 1 -> 0.75; τ=1 -> a 1/4, b 1 -> 0.625 (pooled runs would give 4/6, 3/6).
    scores = np.array([[0, 2], [0.5, 2], [1, NAN], [1.5, NAN]])
    assert performance_profile(scores, np.array([0.5, 1.0])) == pytest.approx([0.75, 0.625])
    assert performance_profile(scores, np.array([-1.0, 2.0])) == pytest.approx([1.0, 0.0])


def test_resample_never_mixes_scenarios():
    rng = np.random.default_rng(0)
    # Scenario a: all 0; b: all 1; c: one run of 5 padded by NaN.
    scores = np.array([[0, 1, 5], [0, 1, NAN], [0, 1, NAN]])
    for _ in range(50):
        out = stratified_resample(scores, rng)
        np.testing.assert_array_equal(out, scores)
    _, lo, hi = stratified_bootstrap(lambda x: np.nanmean(x, axis=0), [scores[:, :2]], rng, 50)
    np.testing.assert_array_equal(lo, [0, 1])
    np.testing.assert_array_equal(hi, [0, 1])


def test_resample_draws_with_replacement_within_a_scenario():
    rng = np.random.default_rng(0)
    scores = np.array([[1.0, 10], [2, 20], [3, NAN]])
    seen = set()
    for _ in range(200):
        out = stratified_resample(scores, rng)
        assert set(out[:, 0]) <= {1, 2, 3} and set(out[:2, 1]) <= {10, 20}
        assert np.isnan(out[2, 1])
        seen.add(tuple(out[:, 0]))
    assert (1.0, 1.0, 1.0) in seen and len(seen) > 10  # repeats, many distinct resamples


def test_bootstrap_is_reproducible_and_needs_two_runs():
    x = np.array([[0.0, 1.1], [1.3, 3.7], [2.9, 2.3], [0.4, 5.3]])
    a = stratified_bootstrap(mean_of_means, [x], np.random.default_rng(5), 50)
    b = stratified_bootstrap(mean_of_means, [x], np.random.default_rng(5), 50)
    c = stratified_bootstrap(mean_of_means, [x], np.random.default_rng(6), 50)
    assert a == b and a[1:] != c[1:]  # the Generator passed in decides the interval
    assert a[1] < a[0] < a[2]
    point, lo, hi = stratified_bootstrap(iqm, [np.array([[1.0, 2], [2, NAN]])], a_rng(), 100)
    assert point == pytest.approx(5 / 3) and np.isnan(lo) and np.isnan(hi)


def test_bootstrap_interval_is_the_percentile_interval():
    # Two runs 0 and 1: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so
    # the central 20% of resamples is 1/2 and the central 95% reaches both 0 and 1.
    x = np.array([[0.0], [1.0]])
    assert stratified_bootstrap(mean_of_means, [x], a_rng(), 400, level=0.2)[1:] == (0.5, 0.5)
    assert stratified_bootstrap(mean_of_means, [x], a_rng(), 400, level=0.95)[1:] == (0, 1)


def a_rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tidy() -> pd.DataFrame:
    """Two scenarios (chance 0.1 and 0.2), three seeds; 'better' beats reset in every run and
    'worse' loses every run; scenario c lacks 'worse'."""
    rows = []
    scores = {
        "a": {"reset": [0.5, 0.6, 0.7], "better": [0.8, 0.9, 1.0], "worse": [0.1, 0.2, 0.3]},
        "b": {"reset": [0.3, 0.4, 0.5], "better": [0.6, 0.7, 0.8], "worse": [0.2, 0.2, 0.2]},
        "c": {"reset": [0.5, 0.5, 0.5], "better": [0.9, 0.9, 0.9]},
    }
    for scenario, by_strategy in scores.items():
        for strategy, values in by_strategy.items():
            rows += [(scenario, strategy, seed, v) for seed, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "acc"])


def test_aggregate_end_to_end_by_hand():
    res = aggregate(tidy(), "acc", chance={"a": 0.1, "b": 0.2, "c": 0.1}, rng=a_rng(), reps=50)
    assert res.excluded == ("c",)
    assert res.bounds.high.tolist() == pytest.approx([0.6, 0.4])
    per = res.per_scenario.set_index(["scenario", "strategy"])
    assert per.loc[("c", "better"), "n"] == 3 and per.loc[("a", "better"), "mean"] == 0.9
    assert per.loc[("b", "worse"), ["lo", "hi"]].tolist() == pytest.approx([0.2, 0.2])
    overall = res.overall.set_index("strategy")
    # better, normalised: a (0.8..1.0 - 0.1)/0.5 = 1.4 1.6 1.8; b (0.6..0.8 - 0.2)/0.2 = 2 2.5 3
    # -> pooled sorted 1.4 1.6 1.8 2 2.5 3, cut 1 each end: IQM 1.975; mean (1.6 + 2.5)/2.
    assert overall.loc["better", "iqm"] == pytest.approx(1.975)
    assert overall.loc["better", "mean"] == pytest.approx(2.05)
    assert overall.loc["better", ["p_improve", "p_improve_lo", "p_improve_hi"]].tolist() == [
        1,
        1,
        1,
    ]
    assert overall.loc["worse", "p_improve_hi"] == 0
    assert overall.loc["reset", "mean"] == pytest.approx(1.0)
    assert np.isnan(overall.loc["reset", "p_improve"])
    assert overall.loc["better", "scenarios"] == 2 and overall.loc["better", "runs"] == 6
    assert (overall.iqm_lo <= overall.iqm).all() and (overall.iqm <= overall.iqm_hi).all()
    prof = res.profiles[res.profiles.strategy == "better"].set_index("tau")
    assert prof.fraction.iloc[0] == 1 and prof.fraction.iloc[-1] == 0
    assert res.profiles.tau.min() == 0 and res.profiles.tau.max() == pytest.approx(3.0)


def test_aggregate_user_errors():
    frame = tidy()
    with pytest.raises(UserError, match="lacks column.*acc"):
        aggregate(frame.drop(columns="acc"), "acc", chance=0.1, rng=a_rng())
    with pytest.raises(UserError, match="baseline.*'scratch'"):
        aggregate(frame, "acc", chance=0.1, rng=a_rng(), baseline="scratch")
    with pytest.raises(UserError, match="more than one row"):
        aggregate(pd.concat([frame, frame.iloc[:1]]), "acc", chance=0.1, rng=a_rng())


def test_cross_scenario_figure_is_written(tmp_path):
    res = aggregate(tidy(), "acc", chance=0.1, rng=a_rng(), reps=20)
    paths = cross_scenario(res.overall, res.profiles, tmp_path / "across", "tidy")
    assert [p.name for p in paths] == ["across.png"] and paths[0].stat().st_size > 10_000
