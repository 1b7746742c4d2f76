"""Time per epoch of each optimizer against Adam's, measured in one process.

    python benchmarks/optimizers.py [--optimizers adam,trac,kron] [--reps 7] [--batch 128]
                                    [--threads 1]

``continuous`` on mlp-small and the embedded mnist-5k (4,000 training images, so 32 steps an
epoch at batch 128, then the test set's evaluation), one run per optimizer, built once. After a
warm-up epoch each, the epochs interleave (adam, trac, kron, adam, ...) so a machine shared with
other jobs slows every optimizer alike; each optimizer's median wall and CPU seconds per epoch
are given with their ratio to Adam's. CPU time (this process's, all threads) is the steadier
figure on a loaded machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from plasticity.config import RunConfig
from plasticity.data import load_dataset
from plasticity.loop import StrategyRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="adam,trac,kron")
    parser.add_argument("--reps", type=int, default=7, help="timed epochs per optimizer")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a trial's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.optimizers.split(",")
    data = load_dataset("mnist-5k")
    runs = {}
    for name in names:
        config = RunConfig(
            model="mlp-small",
            strategies=("continuous",),
            optimizer=name,
            lr=1e-3,
            epochs=args.reps + 1,
            restarts=0,
            batch_size=args.batch,
            device="cpu",
        )
        runs[name] = StrategyRun(config, "continuous", data)
        runs[name].run_epoch()  # warm-up: first-step state, lazy imports
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.reps):
        for name in names:
            w, c = time.perf_counter(), time.process_time()
            runs[name].run_epoch()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    base_wall, base_cpu = statistics.median(wall[names[0]]), statistics.median(cpu[names[0]])
    steps = runs[names[0]].steps_per_epoch
    print(
        f"continuous, mlp-small, mnist-5k, batch {args.batch} ({steps} steps/epoch), "
        f"{args.threads} thread(s), median of {args.reps} interleaved epochs"
    )
    print(
        f"{'optimizer':<10} {'wall s/epoch':>12} {'x ' + names[0]:>8} {'CPU s/epoch':>12} {'x':>7}"
    )
    for name in names:
        mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:<10} {mw:>12.3f} {mw / base_wall:>8.2f} {mc:>12.3f} {mc / base_cpu:>7.2f}")


if __name__ == "__main__":
    main()
