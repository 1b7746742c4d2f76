"""Writing a :class:`analysis.report.Report` out: CSV and Markdown tables, the figures, and
``report.md`` with one sentence per comparison. Decides nothing about the numbers; it says what
the report object holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis import figures
from analysis.report import Report, build_report
from analysis.stats import METRICS
from analysis.tasks import LONG_SEQUENCE, LongSequence

if TYPE_CHECKING:
    from analysis.load import Loaded
    from analysis.report import SettingView, StudyView
    from analysis.verdicts import Tally, Verdict

log = logging.getLogger(__name__)

VERDICT_WORDS = {
    "better": "better than reset (CI above 0)",
    "worse": "worse than reset (CI below 0)",
    "indistinguishable": "not distinguishable from reset (CI contains 0)",
}
NOTHING_TO_COMPARE = "- No setting has both reset and another strategy: nothing to compare."


def _fmt(mean: float, lo: float, hi: float) -> str:
    if np.isnan(lo):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (floats to 4 significant digits)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """``name.csv`` and ``name.md`` in ``out``."""
    frame.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(markdown_table(frame))
    return [out / f"{name}.csv", out / f"{name}.md"]


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary table with every metric as one ``mean [lo, hi]`` cell."""
    view = summary.drop(columns=[f"{m}_{e}" for m in METRICS for e in ("lo", "hi")])
    for m in METRICS:
        view[m] = [
            _fmt(a, b, c) for a, b, c in zip(summary[m], summary[f"{m}_lo"], summary[f"{m}_hi"])
        ]
    return view


def tally_sentence(t: Tally, min_seeds: int) -> str:
    return (
        f"- **{t.strategy}** beats reset on {t.wins} of {t.settings} setting(s); the 95% CI of "
        f"the difference excludes 0 on {t.excluding_zero} of {t.with_verdict} with at least "
        f"{min_seeds} paired seeds."
    )


def budget_words(v: Verdict) -> tuple[str, str]:
    """The search budget a verdict was made at (", at 16 search trials per strategy", or ", at
    20 search trials (reset 4)") and, where the study has a ladder, how the difference moves
    along it ("; along the ladder, stable: ..."); both empty for runs (no search)."""
    if v.trials is None:
        return "", ""
    if v.reset_trials is not None and v.reset_trials != v.trials:
        at = f", at {v.trials} search trials (reset {v.reset_trials})"
    else:
        at = f", at {v.trials} search trials per strategy"
    if v.along.startswith("at "):  # a single budget: the sentence only repeats it
        return at + " (a single budget)", ""
    return at, (f"; along the ladder, {v.along}" if v.along else "")


def verdict_sentence(v: Verdict, min_seeds: int) -> str:
    """The numbers and the budget they were made at, and a verdict only where there are enough
    seeds for one."""
    numbers = f"- {v.setting}: {v.strategy} − reset = {_fmt(v.diff, v.lo, v.hi)} on {v.metric}"
    at, along = budget_words(v)
    if v.kind == "too_few_seeds":
        seeds = "seed" if v.pairs == 1 else "seeds"
        return (
            f"{numbers}{at}; n = {v.pairs} paired {seeds}: below the {min_seeds} "
            f"needed for a verdict; numbers only{along}."
        )
    return f"{numbers} over {v.pairs} paired seed(s){at}: {VERDICT_WORDS[v.kind]}{along}."


def findings(report: Report) -> list[str]:
    """The "What the numbers show" lines: one per strategy over settings, then one per
    setting."""
    if not report.verdicts:
        return [NOTHING_TO_COMPARE]
    n = report.min_verdict_seeds
    return [tally_sentence(t, n) for t in report.tallies] + [
        verdict_sentence(v, n) for v in report.verdicts
    ]


def header(report: Report) -> list[str]:
    """Title, sources, counts, and the notes and warnings as quotes."""
    records = report.records
    md = [
        "# plasticity report",
        "",
        f"Sources: {', '.join(sorted(set(records.source)))}.",
        f"{len(records)} epoch records from {records.trial.nunique()} trial(s); "
        f"comparisons use {report.compared_trials} of them.",
        "",
    ]
    md += [
        f"> Still running or interrupted: {r}. This report covers what has finished."
        for r in report.running
    ]
    md += [f"> {n}" for n in report.notes]
    md += [f"> Warning: {w}" for w in report.warnings]
    return md


def method_note(report: Report) -> str:
    return (
        "The objective is the area under each restart's learning curve (mean accuracy "
        "over its epochs), averaged over restarts 1..R; `final_*` is the accuracy at the end "
        "of each restart. Intervals are 95% percentile bootstrap CIs over seeds "
        f"({report.reps} resamples, seed {report.seed}). A strategy is called better or worse "
        f"than reset only with at least {report.min_verdict_seeds} paired seeds; below that "
        "the report gives the numbers only."
    )


def setting_section(
    view: SettingView, out: Path, rng: np.random.Generator, pdf: bool
) -> tuple[list[Path], list[str]]:
    """One setting's figures and its Markdown section."""
    slug = view.title.replace("/", "_")
    md = [f"## {view.title}", ""]
    if not view.test_meaningful:
        md += [
            "Test loss and accuracy mean nothing here: the labels are random, so the "
            "test labels carry no signal. Compare train accuracy (memorisation).",
            "",
        ]
    written = []
    for last in (False, True):
        stem = out / f"{slug}_curves_{'last' if last else 'all'}"
        written += figures.learning_curves(
            view.epochs, stem, view.title, rng, last, pdf, view.test_meaningful
        )
    written += figures.restart_summary(
        view.restarts, out / f"{slug}_per_restart", view.title, rng, pdf
    )
    if view.alpha:
        written += figures.alpha_curve(view.epochs, out / f"{slug}_alpha", view.title, pdf)
    if not view.diagnostics.empty:
        diag = [c for c in view.diagnostics.columns if c.startswith("diag_")]
        stem = out / f"{slug}_diagnostics"
        written += figures.diagnostics(view.diagnostics, diag, stem, view.title, rng, pdf)
    md += [f"![{p.stem}]({p.name})" for p in written if p.suffix == ".png"]
    return written, md + [""]


def sequence_sentence(setting: str, row: pd.Series) -> str:
    """One strategy's early and late online accuracy, the paired change and the dormant share,
    e.g. ``- m/d/o: continuous: online accuracy 0.910 on tasks 1–30, 0.840 on tasks 270–299,
    late − early -0.070 [-0.090, -0.050] over 5 paired seeds; dormant share 0.020 → 0.300.``"""
    seeds = "seed" if row.pairs == 1 else "seeds"
    if row.pairs == 0:  # a running study: another strategy is further on
        return (
            f"- {setting}: {row.strategy}: online accuracy {row.early:.3f} on tasks "
            f"{row.early_tasks}; no seed has reached tasks {row.late_tasks} yet."
        )
    line = (
        f"- {setting}: {row.strategy}: online accuracy {row.early:.3f} on tasks "
        f"{row.early_tasks}, {row.late:.3f} on tasks {row.late_tasks}, late − early "
        f"{_fmt(row['diff'], row.diff_lo, row.diff_hi)} over {row.pairs} paired {seeds}"
    )
    if np.isnan(row.dormant_early) and np.isnan(row.dormant_late):
        return line + "; dormant share not recorded (diagnostics off)."
    return line + f"; dormant share {row.dormant_early:.3f} → {row.dormant_late:.3f}."


def early_late_view(table: pd.DataFrame) -> pd.DataFrame:
    """The early/late table for reading: each mean with its CI in one cell."""
    view = table[["model", "dataset", "objective", "strategy", "seeds", "early_tasks"]].copy()
    view["early"] = [_fmt(*r) for r in zip(table.early, table.early_lo, table.early_hi)]
    view["late_tasks"] = table.late_tasks
    view["late"] = [_fmt(*r) for r in zip(table.late, table.late_lo, table.late_hi)]
    view["late − early"] = [_fmt(*r) for r in zip(table["diff"], table.diff_lo, table.diff_hi)]
    view["dormant early"] = table.dormant_early
    view["dormant late"] = table.dormant_late
    view["s/task"] = table.seconds_per_task
    view["× reset"] = table.time_vs_reset
    return view


def sequences_section(report: Report, out: Path, pdf: bool) -> tuple[list[Path], list[str]]:
    """Settings with long task sequences: the early/late table, one sentence per strategy, and
    the per-task figure of each; nothing for shorter studies."""
    if not report.sequences:
        return [], []
    views: list[LongSequence] = list(report.sequences)
    table = pd.concat([v.early_late for v in views], ignore_index=True)
    written = write_table(table, out, "early_late")
    md = [
        "## Long task sequences",
        "",
        f"Settings with at least {LONG_SEQUENCE} restart tasks. Online accuracy: a task's "
        "training accuracy, each minibatch scored just before its update, averaged over the "
        "task (with one epoch "
        "per task, Kumar et al.'s average online task accuracy). Early and late: the first "
        "and the last 10% of the restart tasks (at least one); late − early is paired within "
        "each seed, with its 95% bootstrap CI over seeds. Dormant share: the dormant-unit "
        "ratio (τ = 0.025) at the task's end, averaged over the window. s/task: wall time "
        "per task (train + evaluation), and × reset its ratio to reset's: trials sharing a "
        "machine slow each other, so it divides only by reset in the same study "
        "(`early_late.csv` has every column).",
        "",
        markdown_table(early_late_view(table)),
    ]
    rng = np.random.default_rng([report.seed, 4])  # the figures' own stream
    for view in views:
        md += [sequence_sentence(view.title, r) for _, r in view.early_late.iterrows()]
        stem = out / f"{view.title.replace('/', '_')}_tasks"
        files = figures.task_sequence(view, stem, rng, pdf)
        written += files
        md += ["", *[f"![{p.stem}]({p.name})" for p in files if p.suffix == ".png"], ""]
    return written, md


def study_section(view: StudyView, out: Path, pdf: bool) -> tuple[list[Path], list[str]]:
    """One study's search scatter and importances, and a line where importances are missing."""
    written, lines = [], []
    if view.params:
        written += figures.search_scatter(
            view.trials, list(view.params), view.metric, out / f"{view.name}_search", view.name, pdf
        )
    if not view.importances.empty:
        stem = out / f"{view.name}_importance"
        written += figures.importances(view.importances, stem, view.name, pdf)
        written += write_table(view.importances, out, f"{view.name}_importance")
    else:
        lines.append(
            f"- {view.name}: parameter importances need at least two finished search "
            "trials with different parameters per strategy."
        )
    return written, lines


def studies_section(report: Report, out: Path, pdf: bool) -> tuple[list[Path], list[str]]:
    """The "Studies" section: best configurations, then each study's search figures."""
    written, lines = [], []
    for view in report.studies:
        files, notes = study_section(view, out, pdf)
        written += files
        lines += notes
    md = ["## Studies", ""]
    if not report.best_configs.empty:
        written += write_table(report.best_configs, out, "best_configs")
        md += [
            "Best configuration of each strategy's search:",
            "",
            markdown_table(report.best_configs),
        ]
    md += [f"![{p.stem}]({p.name})" for p in written if p.suffix == ".png"]
    return written, md + lines


def scenarios_section(report: Report, out: Path, pdf: bool) -> tuple[list[Path], list[str]]:
    """Expected directions per scenario, then the aggregate across scenarios."""
    res = report.scenarios
    if res is None:
        return [], []
    written: list[Path] = []
    md = ["## Scenarios", ""]
    if not res.directions.empty:
        written += write_table(res.directions, out, "scenario_directions")
        md += [
            "Each published direction, checked on the evaluation seeds (paired difference "
            "strategy − baseline, 95% bootstrap CI; a verdict needs at least "
            f"{report.min_verdict_seeds} paired seeds):",
            "",
            markdown_table(res.directions.drop(columns=["reproduces", "along"], errors="ignore")),
        ]
        keys = ["scenario", "strategy", "expected", "baseline", "metric", "along"]
        moved = res.directions.drop_duplicates(keys[:5])
        if "along" in moved and moved.along.astype(bool).any():
            md += [
                "",
                "Along the budget ladder (`headline` marks each scenario's largest rung that "
                "every strategy has evaluated):",
                "",
            ]
            md += [
                f"- {r.scenario}: {r.strategy} {r.expected} {r.baseline} on {r.metric}: {r.along}."
                for r in moved.itertuples()
                if r.along
            ]
        md += [""]
    agg = res.aggregate
    if agg is None:
        return written, md + ([f"> {res.note}", ""] if res.note else [])
    written += write_table(agg.per_scenario, out, "scenario_means")
    written += write_table(agg.overall, out, "aggregate")
    top_trials = dict((lv, t) for lv, t, _ in res.by_level).get(res.headline, "")
    at = f" at {top_trials} search trials per strategy" if top_trials else ""
    written += figures.cross_scenario(
        agg.overall, agg.profiles, out / "aggregate", f"across scenarios{at}", agg.baseline, pdf
    )
    md += [
        f"Across scenarios{at}, each run's study metric normalised per scenario (chance = 0, "
        f"{agg.baseline}'s mean = 1): interquartile mean, mean, and probability of improvement "
        f"over {agg.baseline}, with 95% stratified-bootstrap CIs (rliable style). "
        "`p_improve` is rliable's unpaired form (every run against every run of "
        f"{agg.baseline} in the scenario); `p_paired` pairs each run with {agg.baseline}'s run "
        "on the same evaluation seed and resamples the pairs.",
        "",
        markdown_table(agg.overall),
        "![aggregate](aggregate.png)",
        "",
    ]
    ladder = [
        a.overall.assign(level=level, trials=trials)
        for level, trials, a in res.by_level
        if a is not None
    ]
    if len(ladder) > 1:
        table = pd.concat(ladder, ignore_index=True)
        written += write_table(table, out, "aggregate_by_rung")
        cols = ["trials", "strategy", "iqm", "iqm_lo", "iqm_hi", "p_paired", "p_paired_lo"]
        cols += ["p_paired_hi"]
        md += [
            "The same at every rung of the budget ladder (IQM and paired probability of "
            "improvement; all columns in `aggregate_by_rung.csv`). Each rung is normalised by "
            "reset's mean at that rung: a strategy's IQM also moves when reset's search "
            "finds a better configuration.",
            "",
            markdown_table(table[cols]),
            "",
        ]
    if agg.excluded:
        md += [f"> Left out of the aggregate (a strategy has no runs): {', '.join(agg.excluded)}"]
    return written, md


def budget_section(report: Report, out: Path, pdf: bool) -> tuple[list[Path], list[str]]:
    """The search budget: the policy and warnings, every comparison at every rung of the
    ladder with its sentence, and each study's anytime figure."""
    if report.ladder.empty and not report.anytime and not report.budget_notes:
        return [], []
    written: list[Path] = []
    md = ["## The search budget", ""]
    md += [f"- {n}" for n in report.budget_notes]
    lad = report.ladder
    if not lad.empty and (lad["level"].max() > 1 or lad.along.str.contains("to come").any()):
        written += write_table(lad, out, "ladder")
        written += figures.ladder(lad, out / "ladder", "budget ladder", pdf)
        md += [
            "",
            "Each comparison with reset at every rung of the budget ladder (the best "
            "configuration after that many search trials, re-run on the evaluation seeds; "
            "`ladder.csv` has every rung):",
            "",
        ]
        firsts = lad.groupby(["setting", "strategy"], sort=False).first().reset_index()
        md += [f"- {r.setting}: {r.strategy} − reset: {r.along}." for r in firsts.itertuples()]
        md += ["", "![ladder](ladder.png)"]
    for view in report.anytime:
        written += figures.anytime(view, out / f"{view.name}_anytime", pdf)
    md += [f"![{p.stem}]({p.name})" for p in written if p.stem.endswith("_anytime")]
    return written, md + [""]


def _band_rng(state: dict) -> np.random.Generator:
    """A generator that continues from ``state`` (a ``bit_generator.state``)."""
    bits = getattr(np.random, state["bit_generator"])()
    bits.state = state
    return np.random.Generator(bits)


def write(report: Report, out: Path, pdf: bool = False) -> Path:
    """Records, tables, figures and ``report.md`` in ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    report.records.to_parquet(out / "records.parquet", index=False)
    written = [out / "records.parquet"]
    written += write_table(report.summary, out, "summary")
    written += write_table(report.per_restart, out, "per_restart")
    if not report.advantage.empty:
        written += write_table(report.advantage, out, "advantage")
    md = header(report) + ["", "## What the numbers show", ""] + findings(report)
    md += ["", method_note(report), ""]
    md += ["## Summary", "", markdown_table(summary_view(report.summary))]
    if not report.advantage.empty:
        written += figures.advantage(report.advantage, out / "advantage", "primary metric", pdf)
        md += ["## Advantage over reset", "", "![advantage](advantage.png)", ""]
    files, lines = sequences_section(report, out, pdf)
    written += files
    md += lines
    rng = _band_rng(report.band_rng_state)
    for view in report.settings:
        files, lines = setting_section(view, out, rng, pdf)
        written += files
        md += lines
    files, lines = budget_section(report, out, pdf)
    written += files
    md += lines
    files, lines = scenarios_section(report, out, pdf)
    written += files
    md += lines
    if report.study_roots:
        files, lines = studies_section(report, out, pdf)
        written += files
        md += lines
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    log.info("wrote %d files", len(written) + 1)
    return path


def write_report(
    loaded: Loaded, out: Path, pdf: bool = False, seed: int = 0, reps: int = 2000
) -> Path:
    """Everything: records.parquet, tables, figures and report.md in ``out``; returns the
    report's path."""
    return write(build_report(loaded, seed, reps), out, pdf)
