"""Start-up: what ``plasticity run`` spends before its first epoch, step by step.

    python benchmarks/startup.py [--reps 3]

Steps, each timed in a new Python process (median of ``--reps``): ``import torch``; the
command's own imports (``plasticity.cli`` and what ``plasticity run`` imports before
training); loading ``mnist-5k``; building the three strategies' networks and optimizers. The
last line is the whole ``plasticity run`` process for one epoch of ``mlp-small`` (batch 4000:
one step), so start-up is nearly all of it. Compare its parts with each other, not across
machines.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

STEPS = {
    "import torch": ("", "import torch"),
    "plasticity imports": (
        "import torch",
        "import plasticity.cli, plasticity.loop, plasticity.metrics, pandas, pyarrow.parquet",
    ),
    "load mnist-5k": (
        "from plasticity.data import load_dataset",
        "load_dataset('mnist-5k')",
    ),
    "three strategies' networks": (
        "from plasticity.config import RunConfig\n"
        "from plasticity.loop import StrategyRun\n"
        "from plasticity.data import load_dataset\n"
        "d = load_dataset('mnist-5k')\n"
        "c = RunConfig(dataset='mnist-5k', strategies=('reset', 'continuous', 'expanded'))",
        "[StrategyRun(c, s, d) for s in c.strategies]",
    ),
}
TIMER = """
import time
{setup}
t = time.perf_counter()
{stmt}
print(time.perf_counter() - t)
"""


def step_seconds(setup: str, stmt: str) -> float:
    code = TIMER.format(setup=setup, stmt=stmt)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def whole_run() -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "plasticity.cli", "run", "--model", "mlp-small",
             "--restarts", "0", "--epochs", "1", "--batch-size", "4000", "--out", out],
            capture_output=True, check=True,
        )  # fmt: skip
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for name, (setup, stmt) in STEPS.items():
        times = [step_seconds(setup, stmt) for _ in range(args.reps)]
        print(f"{name:28s} {statistics.median(times):6.2f} s", flush=True)
    times = [whole_run() for _ in range(args.reps)]
    print(f"{'whole plasticity run, 1 step':28s} {statistics.median(times):6.2f} s")


if __name__ == "__main__":
    main()
