"""A study of many tiny trials: does the driver's cost per trial stay flat as the study grows?

One strategy (reset), mlp-small on mnist-5k, 1 restart x 1 epoch, batch 500, TPE, concurrency 2,
2 evaluation seeds, launched in this process like ``plasticity study launch --no-analysis``, on
a local Ray (``--nodes 1``) or on a local 2-node cluster (``--nodes 2``:
``ray.cluster_utils.Cluster``, two nodes of 1 CPU each on this machine, the study attached to
it by its address). ``--noop``: the trials do not train, they only report (the trainable's
benchmark-only setting ``PLASTICITY_BENCH_NOOP``, see :mod:`study.trainable`), for thousands of
trials. It prints the study's table row and the growth ratios::

    PYTHONPATH=. python benchmarks/scale.py --trials 1000
    PYTHONPATH=. python benchmarks/scale.py --trials 300 --nodes 2
    PYTHONPATH=. python benchmarks/scale.py --trials 5000 --noop

What is counted:
- **driver CPU**: user + system CPU of this process (``getrusage(RUSAGE_SELF)``: every thread
  of the driver, Ray's included), from the launch call to its return. Ray's own processes
  (GCS, raylet, the workers running the trials) are other processes and not counted, nor is
  this process's start-up. A thread samples it every 0.2 s, so the CPU spent while the first
  and the last 100 trials ran gives the **growth ratio** (CPU per trial, last 100 / first 100;
  the trials in the order they ended).
- **between trial starts**: mean gap between consecutive trials' starts (their own
  ``started_at``), over the first and the last fifth of the trials in start order.
- **trainable time**: a trial's last ``reported_at`` minus its ``started_at``, mean over the
  first and the last fifth.
- **status** and **analyze**: wall time of ``plasticity study status`` and ``plasticity
  analyze`` as new processes (their imports included) on the finished study.

The machine's load changes these times: compare figures measured in the same run, or runs on
the same idle machine. It measures whichever ``study`` package is imported (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def study_file(trials: int, storage: str, name: str) -> dict:
    return {
        "name": name,
        "setting": {
            "dataset": "mnist-5k",
            "model": "mlp-small",
            "restarts": 1,
            "epochs": 1,
            "batch_size": 500,
        },
        "strategies": {"reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}},
        "budget": {"trials_per_strategy": trials, "eval_seeds": 2},
        "resources": {"cpu": 1},
        "concurrency": 2,
        "storage": storage,
    }


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU of this process so far (its threads; no child processes)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


class CpuSampler(threading.Thread):
    """(wall time, user + system CPU) of this process every ``every`` seconds."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), sum(cpu_seconds())))
            self.stop.wait(self.every)

    def at(self, t: float) -> float:
        """The CPU used by time ``t`` (the last sample before it)."""
        before = [c for s, c in self.samples if s <= t]
        return before[-1] if before else self.samples[0][1]


def trial_spans(root: Path) -> list[tuple[float, float]]:
    """(started_at, last reported_at) of every trial of a study folder."""
    spans = []
    for result in root.glob("trials/*/result.json"):
        first = last = None
        for line in result.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                first = first or row
                last = row
        if first is not None:
            spans.append((first["started_at"], last["reported_at"]))
    return sorted(spans)


def fifths(values: list[float]) -> tuple[float, float]:
    k = max(1, len(values) // 5)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def folder_size(root: Path) -> tuple[int, int]:
    """(bytes, checkpoint folders) under a study folder."""
    size = folders = 0
    for dirpath, dirnames, filenames in os.walk(root):
        folders += sum(d.startswith("checkpoint_") for d in dirnames)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                size += os.path.getsize(p)
    return size, folders


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def growth(sampler: CpuSampler, spans: list[tuple[float, float]], start: float) -> tuple:
    """Driver CPU per trial while the first 100 and the last 100 trials ended (in end order),
    and their ratio."""
    ends = sorted(b for _, b in spans)
    n = min(100, len(ends) // 2)
    first = (sampler.at(ends[n - 1]) - sampler.at(start)) / n
    last = (sampler.at(ends[-1]) - sampler.at(ends[-n - 1])) / n
    return n, first, last, last / first


def by_tenth(sampler: CpuSampler, spans: list[tuple[float, float]], start: float) -> list[float]:
    """Driver CPU per trial while each tenth of the trials ended (in end order)."""
    ends = sorted(b for _, b in spans)
    k = len(ends) // 10
    marks = [start] + [ends[(i + 1) * k - 1] for i in range(10)]
    return [(sampler.at(b) - sampler.at(a)) / k for a, b in zip(marks, marks[1:])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100, help="search trials (2 evaluations more)")
    p.add_argument("--nodes", type=int, default=1, choices=(1, 2), help="1: a local Ray")
    p.add_argument("--noop", action="store_true", help="trials only report (no training)")
    p.add_argument("--keep", help="storage folder to keep the study in (default: a temporary one)")
    args = p.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.noop:
        os.environ["PLASTICITY_BENCH_NOOP"] = "1"  # Ray's workers inherit it
    import study
    from study import commands
    from study.spec import load_spec

    storage = args.keep or tempfile.mkdtemp(prefix="scale-")
    name = f"scale-{args.trials}{'-noop' if args.noop else ''}-{args.nodes}n"
    spec = load_spec(study_file(args.trials, storage, name))
    cluster = address = None
    if args.nodes == 2:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        address = cluster.address
    sampler = CpuSampler()
    sampler.start()
    cpu0, start = cpu_seconds(), time.time()
    try:
        root = Path(commands.launch(spec, address=address))
    finally:
        wall, cpu1 = time.time() - start, cpu_seconds()
        sampler.stop.set()
        if cluster is not None:
            cluster.shutdown()
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    spans = trial_spans(root)
    starts = [a for a, _ in spans]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    size, checkpoints = folder_size(root)
    cli = [sys.executable, "-m", "plasticity.cli"]
    status_s = timed([*cli, "study", "status", str(root)])
    analyze_s = None
    if not args.noop:
        analyze_s = timed([*cli, "analyze", str(root), "--out", str(root / "analysis")])
    n, first, last, ratio = growth(sampler, spans, start)

    print(f"code: {Path(study.__file__).resolve().parent.parent}   study: {root}")
    print(
        "| trials | nodes | wall | driver CPU (user + sys) | between trial starts, first → "
        "last fifth | trainable time, first → last fifth | study folder | checkpoint folders "
        "| `study status` | `analyze` |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    g0, g1 = fifths(gaps)
    t0, t1 = fifths([b - a for a, b in spans])
    analyzed = "–" if analyze_s is None else f"{analyze_s:.1f} s"
    print(
        f"| {len(spans):,}{' no-op' if args.noop else ''} | {args.nodes} | {wall:.0f} s "
        f"| {user:.0f} + {system:.0f} s | {g0:.2f} → {g1:.2f} s | {t0:.2f} → {t1:.2f} s "
        f"| {size / 1e9:.2f} GB | {checkpoints:,} | {status_s:.1f} s | {analyzed} |"
    )
    print(
        f"driver CPU per trial: {(user + system) / len(spans):.3f} s overall; first {n} trials "
        f"{first:.3f} s, last {n} {last:.3f} s: growth x{ratio:.2f}"
    )
    tenths = " ".join(f"{c:.3f}" for c in by_tenth(sampler, spans, start))
    print(f"driver CPU per trial, by tenth of the trials: {tenths} s")


if __name__ == "__main__":
    main()
