"""Time per epoch of each intervention against a reference's, measured in one process.

    python benchmarks/interventions.py [--runs reset,continuous,l2,nap,...] [--reps 7]
                                       [--batch 16] [--hidden 100,100] [--threads 1]

A run is ``STRATEGY`` (with the setting's Adam), ``STRATEGY@OPTIMIZER`` (e.g. ``continuous@trac``,
``continuous@kron``) or ``STRATEGY+ln`` (the ``norm: layer`` factor, LayerNorm); the first run
is the reference. The default is issue 22's list: every intervention against ``reset``, at the
protocol presets' shape (``permute_inputs`` on the embedded mnist-5k, 4,000 training images, an
MLP of the ``--hidden`` widths, one epoch per task, so every timed epoch crosses a task boundary
and includes the strategy's boundary work, then the test set's evaluation). Each run is built
once; after a warm-up epoch each, the epochs interleave (reset, continuous, ..., reset, ...) so
a machine shared with other jobs slows every run alike; each run's median wall and CPU seconds
per epoch are given with their ratio to the reference's. CPU time (this process's, all threads)
is the steadier figure on a loaded machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from plasticity.config import RunConfig
from plasticity.data import load_dataset
from plasticity.loop import StrategyRun

DEFAULT_RUNS = (
    "reset,continuous,l2,continuous+ln,nap,parseval,fourier,continuous@trac,continuous@kron"
)


def config_of(run: str, args: argparse.Namespace) -> tuple[str, RunConfig]:
    """The strategy and run config that ``run`` (``STRATEGY[@OPTIMIZER][+ln]``) names."""
    name, norm = (run[: -len("+ln")], "layer") if run.endswith("+ln") else (run, "none")
    strategy, _, optimizer = name.partition("@")
    return strategy, RunConfig(
        model="mlp",
        hidden=tuple(int(w) for w in args.hidden.split(",")),
        norm=norm,
        objective="permute_inputs",
        strategies=(strategy,),
        optimizer=optimizer or "adam",
        lr=1e-3,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        epochs=1,
        restarts=args.reps + 1,
        batch_size=args.batch,
        shuffle=True,
        device="cpu",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=DEFAULT_RUNS)
    parser.add_argument("--reps", type=int, default=7, help="timed epochs per run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", default="100,100", help="hidden widths of the MLP")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a trial's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.runs.split(",")
    data = load_dataset("mnist-5k")
    runs = {}
    for name in names:
        strategy, config = config_of(name, args)
        runs[name] = StrategyRun(config, strategy, data)
        runs[name].run_epoch()  # warm-up: task 0, first-step state, lazy imports
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
        f"permute_inputs, mlp {args.hidden}, mnist-5k, batch {args.batch} ({steps} steps/epoch, "
        f"one epoch per task), {args.threads} thread(s), median of {args.reps} interleaved epochs"
    )
    width = max(len(n) for n in names) + 2
    ref = "x " + names[0]
    print(f"{'run':<{width}} {'wall s/epoch':>12} {ref:>10} {'CPU s/epoch':>12} {'x':>7}")
    for name in names:
        mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
        ratios = f"{mw / base_wall:>10.2f} {mc:>12.3f} {mc / base_cpu:>7.2f}"
        print(f"{name:<{width}} {mw:>12.3f} {ratios}")


if __name__ == "__main__":
    main()
