"""How long the analysis takes on a 100-trial study folder.

Generates a finished study in Ray Tune's on-disk format (:mod:`analysis.synthetic`): 3
strategies x 30 search trials + 3 x 4 evaluation seeds = 102 trials (plus one orphan folder per
search and a resumed trial with repeated reports), 11 tasks x 10 epochs each; then times reading
it into the tidy table and the whole ``plasticity analyze`` (tables, figures, report).

    python benchmarks/analysis_speed.py [--search 30] [--eval 4] [--restarts 10] [--epochs 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analysis.load import load
from analysis.render import write_report
from analysis.synthetic import make_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", type=int, default=30, help="search trials per strategy")
    parser.add_argument("--eval", type=int, default=4, help="eval seeds per strategy")
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    strategies = ("reset", "continuous", "expanded")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_study(
            Path(tmp) / "big",
            strategies=strategies,
            trials_per_strategy=args.search,
            eval_seeds=args.eval,
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
