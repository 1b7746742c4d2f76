"""How long the analysis takes on a 100-trial study folder, and on a long task sequence.

Generates a finished study in Ray Tune's on-disk format (:mod:`analysis.synthetic`): 3
strategies x 30 search trials + 3 x 4 evaluation seeds = 102 trials (plus one orphan folder per
search and a resumed trial with repeated reports), 11 tasks x 10 epochs each; then times reading
it into the tidy table and the whole ``plasticity analyze`` (tables, figures, report).

With ``--tasks N``, instead a long-sequence study after Kumar et al. 2023 (issue 22): 14
strategies x (1 search trial + 5 evaluation seeds), N one-epoch tasks (default 1,000) with a
dormant share and an effective rank recorded every epoch, timed stage by stage (read, report's
content, the long-sequence section alone, writing everything).

    python benchmarks/analysis_speed.py [--search 30] [--eval 4] [--restarts 10] [--epochs 10]
    python benchmarks/analysis_speed.py --tasks 1000 [--strategies 14] [--eval 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis import tasks
from analysis.load import load
from analysis.render import write, write_report
from analysis.report import build_report
from analysis.synthetic import make_study

NAMED = ("reset", "continuous", "expanded")


def decline(strategy: str, seed: int, task: int, epoch: int) -> float:
    """A made-up loss of plasticity: every strategy but reset loses accuracy with the task
    index, at one of three rates."""
    rate = 0.0 if strategy == "reset" else 1e-4 * (1 + len(strategy) % 3)
    return round(0.9 - rate * task + 0.002 * (seed % 5), 6)


def dormant(strategy: str, seed: int, task: int, epoch: int) -> dict[str, float]:
    share = 0.0 if strategy == "reset" else min(0.5, 4e-4 * task)
    return {"diag_dormant": share, "diag_effective_rank": 50.0 - 0.01 * task}


def long_sequence(n_tasks: int, n_strategies: int, seeds: int) -> None:
    strategies = (NAMED + tuple(f"s{i}" for i in range(n_strategies)))[:n_strategies]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = make_study(
            Path(tmp) / "long",
            strategies=strategies,
            trials_per_strategy=1,
            eval_seeds=seeds,
            setting={
                "restarts": n_tasks - 1,
                "epochs": 1,
                "batch_size": 16,
                "objective": "permute_inputs",
            },  # fmt: skip
            acc=decline,
            diag=dormant,
        )
        made_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in root.rglob("result.json")) / 2**20
        start = time.perf_counter()
        loaded = load([root])
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        report = build_report(loaded)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        rows = loaded.table[loaded.table.phase == "eval"]
        tasks.long_sequences(rows, np.random.default_rng(0))
        section_s = time.perf_counter() - start
        start = time.perf_counter()
        write(report, root / "analysis")
        write_s = time.perf_counter() - start
        figures = len(list((root / "analysis").glob("*.png")))
    trials = len(strategies) * (1 + seeds)
    print(
        f"long sequence: {len(strategies)} strategies x (1 search + {seeds} eval seeds) = "
        f"{trials} trials x {n_tasks} one-epoch tasks: {len(loaded.table)} epoch rows, "
        f"{size:.0f} MiB of result.json (written in {made_s:.1f} s)"
    )
    print(f"read into the tidy table: {read_s:.2f} s")
    print(f"report's content (build_report, long-sequence section included): {build_s:.2f} s")
    print(f"  of which the long-sequence tables (per-task, early/late): {section_s:.2f} s")
    print(f"writing tables, {figures} figures and report.md: {write_s:.2f} s")
    print(f"whole analysis: {read_s + build_s + write_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", type=int, default=30, help="search trials per strategy")
    parser.add_argument("--eval", type=int, default=None, help="eval seeds (4; 5 with --tasks)")
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tasks", type=int, help="time a long sequence of this many tasks")
    parser.add_argument("--strategies", type=int, default=14, help="with --tasks (14)")
    args = parser.parse_args()
    if args.tasks:
        long_sequence(args.tasks, args.strategies, args.eval or 5)
        return
    strategies = NAMED
    with tempfile.TemporaryDirectory() as tmp:
        root = make_study(
            Path(tmp) / "big",
            strategies=strategies,
            trials_per_strategy=args.search,
            eval_seeds=args.eval or 4,
            orphans=1,
            repeat=True,
            setting={"restarts": args.restarts, "epochs": args.epochs},
        )
        trials = len(list(root.glob("*/*/result.json")))
        start = time.perf_counter()
        loaded = load([root])
        read_s = time.perf_counter() - start
        write_report(loaded, root / "analysis")
        total_s = time.perf_counter() - start
        figures = len(list((root / "analysis").glob("*.png")))
    print(
        f"study folder: {trials} trial folders ({trials - len(strategies)} trials + "
        f"{len(strategies)} orphans), {len(loaded.table)} epoch rows after de-duplication"
    )
    print(f"read into the tidy table: {read_s:.2f} s")
    print(f"whole analysis (table, {figures} figures, tables, report): {total_s:.2f} s")


if __name__ == "__main__":
    main()
