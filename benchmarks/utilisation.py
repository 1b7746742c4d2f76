"""Cluster utilisation of a study: busy trial-seconds / (wall x slots).

A study with more strategies than slots per strategy (default: 3 strategies x 4 trials,
``concurrency: 1``, 1 CPU per trial, no evaluation) runs on a local 2-node Ray cluster
(``ray.cluster_utils.Cluster``, 1 CPU per node: 2 slots). Every trial's own timestamps (its
reports' ``started_at`` and last ``reported_at``) give the busy trial-seconds; the wall is from
the first trial's start to the last trial's end (``span``), and also the driver's whole
``launch`` call (``driver``, Ray's start-up per experiment included).

It measures whichever ``study`` package is imported, so the same script compares two checkouts::

    PYTHONPATH=/path/to/main python benchmarks/utilisation.py    # before
    PYTHONPATH=. python benchmarks/utilisation.py                # after

Run it on an otherwise idle machine: the trials' durations depend on what else uses the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

STRATEGIES = ("reset", "continuous", "expanded", "shrink_perturb", "redo")


def study_file(args: argparse.Namespace, storage: str) -> dict:
    lr = {"low": 1e-4, "high": 1e-2, "log": True}
    return {
        "name": "utilisation",
        "setting": {
            "dataset": "mnist-5k",
            "model": "mlp-small",
            "restarts": args.restarts,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
        },
        "strategies": {s: {"lr": lr} for s in STRATEGIES[: args.strategies]},
        "budget": {"trials_per_strategy": args.trials, "eval_seeds": args.eval_seeds},
        "resources": {"cpu": 1},
        "concurrency": args.concurrency,
        "storage": storage,
    }


def trial_spans(root: Path) -> list[tuple[float, float]]:
    """(start, end) of every trial of a study folder, from its own reports (either layout)."""
    spans = []
    for result in sorted(root.glob("*/*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            spans.append((rows[0]["started_at"], rows[-1]["reported_at"]))
    return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", type=int, default=3)
    p.add_argument("--trials", type=int, default=4, help="trials per strategy")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--eval-seeds", type=int, default=0)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--nodes", type=int, default=2, help="nodes of 1 CPU each")
    args = p.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    import study
    from study.spec import load_spec

    try:
        from study.commands import launch
    except ImportError:  # a checkout from before the study layer's split (for the figure before)
        from study.driver import launch

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=1)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            cluster.wait_for_nodes()
            spec = load_spec(study_file(args, tmp))
            start = time.time()
            root = Path(launch(spec))
            driver = time.time() - start
        finally:
            ray.shutdown()
            cluster.shutdown()
        spans = trial_spans(root)
    slots = args.nodes
    busy = sum(b - a for a, b in spans)
    span = max(b for _, b in spans) - min(a for a, _ in spans)
    print(f"code: {Path(study.__file__).resolve().parent.parent}")
    print(
        f"study: {args.strategies} strategies x {args.trials} trials (+{args.eval_seeds} eval "
        f"seeds each), concurrency {args.concurrency}, 1 CPU per trial; {slots} nodes x 1 CPU"
    )
    print(f"trials {len(spans)}  busy {busy:.1f} trial-s  most at once {most_at_once(spans)}")
    print(f"span   {span:.1f} s  utilisation {busy / (span * slots):.1%}")
    print(f"driver {driver:.1f} s  utilisation {busy / (driver * slots):.1%}")


if __name__ == "__main__":
    main()
