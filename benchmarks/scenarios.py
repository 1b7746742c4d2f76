"""Does each scenario's published direction show? A quick check without Ray or a search.

For every shipped scenario (``study/presets/scenario-*.yaml``) this runs the strategies its
expectations name, in-process, at the preset's default hyperparameters (no search: the paper's
learning rate and each strategy's default parameters), on ``--seeds`` seeds, and prints per
expected direction the paired difference strategy − baseline on the expected metric, per seed
and on average, and whether the direction holds on every seed. The study itself (searched
hyperparameters, 5 fresh evaluation seeds, bootstrap CIs) is the real test; this is the quick
one. Never tune a scenario until it agrees: a direction that does not show is a finding.

    python benchmarks/scenarios.py                       # every scenario, 3 seeds
    python benchmarks/scenarios.py --only scenario-class-shuffle --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from plasticity.config import RunConfig
from plasticity.loop import prepare, run_experiment
from plasticity.metrics import per_run
from study.spec import load_spec, preset_names, preset_path


def check(name: str, seeds: int, epochs: int | None, restarts: int | None) -> list[str]:
    """One line per expected direction of scenario ``name``."""
    spec = load_spec(preset_path(name))
    expects = spec.scenario.expects
    names = list(dict.fromkeys(s for e in expects for s in (e.baseline, e.strategy)))
    setting = spec.setting.model_dump()
    setting.update({k: v for k, v in (("epochs", epochs), ("restarts", restarts)) if v})
    config = RunConfig(**setting, strategies=tuple(names), device="cpu")
    data = prepare(config)
    frames = []
    for seed in range(seeds):
        records = run_experiment(config.replace(seed=seed), data)
        frames.append(pd.DataFrame([r.to_dict() for r in records]))
    table = per_run(pd.concat(frames), ["strategy", "seed"]).set_index(["strategy", "seed"])
    lines = []
    for e in expects:
        diffs = [
            table.loc[(e.strategy, s), e.metric] - table.loc[(e.baseline, s), e.metric]
            for s in range(seeds)
        ]
        sign = 1 if e.direction == "above" else -1
        agree = sum(sign * d > 0 for d in diffs)
        verdict = "holds" if agree == seeds else ("reversed" if agree == 0 else "mixed")
        lines.append(
            f"{name:34s} {e.strategy} {e.direction} {e.baseline} on {e.metric}: "
            f"mean diff {statistics.fmean(diffs):+.4f} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in diffs)}; "
            f"{e.baseline} {statistics.fmean(table.loc[e.baseline][e.metric]):.3f}, "
            f"{e.strategy} {statistics.fmean(table.loc[e.strategy][e.metric]):.3f}) "
            f"-> {verdict} ({agree}/{seeds} seeds)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", action="append", help="scenario preset name (repeatable)")
    parser.add_argument("--epochs", type=int, help="override epochs per task (smaller scale)")
    parser.add_argument("--restarts", type=int, help="override restarts (smaller scale)")
    args = parser.parse_args()
    names = args.only or [n for n in preset_names() if n.startswith("scenario-")]
    print(f"{len(names)} scenario(s), {args.seeds} seed(s), {torch.get_num_threads()} threads")
    start = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        for line in check(name, args.seeds, args.epochs, args.restarts):
            print(line, flush=True)
        print(f"{'':34s} ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
