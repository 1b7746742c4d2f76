"""Speed of the restart loop against a bare PyTorch loop of the same work, timed in one run.

    python benchmarks/loop_speed.py [--models mlp,cnn] [--reps 3] [--device cpu|cuda]
                                    [--restarts 2] [--epochs 10] [--batch 8192]

Every figure is a ratio to a reference measured in the same process, so it holds on any
machine (the CPU behind a machine changes from day to day):

* **overhead**: the restart loop (``plasticity.loop.iter_experiment``, one strategy,
  ``continuous``: task 0 + R restarts x E epochs on ``mnist-5k``, records, task changes and all)
  against a **bare loop** of the same network (``network_factory``, same seed), optimizer
  (``make_optimizer``, the paper's Adam), images, batch and epochs: float images made once,
  slices of B, forward / cross-entropy / backward / step, then the test images evaluated under
  inference mode after every epoch, as the restart loop does. Target: at most 10% (MLP and CNN).
* **MLP share of matmul peak**: analytic FLOPs of the restart loop's MLP work (2 per
  multiply-add: forward, weight and input gradients, evaluation) over its time, against the
  best float32 square matmul this process measures. Target: at least 80%.

Repetitions interleave (bare, loop, bare, loop, ...) and each side's median is used, so a
machine shared with other jobs slows both sides alike. Both run under the allocator settings
that every training process gets (``plasticity.allocator``); ``--malloc-system`` turns them
off for the whole run (compare two runs' ratios, not their seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from plasticity.config import RunConfig
from plasticity.data import Dataset
from plasticity.loop import iter_experiment, prepare
from plasticity.models import architecture, network_factory
from plasticity.optim import make_optimizer

TARGET_OVERHEAD = 0.10
TARGET_PEAK = 0.80


def matmul_peak(device: torch.device, seconds: float = 3.0) -> float:
    """Best float32 GFLOP/s of square matmuls (sizes 1024..4096) on ``device``."""
    best = 0.0
    for n in (1024, 2048, 3136, 4096):
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        torch.mm(a, b)  # warm-up
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            torch.mm(a, b)
            reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def mlp_flops(config: RunConfig, n_train: int, n_test: int) -> float:
    """Analytic FLOPs of ``config``'s MLP work for one strategy without an old part."""
    spec = architecture(config.model, config.dataset)
    dims = [784, *spec.hidden, 10]
    macs = [i * o for i, o in zip(dims, dims[1:])]
    per_epoch = n_train * (6 * sum(macs) - 2 * macs[0]) + n_test * 2 * sum(macs)
    return per_epoch * (config.restarts + 1) * config.epochs


def bare_loop(config: RunConfig, data: Dataset) -> float:
    """Seconds of the bare loop (see the module docstring)."""
    net = network_factory(config.model, config.dataset, config.seed, data.device)(0)
    opt = make_optimizer(config, list(net.parameters()))
    x_train, y_train = data.prepare(data.train.x), data.train.y
    x_test, y_test = data.prepare(data.test.x), data.test.y
    _sync(data.device)
    start = time.perf_counter()
    for _ in range((config.restarts + 1) * config.epochs):
        for lo in range(0, len(y_train), config.batch_size):
            loss = F.cross_entropy(
                net(x_train[lo : lo + config.batch_size]), y_train[lo : lo + config.batch_size]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.inference_mode():
            logits = net(x_test)
            (F.cross_entropy(logits, y_test) + (logits.argmax(1) == y_test).sum()).item()
    _sync(data.device)
    return time.perf_counter() - start


def restart_loop(config: RunConfig, data: Dataset) -> float:
    """Seconds of the restart loop for the same work."""
    _sync(data.device)
    start = time.perf_counter()
    records = list(iter_experiment(config, data))
    _sync(data.device)
    assert len(records) == (config.restarts + 1) * config.epochs
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(model: str, args: argparse.Namespace) -> dict[str, float]:
    config = RunConfig(
        model=model,
        dataset="mnist-5k",
        strategies=["continuous"],
        restarts=args.restarts,
        epochs=args.epochs,
        batch_size=args.batch,
        device=args.device,
    )
    data = prepare(config)
    warm = config.replace(restarts=0, epochs=1)  # one-time costs (thread pools, heap), untimed
    bare_loop(warm, data)
    restart_loop(warm, data)
    bare, loop = [], []
    for _ in range(args.reps):
        bare.append(bare_loop(config, data))
        loop.append(restart_loop(config, data))
    out = {
        "epochs": (config.restarts + 1) * config.epochs,
        "bare": statistics.median(bare),
        "loop": statistics.median(loop),
    }
    out["overhead"] = out["loop"] / out["bare"] - 1
    if model == "mlp":
        out["gflops"] = mlp_flops(config, len(data.train), len(data.test)) / out["loop"] / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--malloc-system", action="store_true", help="glibc's malloc defaults")
    args = parser.parse_args()
    if args.malloc_system:
        os.environ["PLASTICITY_MALLOC"] = "system"
    from plasticity.allocator import keep_freed_memory

    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
        f"allocator settings: {keep_freed_memory()}"
    )
    peak = matmul_peak(device)
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s")
    worst = 0.0
    for model in args.models.split(","):
        r = bench(model, args)
        line = (
            f"{model}: {r['epochs']} epochs, batch {args.batch}, median of {args.reps}: "
            f"bare loop {r['bare']:.2f} s, restart loop {r['loop']:.2f} s, "
            f"overhead {100 * r['overhead']:+.1f}% (target <= {100 * TARGET_OVERHEAD:.0f}%)"
        )
        if "gflops" in r:
            line += (
                f"; {r['gflops']:.1f} GFLOP/s = {100 * r['gflops'] / peak:.0f}% of matmul peak "
                f"(target >= {100 * TARGET_PEAK:.0f}%)"
            )
        print(line, flush=True)
        worst = max(worst, r["overhead"])
    sys.exit(0 if worst <= TARGET_OVERHEAD else 1)


if __name__ == "__main__":
    main()
