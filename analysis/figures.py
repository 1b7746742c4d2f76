"""The paper's figures and the ones beyond it, as PNG (and PDF on request).

Every function takes the tidy table (or a table derived from it) and a path stem, writes the
files and returns their paths. Bands are 95% bootstrap confidence intervals across seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from analysis.stats import bootstrap_band
from analysis.tasks import LongSequence, moving_average, windows

PANELS = (
    ("train_loss", "train loss"),
    ("test_loss", "test loss"),
    ("train_acc", "train accuracy"),
    ("test_acc", "test accuracy"),
)
FIXED = {"reset": ("C0", "-"), "continuous": ("C1", "-"), "expanded": ("C2", "-")}
"""The paper's three strategies keep their colours in every figure."""
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = {"-": "o", "--": "s", ":": "^", "-.": "D"}
STYLES = tuple(
    (f"C{c}", ls) for ls in LINESTYLES for c in range(10) if (f"C{c}", ls) not in FIXED.values()
)
"""(colour, line style) for the other strategies, in order of their first appearance: the 7
colours the fixed three leave, solid, then all 10 dashed, dotted, dash-dotted; 40 strategies
before a pair repeats."""
LEGEND_COLUMNS = 6
"""Strategies per legend row in the per-task figure (up to 40 strategies fit its width)."""
MAX_BOUNDARIES = 100
"""Task boundaries drawn in the learning curves up to this many restarts; beyond, they would
cover the panel (at 1,000 tasks, two per pixel of a panel)."""


def style(strategy: str, order: list[str]) -> dict[str, str]:
    """``color``, ``ls`` and ``marker`` of ``strategy`` among ``order`` (the strategies of a
    figure): distinct for every strategy of the figure, whatever their number (up to 40)."""
    if strategy in FIXED:
        color, ls = FIXED[strategy]
    else:
        others = [s for s in dict.fromkeys([*order, strategy]) if s not in FIXED]
        color, ls = STYLES[others.index(strategy) % len(STYLES)]
    return {"color": color, "ls": ls, "marker": MARKERS[ls]}


def _color(strategy: str, order: list[str]) -> str:
    return style(strategy, order)["color"]


def _save(fig: plt.Figure, stem: Path, pdf: bool) -> list[Path]:
    paths = [stem.with_suffix(".png")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    if pdf:
        paths.append(stem.with_suffix(".pdf"))
        fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _legend(fig: plt.Figure, axes, ncol: int | None = None) -> None:
    """One legend for the figure, with every strategy that appears in any panel: in one row,
    or in rows of ``ncol`` below the figure."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    wrap = ncol is not None and ncol < len(seen)
    fig.legend(
        list(seen.values()),
        list(seen),
        loc="upper center" if wrap else "lower center",
        ncol=ncol if wrap else len(seen),
        fontsize=8,
        bbox_to_anchor=(0.5, 0.0 if wrap else -0.02),
        frameon=False,
    )


def _band(
    ax,
    frame: pd.DataFrame,
    x: str,
    y: str,
    label: str,
    st: dict[str, str],
    rng: np.random.Generator,
    smooth: int = 1,
) -> None:
    """Mean of ``y`` against ``x`` over the trials of ``frame`` with its bootstrap band, in
    the :func:`style` ``st``; with ``smooth`` > 1, of each trial's centred moving average over
    ``smooth`` points (:func:`analysis.tasks.moving_average`)."""
    curves = frame.pivot_table(index="trial", columns=x, values=y, aggfunc="mean")
    values = curves.to_numpy()
    mean, lo, hi = bootstrap_band(moving_average(values, smooth) if smooth > 1 else values, rng)
    xs = curves.columns.to_numpy()
    n = len(curves)
    ax.plot(xs, mean, color=st["color"], ls=st["ls"], label=f"{label} (n={n})", lw=1.4)
    if n > 1:
        ax.fill_between(xs, lo, hi, color=st["color"], alpha=0.2, lw=0)


def learning_curves(
    setting: pd.DataFrame,
    stem: Path,
    title: str,
    rng: np.random.Generator,
    last_only: bool = False,
    pdf: bool = False,
    test_meaningful: bool = True,
) -> list[Path]:
    """Train/test loss and accuracy over the epochs of all tasks end to end (task boundaries
    dotted), or over the last restart alone."""
    frame = setting
    x = "global_epoch"
    if last_only:
        frame = setting[setting.task == setting.task.max()]
        x = "epoch"
    order = list(dict.fromkeys(frame.strategy))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for ax, (col, name) in zip(axes.flat, PANELS):
        for s in order:
            _band(ax, frame[frame.strategy == s], x, col, s, style(s, order), rng)
        tasks = int(frame.task.max())
        if not last_only and tasks <= MAX_BOUNDARIES:
            epochs = int(frame.epochs.iloc[0])
            # one collection, not a line per boundary (4,000 axvlines took 4 s at 1,000 tasks)
            bounds = np.arange(1, tasks + 1) * epochs - 0.5
            ax.vlines(bounds, 0, 1, transform=ax.get_xaxis_transform(), color="0.7", lw=0.6,
                      ls=":")  # fmt: skip
        suffix = (
            " (meaningless: random labels)"
            if col.startswith("test") and not test_meaningful
            else ""
        )
        ax.set_title(name + suffix, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch of the last restart" if last_only else "epoch (all tasks)")
    _legend(fig, axes.flat)
    fig.suptitle(title + (" — last restart" if last_only else " — all restarts"))
    return _save(fig, stem, pdf)


def task_sequence(
    view: LongSequence, stem: Path, rng: np.random.Generator, pdf: bool = False
) -> list[Path]:
    """The classic figure of a long task sequence (Dohare et al. 2024, Kumar et al. 2023):
    the online accuracy on each new task against its index and, on a second panel with the
    same x axis, the dormant-unit share at the task's end (when recorded). One line per
    strategy: the mean over seeds of each seed's centred moving average over
    ``view.smoothing`` tasks, with its 95% bootstrap band over seeds; the early and late
    windows of the report's table are shaded."""
    frame = view.tasks
    panels = [("online_acc", "online accuracy on the task (before each update)")]
    if frame.dormant.notna().any():
        panels.append(("dormant", "dormant-unit share at the task's end"))
    order = list(dict.fromkeys(frame.strategy))
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 1 + 3 * len(panels)), sharex=True, squeeze=False
    )
    restarts = int(frame.task.max())
    early, late = windows(restarts)
    for ax, (col, name) in zip(axes[:, 0], panels):
        for s in order:
            g = frame[frame.strategy == s]
            _band(ax, g, "task", col, s, style(s, order), rng, view.smoothing)
        for span in (early, late):
            ax.axvspan(span[0] - 0.5, span[-1] + 0.5, color="0.85", alpha=0.5, lw=0)
        ax.set_ylabel(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("task (0 = the original objective; shaded: the early and late tasks)")
    axes[-1, 0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    smoothed = (
        f"centred moving average over {view.smoothing} tasks" if view.smoothing > 1 else "per task"
    )
    _legend(fig, axes.flat, ncol=LEGEND_COLUMNS)
    fig.suptitle(f"{view.title} — each new task ({smoothed}; 95% CI over seeds)")
    return _save(fig, stem, pdf)


def alpha_curve(setting: pd.DataFrame, stem: Path, title: str, pdf: bool = False) -> list[Path]:
    """α over the epochs of all tasks for every expanded trial."""
    exp = setting[(setting.strategy == "expanded") & setting.alpha.notna()]
    fig, ax = plt.subplots(figsize=(9, 3))
    for _, g in exp.groupby("trial"):
        ax.step(g.global_epoch, g.alpha, where="mid", lw=1, alpha=0.7)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("epoch (all tasks)")
    ax.set_ylabel("α (weight of the new part)")
    ax.set_title(f"{title} — α of the expanded model")
    ax.grid(alpha=0.3)
    return _save(fig, stem, pdf)


def restart_summary(
    restarts: pd.DataFrame, stem: Path, title: str, rng: np.random.Generator, pdf: bool = False
) -> list[Path]:
    """Final accuracy and area under the learning curve against restart index, per strategy:
    a downward trend is plasticity being lost."""
    order = list(dict.fromkeys(restarts.strategy))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = (
        ("final_test_acc", "final test accuracy"),
        ("auc_test_acc", "test AUC (mean over epochs)"),
        ("final_train_acc", "final train accuracy"),
        ("auc_train_acc", "train AUC (mean over epochs)"),
    )
    for ax, (col, name) in zip(axes.flat, panels):
        for s in order:
            _band(ax, restarts[restarts.strategy == s], "task", col, s, style(s, order), rng)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("task (0 = original objective)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    _legend(fig, axes.flat)
    fig.suptitle(f"{title} — per restart")
    return _save(fig, stem, pdf)


def advantage(adv: pd.DataFrame, stem: Path, metric_note: str, pdf: bool = False) -> list[Path]:
    """Mean paired difference to reset, with its 95% CI, per setting and strategy; each label
    gives the number of paired seeds."""
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * max(1, len(adv))))
    labels = [f"{r.setting}: {r.strategy} (n={r.pairs})" for r in adv.itertuples()]
    ys = np.arange(len(adv))
    err = np.vstack([adv["diff"] - adv["lo"], adv["hi"] - adv["diff"]])
    ax.errorbar(adv["diff"], ys, xerr=np.where(np.isnan(err), 0, err), fmt="o", capsize=3)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel(f"advantage over reset ({metric_note}), 95% paired bootstrap CI")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, stem, pdf)


def search_scatter(
    trials: pd.DataFrame, params: list[str], metric: str, stem: Path, title: str, pdf: bool = False
) -> list[Path]:
    """The objective of every search trial against each searched parameter."""
    order = list(dict.fromkeys(trials.strategy))
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.2), squeeze=False)
    for ax, p in zip(axes[0], params):
        for s in order:
            g = trials[(trials.strategy == s) & trials[p].notna()]
            if g.empty:
                continue
            x = g[p]
            if not pd.api.types.is_numeric_dtype(x) or pd.api.types.is_bool_dtype(x):
                cats = sorted(trials[p].dropna().astype(str).unique())
                x = x.astype(str).map(cats.index) + np.linspace(-0.15, 0.15, len(g))
                ax.set_xticks(range(len(cats)), cats, fontsize=8)
            st = style(s, order)
            ax.scatter(
                x, g[metric], s=18, color=st["color"], marker=st["marker"], label=s, alpha=0.8
            )
        if p in ("lr", "weight_decay"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(p)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    _legend(fig, axes.flat)
    fig.suptitle(f"{title} — search trials")
    return _save(fig, stem, pdf)


def importances(imp: pd.DataFrame, stem: Path, title: str, pdf: bool = False) -> list[Path]:
    """Optuna's parameter importances, one bar group per strategy."""
    strategies = list(dict.fromkeys(imp.strategy))
    fig, axes = plt.subplots(1, len(strategies), figsize=(3.6 * len(strategies), 3), squeeze=False)
    for ax, s in zip(axes[0], strategies):
        g = imp[imp.strategy == s].sort_values("importance")
        ax.barh(g.param, g.importance, color=_color(s, strategies))
        n = f" (n={int(g.trials.iloc[0])} trials)" if "trials" in g and len(g) else ""
        ax.set_title(f"{s}{n}", fontsize=10)
        ax.set_xlim(0, 1)
    fig.suptitle(f"{title} — parameter importance (Optuna's default evaluator)", y=1.04)
    return _save(fig, stem, pdf)


def diagnostics(
    restarts: pd.DataFrame,
    columns: list[str],
    stem: Path,
    title: str,
    rng: np.random.Generator,
    pdf: bool = False,
) -> list[Path]:
    """Plasticity diagnostics (``diag_*`` columns, mean over a task's epochs) per restart."""
    order = list(dict.fromkeys(restarts.strategy))
    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.2), squeeze=False)
    for ax, col in zip(axes[0], columns):
        for s in order:
            _band(ax, restarts[restarts.strategy == s], "task", col, s, style(s, order), rng)
        ax.set_title(col.removeprefix("diag_"), fontsize=10)
        ax.set_xlabel("task")
        ax.grid(alpha=0.3)
    _legend(fig, axes.flat)
    fig.suptitle(f"{title} — diagnostics per restart")
    return _save(fig, stem, pdf)


def _intervals(ax, table: pd.DataFrame, col: str, order: list[str]) -> None:
    """A point and its 95% CI bar per strategy (rows of ``table``), strategies top to bottom."""
    for y, row in enumerate(table.itertuples()):
        point, lo, hi = getattr(row, col), getattr(row, f"{col}_lo"), getattr(row, f"{col}_hi")
        err = np.nan_to_num([[point - lo], [hi - point]])  # no interval with a single run
        st = style(row.strategy, order)
        ax.errorbar(point, y, xerr=err, fmt=st["marker"], color=st["color"], capsize=4, lw=2, ms=6)
        ax.annotate(
            f"{point:.2f}",
            (point, y),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(table)), table.strategy)
    ax.set_ylim(len(table) - 0.4, -0.6)
    ax.grid(alpha=0.3, axis="x")


def cross_scenario(
    overall: pd.DataFrame,
    profiles: pd.DataFrame,
    stem: Path,
    title: str,
    baseline: str = "reset",
    pdf: bool = False,
) -> list[Path]:
    """Every strategy across scenarios on normalised scores (0 = chance, 1 = ``baseline``'s
    mean), from :func:`analysis.aggregate.aggregate`'s ``overall`` and ``profiles`` tables:
    (a) IQM, (b) probability of improvement over ``baseline``, (c) performance profiles. Bars
    and bands are 95% stratified-bootstrap CIs."""
    order = list(overall.strategy)
    height = max(3.6, 1.4 + 0.45 * len(order))
    fig, axes = plt.subplots(1, 3, figsize=(15, height), gridspec_kw={"width_ratios": [1, 1, 1.25]})
    _intervals(axes[0], overall, "iqm", order)
    axes[0].axvline(1, color="0.4", lw=0.8, ls="--")
    axes[0].set_xlabel(f"IQM (0 = chance, 1 = {baseline})")
    axes[0].set_title("(a) interquartile mean", fontsize=10)
    others = overall[overall.strategy != baseline]
    _intervals(axes[1], others, "p_improve", order)
    axes[1].axvline(0.5, color="0.4", lw=0.8, ls="--")
    axes[1].set_xlim(-0.02, 1.02)
    axes[1].set_xlabel(f"P(strategy > {baseline}) in a scenario (unpaired, rliable's form)")
    axes[1].set_title(f"(b) probability of improvement over {baseline}", fontsize=10)
    for s in order:
        p = profiles[profiles.strategy == s]
        st = style(s, order)
        axes[2].plot(p.tau, p.fraction, color=st["color"], ls=st["ls"], lw=1.6, label=s)
        axes[2].fill_between(p.tau, p.lo, p.hi, color=st["color"], alpha=0.2, lw=0)
    axes[2].axvline(1, color="0.4", lw=0.8, ls="--")
    # Zoom on the τ where some profile falls (flat at 1 or 0 elsewhere), keeping τ = 1 in view.
    moving = profiles.tau[(profiles.fraction > 0) & (profiles.fraction < 1)]
    if len(moving):
        lo, hi = min(moving.min(), 1.0), max(moving.max(), 1.0)
        axes[2].set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_xlabel(f"normalised score τ (1 = {baseline})")
    axes[2].set_ylabel("fraction of runs with score > τ")
    axes[2].set_title("(c) performance profile", fontsize=10)
    axes[2].legend(fontsize=8, frameon=False)
    axes[2].grid(alpha=0.3)
    n = int(overall.scenarios.iloc[0])
    cis = (
        "no CIs: a scenario has one run"
        if overall.iqm_lo.isna().all()
        else "95% stratified bootstrap CIs"
    )
    fig.suptitle(f"{title} — across {n} scenario{'s' * (n != 1)} ({cis})")
    fig.tight_layout()
    return _save(fig, stem, pdf)


def anytime(view, stem: Path, pdf: bool = False) -> list[Path]:
    """One study's search against its budget (an :class:`analysis.budget.Anytime`): (a) each
    strategy's best-so-far search objective against search trials spent (steps), with the
    evaluation mean and 95% CI of its best at each rung of the ladder (points, fresh seeds);
    (b) the expected best of k random configurations (Dodge et al. 2019), exact from the
    order statistics of the random start-up trials."""
    order = list(dict.fromkeys(view.search.strategy))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1.5, 1]})
    spread = 0.25 * np.linspace(-1, 1, len(order)) if len(order) > 1 else [0.0]
    for s, dx in zip(order, spread):
        st = style(s, order)
        g = view.search[view.search.strategy == s]
        axes[0].step(g.search_index, g.best, where="post", color=st["color"], ls=st["ls"],
                     lw=1.4, label=s)  # fmt: skip
        e = view.evals[view.evals.strategy == s]
        if not e.empty:
            err = np.nan_to_num(np.vstack([e["mean"] - e["lo"], e["hi"] - e["mean"]]))
            axes[0].errorbar(e.rung + dx, e["mean"], yerr=err, fmt=st["marker"],
                             color=st["color"], capsize=3, ms=5, lw=1.2)  # fmt: skip
        x = view.expected[view.expected.strategy == s] if not view.expected.empty else None
        if x is not None and not x.empty:
            axes[1].plot(x.k, x.expected, color=st["color"], ls=st["ls"], marker=st["marker"],
                         ms=4, lw=1.4, label=f"{s} (n={int(x.k.max())})")  # fmt: skip
    for rung in sorted(view.evals.rung.unique()) if not view.evals.empty else []:
        axes[0].axvline(rung, color="0.75", lw=0.7, ls=":")
    axes[0].set_xlabel("search trials spent")
    axes[0].set_ylabel(view.metric)
    axes[0].set_title(
        "(a) best so far (lines, search seed); evaluated at each rung (points: mean, 95% CI)",
        fontsize=9,
    )
    axes[0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].grid(alpha=0.3)
    axes[1].set_xlabel("k random configurations")
    axes[1].set_ylabel(f"expected best {view.metric}")
    axes[1].set_title("(b) expected best of k random configurations (start-up trials)", fontsize=9)
    axes[1].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[1].grid(alpha=0.3)
    _legend(fig, axes[:1])
    fig.suptitle(f"{view.name} — the search against its budget")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, stem, pdf)


def ladder(lad: pd.DataFrame, stem: Path, title: str, pdf: bool = False) -> list[Path]:
    """Each strategy's paired difference to reset (95% CI) at every rung of the budget ladder,
    one panel per setting: a direction that holds stays on one side of 0 as trials grow."""
    settings = list(dict.fromkeys(lad.setting))
    fig, axes = plt.subplots(
        1, len(settings), figsize=(5.5 * len(settings), 4), squeeze=False, sharey=False
    )
    for ax, setting in zip(axes[0], settings):
        g = lad[lad.setting == setting]
        order = list(dict.fromkeys(g.strategy))
        for s in order:
            st = style(s, order)
            r = g[g.strategy == s].sort_values("level")
            err = np.nan_to_num(np.vstack([r["diff"] - r["lo"], r["hi"] - r["diff"]]))
            ax.errorbar(r.trials, r["diff"], yerr=err, color=st["color"], ls=st["ls"],
                        marker=st["marker"], capsize=3, ms=4, lw=1.2, label=s)  # fmt: skip
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xscale("log", base=2)
        ticks = sorted(g.trials.unique())
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("search trials per strategy")
        ax.set_ylabel(f"strategy − reset ({g.metric.iloc[0]})")
        ax.set_title(setting, fontsize=10)
        ax.grid(alpha=0.3)
    _legend(fig, axes.flat)
    fig.suptitle(f"{title} — the difference to reset at every rung (95% paired CI)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, stem, pdf)
