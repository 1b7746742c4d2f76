"""Ray's overhead: the same trials through a study versus in-process, one after another.

Launches a study (one strategy, N trials of the paper's MLP on mnist-5k, 1 CPU per trial and
as many trials at once as there are cores), then re-runs exactly those trial configurations
in-process with ``plasticity``'s loop, one after another, each using every core. Both use the
same total cores. The study's wall time includes Ray's start-up, scheduling, reporting and
checkpointing: everything a user waits for.

    python benchmarks/ray_overhead.py [--trials 4] [--epochs 6] [--restarts 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from plasticity.loop import run_experiment
from study.driver import init_ray, launch
from study.spec import load_spec
from study.trainable import to_run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--model", default="mlp")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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
        for result in root.glob("*/*/result.json"):
            rows = [json.loads(line) for line in result.read_text().splitlines() if line]
            spans.append((rows[0]["started_at"], rows[-1]["reported_at"]))

    torch.set_num_threads(cores)
    start = time.perf_counter()
    for config in configs:
        run_experiment(to_run_config(config))
    inproc_s = time.perf_counter() - start
    epochs = len(configs) * (args.restarts + 1) * args.epochs
    print(
        f"{len(configs)} trials x {(args.restarts + 1) * args.epochs} epochs ({args.model}, "
        f"mnist-5k), {cores} cores"
    )
    print(
        f"in-process, one after another ({cores} threads each): {inproc_s:.1f} s "
        f"({epochs / inproc_s:.2f} strategy-epochs/s)"
    )
    print(
        f"Ray Tune study ({cores} trials at once, 1 CPU each): {study_s:.1f} s "
        f"({epochs / study_s:.2f} strategy-epochs/s)"
    )
    busy = sum(end - begin for begin, end in spans)
    print(
        f"  where the study's time went: Ray start-up {init_s:.1f} s; first trial's first "
        f"epoch began {min(b for b, _ in spans) - began - init_s:.1f} s later (driver set-up, "
        f"worker start, imports, data); trials busy {busy:.1f} trial-s from their first epoch "
        f"({busy / len(spans):.1f} s each; in-process {inproc_s / len(configs):.1f} s each with "
        f"{cores} threads); {ended - max(e for _, e in spans):.1f} s after the last report"
    )
    print(
        f"overhead: {100 * (study_s / inproc_s - 1):+.1f}% "
        f"(of which Ray start-up {init_s:.1f} s; without it "
        f"{100 * ((study_s - init_s) / inproc_s - 1):+.1f}%)"
    )


if __name__ == "__main__":
    main()
