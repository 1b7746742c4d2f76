"""Ray's overhead: the same trials through a study versus without Ray.

Launches a study (one strategy, N trials of the paper's MLP on mnist-5k, 1 CPU per trial and
as many trials at once as there are cores), then re-runs exactly those trial configurations
with ``plasticity``'s loop, without Ray, in two ways that use the same cores:

- *in-process*: one after another in this process, each trial using every core;
- *same layout*: as many new processes as cores (spawned, so each imports torch and
  plasticity as a Ray worker does), 1 thread each, taking the next trial as one ends. This is
  the study without Ray, so its difference is Ray's overhead alone (the in-process run also
  differs in how well torch spreads one trial over several threads, which varies by CPU).

The study's wall time includes Ray's start-up, scheduling, reporting and checkpointing:
everything a user waits for. ``--reps`` repeats the three, interleaved (the baselines' order
alternating), and the headline is the median of each rep's own ratio. Each rep's extra time
over the same layout is split into slower epochs (the records' epoch seconds, summed over
the trials and divided by the cores: Ray's own processes share the cores) and the rest.

    python benchmarks/ray_overhead.py [--trials 4] [--epochs 6] [--restarts 2] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _run_trial(config: dict[str, Any]) -> list[float]:
    """One trial's restart loop, as a study's trial runs it (in a spawned process); its
    epochs' seconds."""
    from plasticity.allocator import keep_freed_memory
    from plasticity.config import RunConfig
    from plasticity.loop import run_experiment

    keep_freed_memory()  # as the trainable does (study.trainable); no ray.tune import here
    run = config["run"]
    records = run_experiment(RunConfig.from_dict({**run, "device": "cpu"}))
    return [r.seconds for r in records]


def same_layout(configs: list[dict[str, Any]], cores: int) -> float:
    """Seconds for ``configs`` in ``cores`` new processes of 1 thread each, started here
    (:data:`EPOCHS` gets their epochs' seconds)."""
    start = time.perf_counter()
    seconds = []
    with multiprocessing.get_context("spawn").Pool(cores, initializer=_one_thread) as pool:
        for epochs in pool.imap_unordered(_run_trial, configs):
            seconds += epochs
    EPOCHS["same layout"].append(seconds)
    return time.perf_counter() - start


EPOCHS: dict[str, list[list[float]]] = {"study": [], "same layout": []}
"""Per rep, every epoch's seconds (the records' ``seconds``: the epoch's training and
evaluation, without reports or checkpoints) in the study and in the same layout."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runs = {"study": [], "in-process": [], "same layout": []}
    for rep in range(args.reps):
        configs, study_s, init_s, breakdown = run_study(args, cores)
        runs["study"].append(study_s)
        # the baselines in turn first: this machine's speed drifts within minutes, and a
        # baseline always run right after the study would always see the same part of a drift
        baselines = [("same layout", same_layout), ("in-process", in_process)]
        for name, run in baselines[:: 1 if rep % 2 == 0 else -1]:
            runs[name].append(run(configs, cores))
        print(
            f"rep {len(runs['study'])}: study {study_s:.1f} s (Ray start-up {init_s:.1f} s), "
            f"in-process {runs['in-process'][-1]:.1f} s, same layout "
            f"{runs['same layout'][-1]:.1f} s",
            flush=True,
        )
    report(args, cores, len(configs), runs, init_s, breakdown)


def run_study(args: argparse.Namespace, cores: int) -> tuple[list, float, float, str]:
    """The study's trial configs, its wall seconds and Ray's start-up seconds (both timed
    from before ``ray.init`` to after ``ray.shutdown``), and where its time went."""
    from study.commands import launch
    from study.driver.ray_setup import init_ray
    from study.spec import load_spec

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(
            {
                "name": "overhead",
                "setting": {
                    "dataset": "mnist-5k",
                    "model": args.model,
                    "restarts": args.restarts,
                    "epochs": args.epochs,
                },
                "strategies": {"reset": {"lr": {"low": 3e-4, "high": 3e-3, "log": True}}},
                "budget": {"trials_per_strategy": args.trials, "eval_seeds": 0},
                "resources": {"cpu": 1},
                "concurrency": cores,
                "storage": tmp,
            }
        )
        import ray

        start, began = time.perf_counter(), time.time()
        init_ray(None, include_dashboard=False)  # as launch does
        init_s = time.perf_counter() - start
        try:
            root = Path(launch(spec))
        finally:
            ray.shutdown()
        study_s = time.perf_counter() - start
        ended = time.time()
        configs = [
            json.loads(p.read_text())
            for p in sorted(root.glob("*/*/params.json"))  # trials/ (or search-reset/ before)
        ]
        spans = []  # each trial's (first report's started_at, last report's reported_at)
        seconds = []
        for result in root.glob("*/*/result.json"):
            rows = [json.loads(line) for line in result.read_text().splitlines() if line]
            spans.append((rows[0]["started_at"], rows[-1]["reported_at"]))
            seconds += [r["seconds"] for r in rows]
        EPOCHS["study"].append(seconds)
    busy = sum(end - begin for begin, end in spans)
    breakdown = (
        f"Ray start-up {init_s:.1f} s; first trial began "
        f"{min(b for b, _ in spans) - began - init_s:.1f} s later (driver set-up, worker start, "
        f"imports); trials {busy / len(spans):.1f} s each on 1 thread, {cores} at once (from "
        f"their start: data, networks, epochs, reports, checkpoints); "
        f"{ended - max(e for _, e in spans):.1f} s after the last report (final views, "
        f"ray.shutdown)"
    )
    return configs, study_s, init_s, breakdown


def in_process(configs: list[dict[str, Any]], cores: int) -> float:
    """Seconds for ``configs`` one after another in one new process of ``cores`` threads."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_run_all, (configs, cores))
    return time.perf_counter() - start


def _run_all(configs: list[dict[str, Any]], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    for config in configs:
        _run_trial(config)


def report(args, cores: int, trials: int, runs: dict, init_s: float, breakdown: str) -> None:
    epochs = trials * (args.restarts + 1) * args.epochs
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"{trials} trials x {(args.restarts + 1) * args.epochs} epochs ({args.model}, "
        f"mnist-5k), {cores} cores; medians of {args.reps} interleaved rep(s)"
    )
    print(
        f"Ray Tune study ({cores} trials at once, 1 CPU each): {med['study']:.1f} s "
        f"({epochs / med['study']:.2f} strategy-epochs/s)"
    )
    print(
        f"same layout without Ray ({cores} new processes, 1 thread each): "
        f"{med['same layout']:.1f} s"
    )
    print(f"in-process, one after another ({cores} threads): {med['in-process']:.1f} s")
    print(f"  where the study's time went (last rep): {breakdown}")
    for i, (ray, plain) in enumerate(zip(EPOCHS["study"], EPOCHS["same layout"]), 1):
        gap = runs["study"][i - 1] - runs["same layout"][i - 1]
        slower = (sum(ray) - sum(plain)) / cores
        print(
            f"  rep {i}: median epoch {statistics.median(ray):.3f} s in Ray's workers vs "
            f"{statistics.median(plain):.3f} s in the same layout "
            f"({100 * (statistics.median(ray) / statistics.median(plain) - 1):+.1f}%); of the "
            f"study's {gap:+.1f} s over the same layout, {slower:+.1f} s is slower epochs "
            f"(summed, / {cores} cores) and {gap - slower:+.1f} s the rest (start-up, reports, "
            "checkpoints, scheduling, shutdown)"
        )
    for name in ("same layout", "in-process"):
        # each rep's study against that rep's baseline (the pairs share the machine's speed
        # of the moment better than medians across reps do)
        ratios = [s / b - 1 for s, b in zip(runs["study"], runs[name])]
        print(
            f"overhead over {name}: median of the reps' ratios "
            f"{100 * statistics.median(ratios):+.1f}% "
            f"(reps: {', '.join(f'{100 * r:+.1f}%' for r in ratios)}); ratio of the medians "
            f"{100 * (med['study'] / med[name] - 1):+.1f}%, without Ray's start-up "
            f"({init_s:.1f} s, last rep) {100 * ((med['study'] - init_s) / med[name] - 1):+.1f}%"
        )


if __name__ == "__main__":
    main()
