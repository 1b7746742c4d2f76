"""Tables (CSV and Markdown) and ``report.md``: the figures with one sentence per comparison
saying what the numbers show, computed from the data."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis import figures
from analysis.load import Loaded
from analysis.stats import (
    METRICS,
    bootstrap_ci,
    paired_difference_ci,
    per_restart,
    per_seed_objectives,
)

log = logging.getLogger(__name__)

SETTING = ["dataset", "model", "objective"]


def primary_metric(objective: str) -> str:
    """The comparison metric: train accuracy where test labels are random."""
    return "auc_train_acc" if objective == "random_labels" else "auc_test_acc"


def setting_name(row: Any) -> str:
    return f"{row['model']}/{row['dataset']}/{row['objective']}"


def comparison_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The epochs that compare strategies: runs and evaluation trials; for a study without an
    evaluation phase, each strategy's best search trial (said in the report)."""
    rows = table[table.phase.isin(["run", "eval"])]
    if not rows.empty:
        return rows, ""
    search = table[table.phase == "search"]
    per_trial = per_seed_objectives(search)
    keep = []
    for _, g in per_trial.groupby(SETTING + ["strategy"]):
        metric = primary_metric(g.objective.iloc[0])
        keep.append(g.loc[g[metric].idxmax(), "trial"])
    note = (
        "No evaluation phase has finished: strategies are compared on their best search "
        "trial (one seed each, no confidence intervals)."
    )
    return search[search.trial.isin(keep)], note


def summary_table(objs: pd.DataFrame, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """Per setting and strategy: seeds, and mean [95% CI] of every objective."""
    out = []
    for key, g in objs.groupby(SETTING + ["strategy"], sort=False):
        row = dict(zip(SETTING + ["strategy"], key))
        row["seeds"] = int(g.seed.nunique())
        for m in METRICS:
            mean, lo, hi = bootstrap_ci(g[m].to_numpy(), rng, reps)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean, lo, hi
        out.append(row)
    return pd.DataFrame(out)


def advantage_table(objs: pd.DataFrame, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """Per setting and strategy other than reset: mean paired difference to reset on the primary
    metric over seeds both ran, with its 95% bootstrap CI."""
    out = []
    for key, g in objs.groupby(SETTING, sort=False):
        setting = dict(zip(SETTING, key))
        metric = primary_metric(setting["objective"])
        base = g[g.strategy == "reset"].groupby("seed")[metric].mean()
        if base.empty:
            continue
        for s in dict.fromkeys(g.strategy):
            if s == "reset":
                continue
            other = g[g.strategy == s].groupby("seed")[metric].mean()
            seeds = base.index.intersection(other.index)
            if len(seeds) == 0:
                continue
            diff, lo, hi = paired_difference_ci(
                other[seeds].to_numpy(), base[seeds].to_numpy(), rng, reps
            )
            out.append(
                {
                    **setting,
                    "setting": setting_name(setting),
                    "strategy": s,
                    "metric": metric,
                    "pairs": len(seeds),
                    "diff": diff,
                    "lo": lo,
                    "hi": hi,
                }
            )
    return pd.DataFrame(out)


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


def _write_table(frame: pd.DataFrame, out: Path, name: str) -> list[Path]:
    frame.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(markdown_table(frame))
    return [out / f"{name}.csv", out / f"{name}.md"]


def sentences(adv: pd.DataFrame) -> list[str]:
    """One sentence per strategy over settings, then one per setting."""
    lines = []
    for s, g in adv.groupby("strategy", sort=False):
        wins = int((g["diff"] > 0).sum())
        with_ci = g[g["lo"].notna()]
        excl = int(((with_ci["lo"] > 0) | (with_ci["hi"] < 0)).sum())
        lines.append(
            f"- **{s}** beats reset on {wins} of {len(g)} setting(s); the 95% CI of the "
            f"difference excludes 0 on {excl} of {len(with_ci)} with more than one seed."
        )
    for r in adv.itertuples():
        if np.isnan(r.lo):
            verdict = "a single seed: no confidence interval"
        elif r.lo > 0:
            verdict = "better than reset (CI above 0)"
        elif r.hi < 0:
            verdict = "worse than reset (CI below 0)"
        else:
            verdict = "not distinguishable from reset (CI contains 0)"
        lines.append(
            f"- {r.setting}: {r.strategy} − reset = {_fmt(r.diff, r.lo, r.hi)} "
            f"on {r.metric} over {r.pairs} paired seed(s): {verdict}."
        )
    return lines


def study_tables(
    loaded: Loaded, table: pd.DataFrame, out: Path, pdf: bool
) -> tuple[list[Path], list[str]]:
    """Best configuration per strategy, search figures, Optuna importances, for each study."""
    written, lines = [], []
    best_rows = []
    for root in loaded.studies:
        try:
            state = json.loads((root / "study.json").read_text())
            spec = yaml.safe_load((root / "study.yaml").read_text())
        except (OSError, ValueError, yaml.YAMLError):
            continue
        metric = spec.get("metric", "auc_test_acc")
        for s, best in state.get("best", {}).items():
            params = {
                k: v
                for k, v in best.get("config", {}).items()
                if k not in ("setting", "seed", "strategy", "checkpoint_every")
            }
            best_rows.append(
                {
                    "study": state.get("name", root.name),
                    "strategy": s,
                    "metric": metric,
                    "best": best.get("objective"),
                    "params": json.dumps(params, sort_keys=True),
                }
            )
        search = table[(table.source == str(root)) & (table.phase == "search")]
        if search.empty:
            continue
        objs = per_seed_objectives(search)
        searched = sorted(
            {
                k
                for space in spec.get("strategies", {}).values()
                for k, v in space.items()
                if isinstance(v, (dict, list))
            }
        )
        trial_params = search.groupby("trial").first()
        objs = objs.join(trial_params[[p for p in searched if p in trial_params]], on="trial")
        params = [p for p in searched if p in objs and objs[p].notna().any()]
        name = state.get("name", root.name)
        if params:
            written += figures.search_scatter(
                objs, params, metric, out / f"{name}_search", name, pdf
            )
        imp = optuna_importances(root, spec)
        if not imp.empty:
            written += figures.importances(imp, out / f"{name}_importance", name, pdf)
            written += _write_table(imp, out, f"{name}_importance")
        else:
            lines.append(
                f"- {name}: parameter importances need at least two finished search "
                "trials with different parameters per strategy."
            )
    if best_rows:
        written += _write_table(pd.DataFrame(best_rows), out, "best_configs")
    return written, lines


def optuna_importances(root: Path, spec: dict[str, Any]) -> pd.DataFrame:
    db = root / "optuna.db"
    if not db.is_file():
        return pd.DataFrame()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for s in spec.get("strategies", {}):
        try:
            study = optuna.load_study(study_name=f"{spec['name']}.{s}", storage=f"sqlite:///{db}")
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if len(done) < 2:
                continue
            for p, v in optuna.importance.get_param_importances(study).items():
                rows.append({"strategy": s, "param": p, "importance": v})
        except Exception as e:  # too few distinct values, a single parameter, a locked db...
            log.info("no importances for %s/%s: %s", root, s, e)
    return pd.DataFrame(rows)


def write_report(
    loaded: Loaded, out: Path, pdf: bool = False, seed: int = 0, reps: int = 2000
) -> Path:
    """Everything: records.parquet, tables, figures and report.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table = loaded.table
    table.to_parquet(out / "records.parquet", index=False)
    rng = np.random.default_rng(seed)
    rows, note = comparison_rows(table)
    objs = per_seed_objectives(rows)
    summary = summary_table(objs, rng, reps)
    adv = advantage_table(objs, rng, reps)
    restarts = per_restart(rows)
    written = [out / "records.parquet"]
    written += _write_table(summary, out, "summary")
    written += _write_table(restarts, out, "per_restart")
    if not adv.empty:
        written += _write_table(adv, out, "advantage")

    md = ["# plasticity report", ""]
    md += [
        f"Sources: {', '.join(sorted(set(table.source)))}.",
        f"{len(table)} epoch records from {table.trial.nunique()} trial(s); "
        f"comparisons use {rows.trial.nunique()} of them.",
        "",
    ]
    for r in loaded.running:
        md.append(f"> Still running or interrupted: {r}. This report covers what has finished.")
    if note:
        md.append(f"> {note}")
    for w in loaded.warnings:
        md.append(f"> Warning: {w}")
    md += ["", "## What the numbers show", ""]
    md += (
        sentences(adv)
        if not adv.empty
        else ["- No setting has both reset and another strategy: nothing to compare."]
    )
    md += [
        "",
        "The objective is the area under each restart's learning curve (mean accuracy "
        "over its epochs), averaged over restarts 1..R; `final_*` is the accuracy at the end "
        "of each restart. Intervals are 95% percentile bootstrap CIs over seeds "
        f"({reps} resamples, seed {seed}).",
        "",
    ]
    md += ["## Summary", "", markdown_table(_summary_view(summary))]
    if not adv.empty:
        written += figures.advantage(adv, out / "advantage", "primary metric", pdf)
        md += ["## Advantage over reset", "", "![advantage](advantage.png)", ""]

    for key, setting in rows.groupby(SETTING, sort=False):
        info = dict(zip(SETTING, key))
        title = setting_name(info)
        slug = title.replace("/", "_")
        meaningful = info["objective"] != "random_labels"
        md += [f"## {title}", ""]
        if not meaningful:
            md += [
                "Test loss and accuracy mean nothing here: the labels are random, so the "
                "test labels carry no signal. Compare train accuracy (memorisation).",
                "",
            ]
        for last in (False, True):
            stem = out / f"{slug}_curves_{'last' if last else 'all'}"
            written += figures.learning_curves(setting, stem, title, rng, last, pdf, meaningful)
            md.append(f"![{stem.name}]({stem.name}.png)")
        stem = out / f"{slug}_per_restart"
        written += figures.restart_summary(
            restarts[(restarts[SETTING] == list(key)).all(axis=1)], stem, title, rng, pdf
        )
        md.append(f"![{stem.name}]({stem.name}.png)")
        if (setting.strategy == "expanded").any() and setting.alpha.notna().any():
            stem = out / f"{slug}_alpha"
            written += figures.alpha_curve(setting, stem, title, pdf)
            md.append(f"![{stem.name}]({stem.name}.png)")
        diag = [c for c in setting.columns if c.startswith("diag_") and setting[c].notna().any()]
        if diag:
            per = setting.groupby(["strategy", "trial", "task"], sort=False)[diag].mean()
            stem = out / f"{slug}_diagnostics"
            written += figures.diagnostics(per.reset_index(), diag, stem, title, rng, pdf)
            md.append(f"![{stem.name}]({stem.name}.png)")
        md.append("")

    if loaded.studies:
        extra, lines = study_tables(loaded, table, out, pdf)
        written += extra
        md += ["## Studies", ""]
        if (out / "best_configs.md").exists():
            md += [
                "Best configuration of each strategy's search:",
                "",
                (out / "best_configs.md").read_text(),
            ]
        for path in extra:
            if path.suffix == ".png":
                md.append(f"![{path.stem}]({path.name})")
        md += lines
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n")
    log.info("wrote %d files", len(written) + 1)
    return report


def _summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    view = summary[SETTING + ["strategy", "seeds"]].copy()
    for m in METRICS:
        view[m] = [
            _fmt(a, b, c) for a, b, c in zip(summary[m], summary[f"{m}_lo"], summary[f"{m}_hi"])
        ]
    return view
