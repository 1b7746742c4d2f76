"""The protocols' comparison table in docs/results.md: per setting, each strategy's mean of a
metric over its evaluation seeds with a 95% bootstrap CI, and its difference to each baseline
paired over the seeds both ran (the same evaluation seeds 1000-1004 in every study of a
protocol, so runs from different studies pair). Reads the ``records.parquet`` that
``plasticity analyze ... --out DIR`` writes:

    python docs/results/protocols/paired.py DIR/records.parquet [--metric auc_train_acc]
        [--baselines continuous reset]

Prints a markdown table per setting, best mean first.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from analysis.render import markdown_table
from analysis.stats import bootstrap_ci, paired_difference_ci, per_seed_objectives


def paired_table(
    runs: pd.DataFrame, metric: str, baselines: list[str], reps: int = 2000
) -> pd.DataFrame:
    """One setting's per-run objectives -> one row per strategy (see the module's text)."""
    rng = np.random.default_rng(0)
    wide = runs.pivot_table(index="seed", columns="strategy", values=metric)
    rows = []
    for s in wide.columns:
        mean, lo, hi = bootstrap_ci(wide[s].to_numpy(), rng, reps)
        row = {"strategy": s, "seeds": int(wide[s].notna().sum()), "_mean": mean}
        row[metric] = f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
        for b in baselines:
            if b in wide and b != s:
                both = wide[[s, b]].dropna()
                d, dl, dh = paired_difference_ci(both[s].to_numpy(), both[b].to_numpy(), rng, reps)
                row[f"− {b}"] = f"{d:+.3f} [{dl:+.3f}, {dh:+.3f}]"
            else:
                row[f"− {b}"] = ""
        rows.append(row)
    return pd.DataFrame(rows).sort_values("_mean", ascending=False).drop(columns="_mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("--metric", default="auc_train_acc")
    parser.add_argument("--baselines", nargs="+", default=["continuous", "reset"])
    args = parser.parse_args()
    table = pd.read_parquet(args.records)
    runs = per_seed_objectives(table[table.phase == "eval"])
    for key, setting in runs.groupby(["model", "dataset", "objective"]):
        print(f"## {'/'.join(key)}\n")
        print(markdown_table(paired_table(setting, args.metric, args.baselines)), "\n")


if __name__ == "__main__":
    main()
