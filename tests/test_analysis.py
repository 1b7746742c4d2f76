"""The analysis layer: exact values on hand-made folders, resumed studies, figures, bad input."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_RUN_ARGS

from analysis import figures, render
from analysis.load import load
from analysis.render import write_report
from analysis.report import Report, SettingView, StudyView, build_report
from analysis.stats import METRICS, bootstrap_ci, paired_difference_ci
from analysis.synthetic import make_study
from analysis.verdicts import MIN_VERDICT_SEEDS, Tally, Verdict, tallies, verdict_kind
from plasticity.cli import main
from plasticity.errors import UserError
from plasticity.metrics import objectives


def test_bootstrap_ci_by_hand():
    rng = np.random.default_rng(0)
    assert bootstrap_ci(np.array([0.5, 0.5, 0.5]), rng) == (0.5, 0.5, 0.5)
    mean, lo, hi = bootstrap_ci(np.array([0.2, 0.6]), rng)
    # two seeds: resampled means are 0.2, 0.4 or 0.6; the 2.5/97.5 percentiles are the ends
    assert (mean, lo, hi) == pytest.approx((0.4, 0.2, 0.6))
    mean, lo, hi = bootstrap_ci(np.array([0.7]), rng)
    assert mean == 0.7 and np.isnan(lo) and np.isnan(hi)
    a = np.array([0.3, 0.5, 0.9])
    assert paired_difference_ci(a + 0.1, a, rng) == pytest.approx((0.1, 0.1, 0.1))


def test_same_bootstrap_seed_same_interval():
    x = np.array([0.1, 0.4, 0.35, 0.8, 0.5])
    assert bootstrap_ci(x, np.random.default_rng(3)) == bootstrap_ci(x, np.random.default_rng(3))


def test_objectives_by_hand():
    acc = {(0, 0): 0.5, (0, 1): 0.9, (1, 0): 0.2, (1, 1): 0.6, (2, 0): 0.4, (2, 1): 0.8}
    recs = [{"task": t, "epoch": e, "test_acc": a, "train_acc": a / 2} for (t, e), a in acc.items()]
    out = objectives(recs)
    # restarts 1 and 2 only: AUC = mean(mean(0.2, 0.6), mean(0.4, 0.8)) = 0.5
    assert out["auc_test_acc"] == pytest.approx(0.5)
    assert out["final_test_acc"] == pytest.approx((0.6 + 0.8) / 2)
    assert out["auc_train_acc"] == pytest.approx(0.25)
    # before the first restart: task 0 alone
    assert objectives(recs[:2])["auc_test_acc"] == pytest.approx(0.7)


def _run_folder(path, seed, acc):
    """A run folder with 2 strategies x 3 tasks x 2 epochs and accuracies acc(strategy, t, e)."""
    path.mkdir(parents=True)
    config = {
        "dataset": "mnist-5k",
        "model": "mlp",
        "objective": "class_shuffle",
        "strategies": ["reset", "expanded"],
        "restarts": 2,
        "epochs": 2,
        "lr": 1e-3,
        "seed": seed,
        "strategy_params": {"expanded": {"schedule": "paper"}},
    }
    (path / "config.json").write_text(json.dumps({"kind": "plasticity-run", "config": config}))
    rows = [
        {
            "strategy": s,
            "seed": seed,
            "task": t,
            "epoch": e,
            "step": 1,
            "train_loss": 1.0,
            "train_acc": acc(s, t, e),
            "test_loss": 1.0,
            "test_acc": acc(s, t, e),
            "alpha": 1.0 if s == "expanded" else np.nan,
            "params": 10,
            "trainable_params": 10,
            "majority_rate": 0.1,
            "test_meaningful": True,
            "seconds": 0.1,
        }
        for t in range(3)
        for s in ("reset", "expanded")
        for e in range(2)
    ]
    pd.DataFrame(rows).to_parquet(path / "records.parquet")


def test_tables_match_values_worked_out_by_hand(tmp_path):
    # seed 0: reset 0.6/0.8 per restart epoch, expanded 0.5/0.7; seed 1: +0.1 everywhere
    def acc(seed):
        return lambda s, t, e: (0.6 + 0.2 * e - (0.1 if s == "expanded" else 0)) + 0.1 * seed

    _run_folder(tmp_path / "s0", 0, acc(0))
    _run_folder(tmp_path / "s1", 1, acc(1))
    write_report(load([tmp_path / "s0", tmp_path / "s1"]), tmp_path / "out", seed=0, reps=500)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("strategy")
    # reset AUC per seed: 0.7 and 0.8 -> mean 0.75, two-seed CI = [0.7, 0.8]
    assert summary.loc["reset", "auc_test_acc"] == pytest.approx(0.75)
    assert (summary.loc["reset", "auc_test_acc_lo"], summary.loc["reset", "auc_test_acc_hi"]) == (
        pytest.approx(0.7),
        pytest.approx(0.8),
    )
    assert summary.loc["expanded", "final_test_acc"] == pytest.approx((0.7 + 0.8) / 2)
    assert summary.loc["reset", "seeds"] == 2
    adv = pd.read_csv(tmp_path / "out" / "advantage.csv")
    assert len(adv) == 1 and adv.loc[0, "strategy"] == "expanded"
    assert (adv.loc[0, "diff"], adv.loc[0, "lo"], adv.loc[0, "hi"]) == (
        pytest.approx(-0.1),
        pytest.approx(-0.1),
        pytest.approx(-0.1),
    )
    report = (tmp_path / "out" / "report.md").read_text()
    # two seeds: the numbers, no verdict, and the CI tally counts no setting
    assert (
        "**expanded** beats reset on 0 of 1 setting(s); the 95% CI of the difference "
        "excludes 0 on 0 of 0 with at least 5 paired seeds" in report
    )
    assert (
        "expanded − reset = -0.100 [-0.100, -0.100] on auc_test_acc; n = 2 paired seeds: "
        "below the 5 needed for a verdict; numbers only." in report
    )
    per = pd.read_csv(tmp_path / "out" / "per_restart.csv")
    row = per[(per.strategy == "reset") & (per.seed == 0) & (per.task == 1)].iloc[0]
    assert (row.auc_test_acc, row.final_test_acc) == (pytest.approx(0.7), pytest.approx(0.8))


@pytest.mark.parametrize("layout,experiments", [(2, 1), (1, 2)])
def test_resumed_study_rows_once_and_orphans_left_out(tmp_path, layout, experiments):
    """Both layouts: the study's one experiment (2), an experiment per phase (1, before)."""
    root = make_study(tmp_path / "st", orphans=2, repeat=True, layout=layout)
    loaded = load([root])
    t = loaded.table
    # 2 strategies x (2 search + 2 eval) trials x 3 tasks x 3 epochs, each exactly once
    assert len(t) == 2 * 4 * 9
    assert not t.duplicated(["trial", "task", "epoch"]).any()
    assert not t.trial.str.contains("orphan").any()
    # one warning per experiment with orphans (layout 1: each search experiment)
    assert sum("orphan" in w for w in loaded.warnings) == experiments
    assert "left out 2 orphan" in loaded.warnings[0]
    assert set(t.phase) == {"search", "eval"} and set(t[t.phase == "eval"].seed) == {1000, 1001}


def test_corrupt_result_file_is_skipped_and_named(tmp_path):
    root = make_study(tmp_path / "st", eval_seeds=0)
    result = next((root / "trials").glob("search-reset_*/result.json"))
    text = result.read_text()
    result.write_text(text[: len(text) - 40])  # truncated mid-line, as after a crash
    loaded = load([root])
    assert any(str(result) in w and "1 corrupt or truncated line" in w for w in loaded.warnings)
    trial = loaded.table[loaded.table.trial.str.endswith(result.parent.name.split("_")[1])]
    assert len(trial) == 8  # the 9th report was cut


def test_figures_written_for_a_small_real_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", *TINY_RUN_ARGS, "--restarts", "2", "--out", str(run)]) == 0
    assert main(["analyze", str(run), "--pdf", "--bootstrap", "200"]) == 0
    out = run / "analysis"
    pngs = sorted(p.name for p in out.glob("*.png"))
    slug = "mlp-small_mnist-5k_class_shuffle"
    assert pngs == sorted(
        [
            "advantage.png",
            f"{slug}_alpha.png",
            f"{slug}_curves_all.png",
            f"{slug}_curves_last.png",
            f"{slug}_per_restart.png",
        ]
    )
    for p in list(out.glob("*.png")) + list(out.glob("*.pdf")):
        assert p.stat().st_size > 1000, p
    assert len(list(out.glob("*.pdf"))) == len(pngs)
    report = (out / "report.md").read_text()
    assert all(f"({p})" in report for p in pngs)
    table = pd.read_parquet(out / "records.parquet")
    assert len(table) == 3 * 3 * 2 and {"lr", "schedule", "global_epoch"} <= set(table.columns)


def test_random_labels_report_says_test_accuracy_means_nothing(tmp_path):
    root = make_study(tmp_path / "st", setting={"objective": "random_labels"})
    report = write_report(load([root]), tmp_path / "out", reps=100).read_text()
    assert "Test loss and accuracy mean nothing here" in report
    adv = pd.read_csv(tmp_path / "out" / "advantage.csv")
    assert set(adv.metric) == {"auc_train_acc"}


def test_running_study_is_analysed_and_said_so(tmp_path, capsys):
    root = make_study(tmp_path / "st", eval_seeds=0)
    state = json.loads((root / "study.json").read_text())
    state["phases"]["search-expanded"] = "running"
    (root / "study.json").write_text(json.dumps(state))
    assert main(["analyze", str(root), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "not finished" in out and "search-expanded" in out
    report = (root / "analysis" / "report.md").read_text()
    assert "Still running or interrupted" in report
    assert "No evaluation phase has finished" in report


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.mkdir(), "is not a run or a study"),
        (lambda p: None, "is not a folder"),
        (lambda p: (p.mkdir(), (p / "study.json").write_text("{oops")), "is corrupt"),
        (
            lambda p: (
                p.mkdir(),
                (p / "config.json").write_text(
                    json.dumps({"kind": "plasticity-run", "config": {"model": "mlp"}})
                ),
            ),
            "is corrupt",
        ),
        (
            lambda p: (
                p.mkdir(),
                (p / "study.json").write_text(
                    json.dumps({"kind": "plasticity-study", "phases": {}})
                ),
            ),
            "no finished epochs",
        ),
    ],
)
def test_bad_paths_are_one_line_errors(tmp_path, capsys, make, message):
    path = tmp_path / "thing"
    make(path)
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_existing_outputs_outside_out_are_untouched(tmp_path):
    root = make_study(tmp_path / "st", eval_seeds=0)
    keep = root / "summary.csv"
    keep.write_text("the study's own summary")
    write_report(load([root]), tmp_path / "elsewhere", reps=50)
    assert keep.read_text() == "the study's own summary"


def test_analysis_imports_neither_torch_nor_ray():
    code = (
        "import sys, analysis.cli, analysis.load, analysis.report, analysis.figures; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_load_rejects_empty_list_of_epochs(tmp_path):
    with pytest.raises(UserError):
        load([tmp_path / "missing"])


# Verdicts need seeds: below MIN_VERDICT_SEEDS paired seeds, numbers only.


@pytest.mark.parametrize(
    "pairs,lo,hi,kind",
    [
        (5, 0.01, 0.2, "better"),
        (5, -0.2, -0.01, "worse"),
        (5, -0.1, 0.1, "indistinguishable"),
        (4, 0.01, 0.2, "too_few_seeds"),  # one seed short: the CI above 0 is not a verdict
        (4, -0.2, -0.01, "too_few_seeds"),
        (2, 0.01, 0.2, "too_few_seeds"),
        (1, np.nan, np.nan, "too_few_seeds"),
    ],
)
def test_verdict_kind_needs_five_paired_seeds(pairs, lo, hi, kind):
    assert MIN_VERDICT_SEEDS == 5
    assert verdict_kind(pairs, lo, hi) == kind


def _seeds_worse_by_a_tenth(tmp_path, seeds):
    """``seeds`` run folders in which expanded is 0.1 below reset on every epoch of every seed:
    the paired difference is -0.1 on every seed, so its mean and CI bounds are all -0.1."""

    def acc(seed):
        return lambda s, t, e: 0.6 + 0.2 * e - (0.1 if s == "expanded" else 0) + 0.01 * seed

    for seed in range(seeds):
        _run_folder(tmp_path / f"s{seed}", seed, acc(seed))
    return load([tmp_path / f"s{seed}" for seed in range(seeds)])


@pytest.mark.parametrize("seeds", [2, 4, 5])
def test_no_verdict_below_five_seeds_a_verdict_at_five(tmp_path, seeds):
    report = build_report(_seeds_worse_by_a_tenth(tmp_path, seeds), reps=200)
    (v,) = report.verdicts
    assert (v.pairs, v.diff, v.lo, v.hi) == (seeds, *[pytest.approx(-0.1)] * 3)
    assert v.kind == ("worse" if seeds >= 5 else "too_few_seeds")
    lines = render.findings(report)
    if seeds >= 5:
        assert lines[1] == (
            "- mlp/mnist-5k/class_shuffle: expanded − reset = -0.100 [-0.100, -0.100] on "
            "auc_test_acc over 5 paired seed(s): worse than reset (CI below 0)."
        )
    else:
        assert lines[1] == (
            "- mlp/mnist-5k/class_shuffle: expanded − reset = -0.100 [-0.100, -0.100] on "
            f"auc_test_acc; n = {seeds} paired seeds: below the 5 needed for a verdict; "
            "numbers only."
        )
        assert not any("than reset (CI" in line for line in lines)
    judged = int(seeds >= 5)
    assert lines[0] == (
        "- **expanded** beats reset on 0 of 1 setting(s); the 95% CI of the difference "
        f"excludes 0 on {judged} of {judged} with at least 5 paired seeds."
    )


def _verdict(setting, pairs, diff, lo, hi, strategy="expanded"):
    kind = verdict_kind(pairs, lo, hi)
    return Verdict(setting, strategy, "auc_test_acc", pairs, diff, lo, hi, kind)


def test_tally_counts_only_settings_with_enough_seeds_for_the_ci_part():
    verdicts = (
        _verdict("a", 5, 0.2, 0.1, 0.3),  # better, judged
        _verdict("b", 2, 0.2, 0.1, 0.3),  # CI above 0 too, but 2 seeds: not judged
        _verdict("c", 6, -0.1, -0.2, 0.05),  # contains 0, judged
        _verdict("d", 3, -0.2, -0.3, -0.1),  # CI below 0, 3 seeds: not judged
        _verdict("a", 5, -0.3, -0.4, -0.2, strategy="continuous"),  # worse, judged
    )
    assert tallies(verdicts) == (
        Tally("expanded", settings=4, wins=2, with_verdict=2, excluding_zero=1),
        Tally("continuous", settings=1, wins=0, with_verdict=1, excluding_zero=1),
    )


def test_report_object_holds_tables_verdicts_and_figure_data(tmp_path):
    loaded = _seeds_worse_by_a_tenth(tmp_path, 5)
    # one diagnostic, recorded by seed 0 only: task + epoch, so its mean over a task's two
    # epochs is task + 0.5
    loaded.table["diag_rank"] = np.where(
        loaded.table.seed == 0, loaded.table.task + loaded.table.epoch, np.nan
    )
    report = build_report(loaded, seed=3, reps=200)
    assert (report.seed, report.reps, report.min_verdict_seeds) == (3, 200, 5)
    assert len(report.records) == 5 * 2 * 3 * 2 and report.compared_trials == 10
    assert report.notes == () and report.running == () and report.warnings == ()
    summary = report.summary.set_index("strategy")
    assert list(summary.seeds) == [5, 5]
    # reset AUC of seed k: mean over restarts 1, 2 of mean(0.6, 0.8) + 0.01 k = 0.7 + 0.01 k
    assert summary.loc["reset", "auc_test_acc"] == pytest.approx(0.72)
    assert summary.loc["expanded", "final_test_acc"] == pytest.approx(0.72)
    assert list(report.advantage.pairs) == [5]
    assert report.verdicts == (
        Verdict(
            "mlp/mnist-5k/class_shuffle",
            "expanded",
            "auc_test_acc",
            5,
            *[pytest.approx(-0.1)] * 3,
            "worse",
        ),
    )
    assert report.tallies == (Tally("expanded", 1, 0, 1, 1),)
    (view,) = report.settings
    assert view.title == "mlp/mnist-5k/class_shuffle" and view.test_meaningful and view.alpha
    assert len(view.epochs) == 60 and len(view.restarts) == 5 * 2 * 3
    diag = view.diagnostics.set_index(["strategy", "trial", "task"]).diag_rank.sort_index()
    assert len(diag) == 10 * 3 and diag.notna().sum() == 2 * 3
    assert diag["expanded", "expanded-s0"].tolist() == [0.5, 1.5, 2.5]
    assert report.study_roots == () and report.studies == () and report.best_configs.empty


def _hand_made_report():
    """Two settings' verdicts (one judged, one numbers only), a random-labels setting with α and
    a diagnostic, and one study without importances."""
    records = pd.DataFrame({"source": ["/b", "/a", "/a"], "trial": ["t1", "t2", "t2"]})
    summary = pd.DataFrame(
        {
            "dataset": ["d"],
            "model": ["m"],
            "objective": ["random_labels"],
            "strategy": ["reset"],
            "seeds": [1],
            **{
                f"{m}{e}": [v]
                for m, vs in zip(METRICS, [(0.5, 0.4, 0.6), (0.25, np.nan, np.nan)] * 2)
                for e, v in zip(("", "_lo", "_hi"), vs)
            },
        }
    )
    verdicts = (
        _verdict("m/d/class_shuffle", 6, 0.125, 0.0625, 0.25),
        _verdict("m/d/random_labels", 1, -0.5, np.nan, np.nan),
    )
    diag = pd.DataFrame({"strategy": ["reset"], "trial": ["t"], "task": [0], "diag_rank": [3.0]})
    return Report(
        records=records,
        compared_trials=1,
        running=("/a (eval not finished)",),
        warnings=("left out 1 orphan",),
        notes=("No evaluation phase has finished.",),
        summary=summary,
        per_restart=pd.DataFrame({"task": [1]}),
        advantage=pd.DataFrame({"setting": ["x"], "pairs": [6]}),
        tallies=tallies(verdicts),
        verdicts=verdicts,
        settings=(
            SettingView("m/d/random_labels", pd.DataFrame(), pd.DataFrame(), False, True, diag),
        ),
        study_roots=("/a",),
        best_configs=pd.DataFrame({"study": ["st"], "best": [0.5]}),
        studies=(StudyView("st", "auc_test_acc", pd.DataFrame(), ("lr",), pd.DataFrame()),),
        seed=7,
        reps=99,
        min_verdict_seeds=5,
        band_rng_state=np.random.default_rng(7).bit_generator.state,
    )


def test_renderer_writes_what_a_hand_made_report_holds(tmp_path, monkeypatch):
    calls = []

    def fake(name):
        def draw(*args, **kwargs):
            stem = next(a for a in args if isinstance(a, type(tmp_path)))
            calls.append((name, stem.name))
            return [stem.with_suffix(".png")]

        return draw

    for name in ("learning_curves", "restart_summary", "alpha_curve", "diagnostics"):
        monkeypatch.setattr(figures, name, fake(name))
    for name in ("advantage", "search_scatter", "importances"):
        monkeypatch.setattr(figures, name, fake(name))
    path = render.write(_hand_made_report(), tmp_path / "out")
    md = path.read_text().splitlines()
    slug = "m_d_random_labels"
    assert calls == [
        ("advantage", "advantage"),
        ("learning_curves", f"{slug}_curves_all"),
        ("learning_curves", f"{slug}_curves_last"),
        ("restart_summary", f"{slug}_per_restart"),
        ("alpha_curve", f"{slug}_alpha"),
        ("diagnostics", f"{slug}_diagnostics"),
        ("search_scatter", "st_search"),
    ]
    assert md[:9] == [
        "# plasticity report",
        "",
        "Sources: /a, /b.",
        "3 epoch records from 2 trial(s); comparisons use 1 of them.",
        "",
        "> Still running or interrupted: /a (eval not finished). This report covers what has "
        "finished.",
        "> No evaluation phase has finished.",
        "> Warning: left out 1 orphan",
        "",
    ]
    findings = md[md.index("## What the numbers show") + 2 :][:3]
    assert findings == [
        "- **expanded** beats reset on 1 of 2 setting(s); the 95% CI of the difference "
        "excludes 0 on 1 of 1 with at least 5 paired seeds.",
        "- m/d/class_shuffle: expanded − reset = 0.125 [0.062, 0.250] on auc_test_acc over 6 "
        "paired seed(s): better than reset (CI above 0).",
        "- m/d/random_labels: expanded − reset = -0.500 on auc_test_acc; n = 1 paired seed: "
        "below the 5 needed for a verdict; numbers only.",
    ]
    method = md[md.index("## Summary") - 2]
    assert method.endswith(
        "(99 resamples, seed 7). A strategy is called better or worse than reset only "
        "with at least 5 paired seeds; below that the report gives the numbers only."
    )
    assert (
        "| d | m | random_labels | reset | 1 | 0.500 [0.400, 0.600] | 0.250 | "
        "0.500 [0.400, 0.600] | 0.250 |" in md
    )
    sections = [line for line in md if line.startswith("## ")]
    assert sections == [
        "## What the numbers show",
        "## Summary",
        "## Advantage over reset",
        "## m/d/random_labels",
        "## Studies",
    ]
    images = [line for line in md if line.startswith("![")]
    assert images == ["![advantage](advantage.png)"] + [
        f"![{stem}]({stem}.png)" for _, stem in calls[1:]
    ]
    assert any(line.startswith("Test loss and accuracy mean nothing here") for line in md)
    assert md[-1] == (
        "- st: parameter importances need at least two finished search trials with different "
        "parameters per strategy."
    )
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(
        ["records.parquet", "report.md"]
        + [
            f"{t}.{x}"
            for t in ("summary", "per_restart", "advantage", "best_configs")
            for x in ("csv", "md")
        ]
    )
    assert pd.read_csv(tmp_path / "out" / "advantage.csv").pairs.tolist() == [6]


def _captured(monkeypatch):
    """Replace figures._save with one that keeps the figure open and hands it back."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, stem, pdf: kept.append(fig) or [])
    return kept


def test_advantage_figure_labels_give_the_paired_seeds(tmp_path, monkeypatch):
    kept = _captured(monkeypatch)
    adv = pd.DataFrame(
        {
            "setting": ["m/d/o", "m/d/o"],
            "strategy": ["expanded", "continuous"],
            "pairs": [5, 2],
            "diff": [0.1, -0.1],
            "lo": [0.05, -0.2],
            "hi": [0.2, 0.0],
        }
    )
    figures.advantage(adv, tmp_path / "adv", "primary metric")
    labels = [t.get_text() for t in kept[0].axes[0].get_yticklabels()]
    assert labels == ["m/d/o: expanded (n=5)", "m/d/o: continuous (n=2)"]


def test_per_restart_legend_gives_each_strategy_its_seeds(tmp_path, monkeypatch):
    kept = _captured(monkeypatch)
    rows = [
        {"strategy": s, "trial": f"{s}{k}", "task": t, **{m: 0.5 for m in METRICS}}
        for s, n in (("reset", 3), ("expanded", 2))
        for k in range(n)
        for t in range(2)
    ]
    figures.restart_summary(pd.DataFrame(rows), tmp_path / "r", "t", np.random.default_rng(0))
    assert [t.get_text() for t in kept[0].legends[0].texts] == ["reset (n=3)", "expanded (n=2)"]


def test_width_and_norm_are_a_setting_axis(tmp_path):
    """Runs that differ only in their model factors are compared within their own setting."""
    from analysis.columns import model_label

    assert model_label({"model": "mlp"}) == "mlp"
    assert model_label({"model": "mlp", "hidden": None, "norm": "none"}) == "mlp"
    assert model_label({"model": "mlp", "hidden": [100, 100]}) == "mlp[100-100]"
    assert model_label({"model": "cnn", "norm": "layer"}) == "cnn[ln]"
    assert model_label({"model": "mlp", "hidden": [100, 100], "norm": "layer"}) == (
        "mlp[100-100,ln]"
    )

    def acc(s, t, e):
        return 0.5

    _run_folder(tmp_path / "plain", 0, acc)
    _run_folder(tmp_path / "narrow", 0, acc)
    meta = json.loads((tmp_path / "narrow" / "config.json").read_text())
    meta["config"].update(hidden=[100, 100], norm="layer")
    (tmp_path / "narrow" / "config.json").write_text(json.dumps(meta))
    loaded = load([tmp_path / "plain", tmp_path / "narrow"])
    assert set(loaded.table.model) == {"mlp", "mlp[100-100,ln]"}
    assert set(loaded.table.hidden.dropna()) == {"100,100"}
    write_report(loaded, tmp_path / "out", seed=0, reps=50)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert sorted(summary.model.unique()) == ["mlp", "mlp[100-100,ln]"]
    assert (summary.groupby("model").seeds.max() == 1).all()  # not pooled as two seeds


def test_trials_frame_equals_one_frame_per_trial_concatenated():
    """The study reader builds every trial's rows into one frame at once: the same frame,
    columns and dtypes, as one frame per trial with its constants set, concatenated (a
    constant replaces a reported column of its name; whole numbers and None make object;
    a metric or a constant that one trial lacks is NaN)."""
    from analysis.load import _trials_frame

    reports = [
        [{"task": 0, "acc": 0.5, "seed": 9, "config": {}}, {"task": 1, "acc": 0.6, "seed": 9}],
        [{"task": 0, "acc": 0.7, "seed": 9, "extra": 1.5}],
        [{"task": 0, "acc": 0.1, "seed": 9}],
    ]
    constants = [
        {"seed": 0, "phase": "search", "rung": None, "lr": 0.1, "trial": "t/a"},
        {"seed": 1, "phase": "eval", "rung": 4, "lr": 0.2, "ramp": 3, "trial": "t/b"},
        {"seed": 2, "phase": "eval", "rung": 8, "lr": 0.3, "ramp": 2, "trial": "t/c"},
    ]
    per_trial = []
    for rows, const in zip(reports, constants):
        frame = pd.DataFrame(rows).drop(columns=["config"], errors="ignore")
        for key, value in const.items():
            frame[key] = value
        per_trial.append(frame)
    expected = pd.concat(per_trial, ignore_index=True)
    got = _trials_frame(reports, constants)
    pd.testing.assert_frame_equal(got, expected)
    assert got.rung.dtype == object and got.seed.tolist() == [0, 0, 1, 2]
    assert got.ramp.isna().tolist() == [True, True, False, False]
