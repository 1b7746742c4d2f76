"""Speed of the restart loop: strategy-epochs per second, and the MLP's share of matmul peak.

Unit of work (issue 2): one strategy-epoch = train one epoch on the 4,000 ``mnist-5k`` training
images with batch 8192, then evaluate on the 1,000 test images. All three strategies (reset,
continuous, expanded) over task 0 + 2 restarts x 10 epochs = 90 strategy-epochs per model.

The paper's code does 70 such strategy-epochs in 67.9 s (MLP) and 58.2 s (CNN) on a 2-core
machine: 1.03 and 1.20 strategy-epochs/s. Targets: MLP >= 1.4x that rate and >= 75% of this
machine's float32 matmul peak (measured here, same process); CNN >= 2.5x.

    python benchmarks/loop_speed.py [--device cpu|cuda] [--models mlp,cnn]

FLOPs are counted analytically for the MLP (2 per multiply-add): forward, weight gradient and
input gradient (none for the first layer) on the training images, the frozen old part's
forward while the expanded model blends, and the forward pass of evaluation.
"""

from __future__ import annotations

import argparse
import time

import torch

from plasticity.config import RunConfig
from plasticity.loop import iter_experiment, prepare
from plasticity.models import architecture

PAPER_RATE = {"mlp": 70 / 67.9, "cnn": 70 / 58.2}
TARGET = {"mlp": 1.4, "cnn": 2.5}


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


def mlp_flops(records, config: RunConfig, n_train: int, n_test: int) -> float:
    """Analytic FLOPs of the MLP work behind ``records`` (see module docstring)."""
    spec = architecture(config.model, config.dataset)
    dims = [784, *spec.hidden, 10]
    macs = [i * o for i, o in zip(dims, dims[1:])]
    total = 0.0
    base = records[0].params
    for r in records:
        train = n_train * (6 * sum(macs) - 2 * macs[0])
        evaluation = n_test * 2 * sum(macs)
        if r.params > base:  # expanded, old part present: one more forward pass, train and eval
            train += n_train * 2 * sum(macs)
            evaluation += n_test * 2 * sum(macs)
        total += train + evaluation
    return total


def bench(model: str, device: str) -> dict[str, float]:
    config = RunConfig(
        model=model, dataset="mnist-5k", restarts=2, epochs=10, batch_size=8192, device=device
    )
    data = prepare(config)
    # warm-up (one-time costs: thread pools, allocator), not timed
    list(iter_experiment(config.replace(restarts=1, epochs=1), data))
    start = time.perf_counter()
    records = list(iter_experiment(config, data))
    elapsed = time.perf_counter() - start
    out = {"strategy_epochs": len(records), "seconds": elapsed, "rate": len(records) / elapsed}
    out["speedup_vs_paper"] = out["rate"] / PAPER_RATE[model]
    if model == "mlp":
        out["gflops"] = mlp_flops(records, config, len(data.train), len(data.test)) / elapsed / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="mlp,cnn")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    peak = matmul_peak(device)
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s")
    for model in args.models.split(","):
        r = bench(model, args.device)
        line = (
            f"{model}: {r['strategy_epochs']} strategy-epochs in {r['seconds']:.1f} s = "
            f"{r['rate']:.2f}/s, {r['speedup_vs_paper']:.2f}x the paper's code "
            f"(target {TARGET[model]}x)"
        )
        if "gflops" in r:
            line += f"; {r['gflops']:.1f} GFLOP/s = {100 * r['gflops'] / peak:.0f}% of matmul peak"
        print(line)


if __name__ == "__main__":
    main()
