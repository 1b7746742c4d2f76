"""``plasticity analyze``: figures, tables and a report from run or study folders, offline.

Reads results only (no Ray, no training code). Output goes to ``--out`` (default
``PATH/analysis`` for one path, ``analysis`` for several); only files inside it are replaced.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from plasticity.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="run or study folders")
    p.add_argument("--out", help="output folder (default PATH/analysis)")
    p.add_argument("--pdf", action="store_true", help="also write PDF figures")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.load import load
    from analysis.report import write_report

    if args.bootstrap < 1:
        raise UserError("--bootstrap must be a positive integer")
    start = time.perf_counter()
    loaded = load(args.paths)
    out = (
        Path(args.out)
        if args.out
        else (Path(args.paths[0]) / "analysis" if len(args.paths) == 1 else Path("analysis"))
    )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    report = write_report(loaded, out, pdf=args.pdf, seed=args.seed, reps=args.bootstrap)
    for w in loaded.warnings:
        print(f"warning: {w}")
    for r in loaded.running:
        print(f"note: not finished: {r}; analysed what has finished")
    print(
        f"analysed {len(loaded.table)} records from {loaded.table.trial.nunique()} trial(s) "
        f"in {time.perf_counter() - start:.1f} s: {report}"
    )
    return 0
