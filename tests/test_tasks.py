"""Long task sequences (analysis.tasks): the per-task table, early against late, the moving
average and the per-task figure, on hand-made tables whose answers are worked out by hand;
then the report's section on synthetic studies, and a 1,000-task study end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis import figures, render, tasks
from analysis.load import load
from analysis.report import build_report
from analysis.stats import bootstrap_band
from analysis.synthetic import make_study

SETTING = {"dataset": "d", "model": "m", "objective": "permute_inputs", "phase": "eval"}


def _epochs(values: dict[tuple[str, int, int, int], tuple[float, float, float]]) -> pd.DataFrame:
    """Epoch rows from ``(strategy, seed, task, epoch) -> (train_acc, test_acc, dormant)``."""
    rows = [
        {
            **SETTING,
            "source": "/s",
            "strategy": s,
            "seed": seed,
            "trial": f"{s}-{seed}",
            "task": task,
            "epoch": epoch,
            "train_acc": tr,
            "test_acc": te,
            "diag_dormant": d,
        }
        for (s, seed, task, epoch), (tr, te, d) in values.items()
    ]
    return pd.DataFrame(rows)


def test_task_table_averages_train_acc_and_keeps_the_last_test_acc_and_dormant_share():
    # epochs listed out of order: "last" must mean the latest epoch, not the last row
    table = _epochs(
        {
            ("a", 0, 1, 1): (0.6, 0.7, np.nan),  # latest epoch recorded no dormant share
            ("a", 0, 1, 0): (0.2, 0.3, 0.25),
            ("a", 0, 0, 0): (0.5, 0.4, 0.1),
        }
    )
    out = tasks.task_table(table)
    assert list(out.task) == [0, 1]
    assert out.online_acc.tolist() == pytest.approx([0.5, 0.4])
    assert out.final_test_acc.tolist() == [0.4, 0.7]
    assert out.dormant.tolist() == [0.1, 0.25]
    assert out.epochs_seen.tolist() == [1, 2]


def test_task_table_sums_a_tasks_seconds_and_leaves_a_task_without_them_unknown():
    table = _epochs(
        {
            ("a", 0, 0, 0): (0.5, 0.4, 0.1),
            ("a", 0, 0, 1): (0.5, 0.4, 0.1),
            ("a", 0, 1, 0): (0, 0, 0),
        }
    )
    table["seconds"] = [1.5, 2.0, np.nan]
    out = tasks.task_table(table)
    assert out.seconds[0] == 3.5 and np.isnan(out.seconds[1])


def test_wall_time_per_task_and_against_reset_by_hand():
    # "a": seed 0 takes 2 s a task (task 0 unrecorded), seed 1 4 s: 3 s; reset 1.5 s: 2x
    a = _two_seeds()
    a["seconds"] = np.where(a.seed == 0, 2.0, 4.0)
    a.loc[(a.seed == 0) & (a.task == 0), "seconds"] = np.nan
    reset = _two_seeds().assign(strategy="reset", seconds=1.5)
    out = tasks.early_late(tasks.task_table(pd.concat([a, reset])), np.random.default_rng(0))
    got = out.set_index("strategy")
    assert got.seconds_per_task.to_dict() == {"a": 3.0, "reset": 1.5}
    assert got.time_vs_reset.to_dict() == {"a": 2.0, "reset": 1.0}
    alone = tasks.early_late(tasks.task_table(a), np.random.default_rng(0))
    assert np.isnan(alone.time_vs_reset[0])  # no reset to compare with


def test_time_against_reset_divides_only_within_a_study():
    """The protocol's strategies run as several studies (one idle, one beside other jobs): a
    strategy of a study without reset has no ratio, and one run in two studies gets the mean
    of its two within-study ratios, never a division across studies."""

    def run(strategy: str, source: str, seconds: float) -> pd.DataFrame:
        return _two_seeds().assign(strategy=strategy, source=source, seconds=seconds)

    table = pd.concat(
        [
            run("reset", "/busy", 4.0),
            run("a", "/busy", 8.0),  # 2x reset in its own study
            run("b", "/idle", 1.0),  # no reset in /idle: across studies it would read 0.25x
            run("reset", "/idle2", 1.0),
            run("a", "/idle2", 3.0),  # 3x in this one: the mean of 2x and 3x
        ]
    )
    got = tasks.early_late(tasks.task_table(table), np.random.default_rng(0)).set_index("strategy")
    assert got.time_vs_reset["reset"] == 1.0
    assert got.time_vs_reset["a"] == pytest.approx(2.5)
    assert np.isnan(got.time_vs_reset["b"])
    assert got.seconds_per_task["b"] == 1.0


def test_task_table_without_diagnostics_has_no_dormant_share():
    table = _epochs({("a", 0, 0, 0): (0.5, 0.4, 0.1)}).drop(columns="diag_dormant")
    assert tasks.task_table(table).dormant.isna().all()


@pytest.mark.parametrize(
    ("restarts", "k"), [(1, 1), (9, 1), (10, 1), (11, 2), (20, 2), (299, 30), (300, 30), (999, 100)]
)
def test_the_window_is_a_tenth_of_the_restarts_rounded_up_and_at_least_one(restarts, k):
    assert tasks.window(restarts) == k


def test_windows_are_the_first_and_last_k_restart_tasks():
    early, late = tasks.windows(299)
    assert (early[0], early[-1], late[0], late[-1]) == (1, 30, 270, 299)
    assert (tasks.span(early), tasks.span(range(7, 8))) == ("1–30", "7")


def _two_seeds() -> pd.DataFrame:
    """20 restarts (K = 2): early tasks 1-2, late 19-20; every other task (0 and 3-18) is 0,
    so a window that took one in would move the means."""
    values = {}
    for seed in (0, 1):
        for task in range(21):
            values[("a", seed, task, 0)] = (0.0, 0.0, 0.9)
    values |= {
        ("a", 0, 1, 0): (0.9, 0, 0.1),
        ("a", 0, 2, 0): (0.8, 0, 0.1),
        ("a", 0, 19, 0): (0.5, 0, 0.3),
        ("a", 0, 20, 0): (0.6, 0, 0.3),
        ("a", 1, 1, 0): (1.0, 0, np.nan),
        ("a", 1, 2, 0): (0.8, 0, np.nan),
        ("a", 1, 19, 0): (0.6, 0, np.nan),
        ("a", 1, 20, 0): (0.4, 0, np.nan),
    }
    return _epochs(values)


def test_early_late_by_hand():
    # seed 0: early (0.9 + 0.8) / 2 = 0.85, late (0.5 + 0.6) / 2 = 0.55, late - early = -0.3
    # seed 1: early 0.9, late 0.5, -0.4; over seeds: early 0.875, late 0.525, diff -0.35
    # dormant: seed 0 only (seed 1 recorded none): 0.1 early, 0.3 late
    out = tasks.early_late(tasks.task_table(_two_seeds()), np.random.default_rng(0), reps=200)
    row = out.iloc[0]
    assert (row.k, row.early_tasks, row.late_tasks, row.seeds, row.pairs) == (
        2,
        "1–2",
        "19–20",
        2,
        2,
    )
    assert (row.early, row.late, row["diff"]) == pytest.approx((0.875, 0.525, -0.35))
    assert -0.4 <= row.diff_lo <= row["diff"] <= row.diff_hi <= -0.3
    assert (row.dormant_early, row.dormant_late) == pytest.approx((0.1, 0.3))


def test_early_late_pairs_within_seeds():
    """Two seeds a constant apart on every task: late - early is the same for both, so the
    paired CI has no width, where an unpaired one would."""
    values = {}
    for seed, offset in ((0, 0.0), (1, 0.5)):
        for task in range(21):
            values[("a", seed, task, 0)] = (offset + 0.4 - 0.01 * task, 0.0, np.nan)
    row = tasks.early_late(tasks.task_table(_epochs(values)), np.random.default_rng(0)).iloc[0]
    assert (row["diff"], row.diff_lo, row.diff_hi) == pytest.approx((-0.18, -0.18, -0.18))
    assert row.early_hi - row.early_lo > 0.2  # the seeds' own levels differ by 0.5


def test_a_seed_without_late_tasks_has_no_pair():
    table = _two_seeds()
    table = table[~((table.seed == 1) & (table.task > 2))]  # seed 1 stopped at task 2
    row = tasks.early_late(tasks.task_table(table), np.random.default_rng(0)).iloc[0]
    assert (row.seeds, row.pairs, row["diff"]) == (2, 1, pytest.approx(-0.3))
    assert np.isnan(row.diff_lo)  # one pair: no interval


def test_moving_average_is_centred_and_shrinks_at_the_ends_and_around_gaps():
    out = tasks.moving_average(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]), 3)
    assert out.tolist() == [[1.5, 2.0, 3.0, 4.0, 4.5]]
    gap = tasks.moving_average(np.array([[1.0, np.nan, 3.0], [np.nan] * 3]), 3)
    assert gap[0].tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(gap[1]).all()
    assert tasks.moving_average(np.array([[1.0, 5.0]]), 1).tolist() == [[1.0, 5.0]]


@pytest.mark.parametrize(("restarts", "width"), [(20, 1), (59, 1), (60, 3), (300, 11), (999, 33)])
def test_the_smoothing_window_is_odd_and_about_a_thirtieth(restarts, width):
    assert tasks.smoothing(restarts) == width


def test_only_settings_with_twenty_restarts_are_long():
    short = _two_seeds()
    assert tasks.long_settings(short[short.task < 20]) == []
    assert tasks.long_settings(short) == [("d", "m", "permute_inputs")]
    assert tasks.long_sequences(short[short.task < 20], np.random.default_rng(0)) == ()


def test_bootstrap_band_without_nan_equals_the_nan_aware_computation():
    """The plain-numpy path taken when no curve has a NaN gives numpy's nan-functions' answer
    to the bit, from the same draws."""
    curves = np.random.default_rng(1).random((5, 40))
    mean, lo, hi = bootstrap_band(curves, np.random.default_rng(0), reps=300)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 5, size=(300, 5))
    means = np.nanmean(curves[idx], axis=1)
    want = np.nanpercentile(means, [100 * (1 - 0.95) / 2, 100 * (1 + 0.95) / 2], axis=0)
    assert np.array_equal(mean, np.nanmean(curves, axis=0))
    assert np.array_equal(lo, want[0]) and np.array_equal(hi, want[1])


def test_bootstrap_band_of_runs_ending_at_different_tasks_is_quiet_and_nan_where_no_run_is():
    """A running study's runs end at different tasks: where few runs reach, some resamples
    hold none of them. The band is NaN only where no run has a value, and computing it warns
    nothing (numpy's "Mean of empty slice" was printed once per figure line by analyze)."""
    curves = np.random.default_rng(2).random((5, 30))
    curves[1:, 20:] = np.nan  # one run reached task 29, four stopped at task 19
    curves[:, 28:] = np.nan  # no run reached 28
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, lo, hi = bootstrap_band(curves, np.random.default_rng(0), reps=300)
    assert np.all(np.isfinite(mean[:28])) and np.all(np.isnan(mean[28:]))
    assert np.array_equal(mean[20:28], curves[0, 20:28])
    assert np.all(np.isfinite(lo[:28])) and np.all(np.isnan(lo[28:]))
    assert np.all(lo[:20] <= mean[:20]) and np.all(mean[:20] <= hi[:20])


def _captured(monkeypatch) -> list:
    figs = []

    def keep(fig, stem, pdf):
        figs.append(fig)
        return [stem.with_suffix(".png")]

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def test_the_figure_draws_each_seeds_moving_average_and_the_dormant_panel(monkeypatch, tmp_path):
    figs = _captured(monkeypatch)
    table = tasks.task_table(_two_seeds())
    view = tasks.LongSequence("m/d/o", table, pd.DataFrame(), smoothing=3)
    figures.task_sequence(view, tmp_path / "f", np.random.default_rng(0))
    acc, dormant = figs[0].axes
    # seed 0 online accuracy, tasks 0-3: 0, 0.9, 0.8, 0; seed 1: 0, 1.0, 0.8, 0
    # moving averages over 3: seed 0 (0.45, 0.567, 0.567, 0.267), seed 1 (0.5, 0.6, 0.6, 0.267)
    assert acc.lines[0].get_ydata()[:4] == pytest.approx([0.475, 1.75 / 3, 1.75 / 3, 0.8 / 3])
    # dormant, tasks 0-2: seed 0 (0.9, 0.1, 0.1), seed 1 (0.9, none, none): 1.1 / 3 and 0.9
    assert dormant.lines[0].get_ydata()[1] == pytest.approx((1.1 / 3 + 0.9) / 2)


def test_the_figure_has_one_panel_without_diagnostics(monkeypatch, tmp_path):
    figs = _captured(monkeypatch)
    table = tasks.task_table(_two_seeds().drop(columns="diag_dormant"))
    view = tasks.LongSequence("m/d/o", table, pd.DataFrame(), smoothing=1)
    figures.task_sequence(view, tmp_path / "f", np.random.default_rng(0))
    assert len(figs[0].axes) == 1


def _declining(strategy: str, seed: int, task: int, epoch: int) -> float:
    return 0.9 if strategy == "reset" else round(0.9 - 0.01 * task, 6)


def _dormant(strategy: str, seed: int, task: int, epoch: int) -> dict[str, float]:
    return {"diag_dormant": 0.0 if strategy == "reset" else 0.01 * task}


def test_a_short_study_has_no_long_sequence_section(tmp_path):
    root = make_study(tmp_path / "st", strategies=("reset", "continuous"))
    report = build_report(load([root]), reps=50)
    assert report.sequences == ()
    md = render.write(report, tmp_path / "out").read_text()
    assert "Long task sequences" not in md
    assert not (tmp_path / "out" / "early_late.csv").exists()


def test_a_long_study_gets_the_table_the_figure_and_a_sentence_per_strategy(tmp_path):
    # continuous: 0.9 - 0.01 t; tasks 1-2 average 0.885, tasks 19-20 0.705: -0.18 on every
    # seed; dormant 0.01 t: 0.015 early, 0.195 late. reset: 0.9 throughout, dormant 0.
    root = make_study(
        tmp_path / "st",
        strategies=("reset", "continuous"),
        setting={"restarts": 20, "epochs": 1},
        acc=_declining,
        diag=_dormant,
    )
    report = build_report(load([root]), reps=50)
    (view,) = report.sequences
    assert view.title == "mlp/mnist-5k/class_shuffle"
    path = render.write(report, tmp_path / "out")
    md = path.read_text().splitlines()
    assert md[md.index("## Long task sequences") - 2] == "![advantage](advantage.png)"
    setting = "mlp/mnist-5k/class_shuffle"
    assert (
        f"- {setting}: continuous: online accuracy 0.885 on tasks 1–2, 0.705 on tasks 19–20, "
        "late − early -0.180 [-0.180, -0.180] over 2 paired seeds; dormant share 0.015 → 0.195."
    ) in md
    assert (
        f"- {setting}: reset: online accuracy 0.900 on tasks 1–2, 0.900 on tasks 19–20, "
        "late − early 0.000 [0.000, 0.000] over 2 paired seeds; dormant share 0.000 → 0.000."
    ) in md
    assert "![mlp_mnist-5k_class_shuffle_tasks](mlp_mnist-5k_class_shuffle_tasks.png)" in md
    table = pd.read_csv(tmp_path / "out" / "early_late.csv")
    assert set(table.strategy) == {"reset", "continuous"}
    assert (tmp_path / "out" / "mlp_mnist-5k_class_shuffle_tasks.png").is_file()


def test_a_strategy_behind_the_others_has_no_late_window_yet():
    table = _two_seeds()
    behind = table[table.task <= 10].assign(strategy="b")  # stopped at task 10 of 20
    out = tasks.early_late(tasks.task_table(pd.concat([table, behind])), np.random.default_rng(0))
    row = out[out.strategy == "b"].iloc[0]
    assert (row.pairs, row.late_tasks) == (0, "19–20") and np.isnan(row.late)
    assert render.sequence_sentence("m/d/o", row) == (
        "- m/d/o: b: online accuracy 0.875 on tasks 1–2; no seed has reached tasks 19–20 yet."
    )


def test_a_study_without_diagnostics_says_so(tmp_path):
    root = make_study(tmp_path / "st", strategies=("reset",), setting={"restarts": 20, "epochs": 1})
    md = render.write(build_report(load([root]), reps=50), tmp_path / "out").read_text()
    assert "dormant share not recorded (diagnostics off)." in md


def test_a_thousand_task_study_loads_and_gets_its_per_task_figure(tmp_path):
    """The issue's check, without a timed assert (benchmarks/analysis_speed.py --tasks times
    it): 2 strategies x 2 seeds x 1,000 one-epoch tasks with diagnostics."""
    root = make_study(
        tmp_path / "st",
        strategies=("reset", "continuous"),
        trials_per_strategy=1,
        setting={"restarts": 999, "epochs": 1, "batch_size": 16, "objective": "permute_inputs"},
        acc=_declining,
        diag=_dormant,
    )
    loaded = load([root])
    assert len(loaded.table) == 6 * 1000
    report = build_report(loaded, reps=50)
    (view,) = report.sequences
    row = view.early_late.set_index("strategy").loc["continuous"]
    assert (row.early_tasks, row.late_tasks, view.smoothing) == ("1–100", "900–999", 33)
    render.write(report, tmp_path / "out")
    assert (tmp_path / "out" / "mlp_mnist-5k_permute_inputs_tasks.png").stat().st_size > 0
