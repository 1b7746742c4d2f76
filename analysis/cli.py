"""``plasticity analyze``: figures, tables and a report from run or study folders, offline.

Reads results only (no Ray, no training code). Output goes to ``--out`` (default
``PATH/analysis`` for one path, ``analysis`` for several); only files inside it are replaced.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from plasticity.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="run or study folders")
    p.add_argument("--out", help="output folder (default PATH/analysis)")
    p.add_argument("--pdf", action="store_true", help="also write PDF figures")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.bootstrap < 1:
        raise UserError("--bootstrap must be a positive integer")
    start = time.perf_counter()
    out = (
        Path(args.out)
        if args.out
        else (Path(args.paths[0]) / "analysis" if len(args.paths) == 1 else Path("analysis"))
    )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    loaded, report = analyse(args.paths, out, pdf=args.pdf, seed=args.seed, reps=args.bootstrap)
    for w in loaded.warnings:
        print(f"warning: {w}")
    for r in loaded.running:
        print(f"note: not finished: {r}; analysed what has finished")
    print(
        f"analysed {len(loaded.table)} records from {loaded.table.trial.nunique()} trial(s) "
        f"in {time.perf_counter() - start:.1f} s: {report}"
    )
    return 0


def analyse(
    paths: list[Any], out: Path, pdf: bool = False, seed: int = 0, reps: int = 2000
) -> tuple[Any, Path]:
    """Read, compute and write the report, saying on stdout what each long step does; returns
    what was loaded and the report's path."""
    from analysis import render
    from analysis.load import load
    from analysis.report import build_report

    say(f"analysis: reading {len(paths)} folder(s)")
    loaded = load(paths)
    say(
        f"analysis: {len(loaded.table)} records of {loaded.table.trial.nunique()} trial(s); "
        f"95% CIs from {reps} bootstrap resamples"
    )
    report = build_report(loaded, seed, reps)
    say(f"analysis: writing tables, figures and report.md to {out}")
    return loaded, render.write(report, out, pdf)


def say(line: str) -> None:
    print(line, flush=True)
