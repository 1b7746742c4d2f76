"""The analysis layer: exact values on hand-made folders, resumed studies, figures, bad input."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_RUN_ARGS

from analysis.load import load
from analysis.report import write_report
from analysis.stats import bootstrap_ci, paired_difference_ci
from analysis.synthetic import make_study
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
    assert (
        "**expanded** beats reset on 0 of 1 setting(s); the 95% CI of the difference "
        "excludes 0 on 1 of 1" in report
    )
    per = pd.read_csv(tmp_path / "out" / "per_restart.csv")
    row = per[(per.strategy == "reset") & (per.seed == 0) & (per.task == 1)].iloc[0]
    assert (row.auc_test_acc, row.final_test_acc) == (pytest.approx(0.7), pytest.approx(0.8))


def test_resumed_study_rows_once_and_orphans_left_out(tmp_path):
    root = make_study(tmp_path / "st", orphans=2, repeat=True)
    loaded = load([root])
    t = loaded.table
    # 2 strategies x (2 search + 2 eval) trials x 3 tasks x 3 epochs, each exactly once
    assert len(t) == 2 * 4 * 9
    assert not t.duplicated(["trial", "task", "epoch"]).any()
    assert not t.trial.str.contains("orphan").any()
    assert sum("orphan" in w for w in loaded.warnings) == 2  # one warning per search experiment
    assert "left out 2 orphan" in loaded.warnings[0]
    assert set(t.phase) == {"search", "eval"} and set(t[t.phase == "eval"].seed) == {1000, 1001}


def test_corrupt_result_file_is_skipped_and_named(tmp_path):
    root = make_study(tmp_path / "st", eval_seeds=0)
    result = next((root / "search-reset").glob("*/result.json"))
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
