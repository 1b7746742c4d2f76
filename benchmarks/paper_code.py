"""The paper's own code and ``plasticity run`` on the same work, timed in the same run.

    git clone https://github.com/yyexela/CSE599_Project /tmp/paper   # the paper's code
    python benchmarks/paper_code.py --paper-repo /tmp/paper [--models cnn,mlp] [--reps 2]

Both read the same 4,000 training / 1,000 test images (mnist-5k, written once as torchvision's
MNIST idx files into a scratch folder that both load through ``torchvision.datasets.MNIST``),
class shuffle, batch 8192, task 0 + 2 restarts x 10 epochs on the CPU, each as a whole process
(imports, data, training, its own outputs). The paper's code trains 70 strategy-epochs (its
task 0 trains one network; each restart trains three); ``plasticity run`` trains 90 (reset,
continuous, expanded through every task). The figure is the ratio of strategy-epochs per
second, measured with repetitions interleaved (paper, ours, paper, ours, ...) and each side's
median, so a machine shared with other jobs slows both alike. Target (issue 12): CNN >= 2.5x.
The paper's code is not part of this repository; point ``--paper-repo`` at a checkout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from plasticity.data import load_dataset

RESTARTS, EPOCHS, BATCH = 2, 10, 8192
PAPER_EPOCHS = EPOCHS + 3 * RESTARTS * EPOCHS  # 70
OUR_EPOCHS = 3 * (RESTARTS + 1) * EPOCHS  # 90
PAPER_LR = {"cnn": 0.01, "mlp": 0.001}  # MNIST (DESIGN.md)


def write_mnist(root: Path) -> None:
    """mnist-5k as torchvision's raw MNIST files (uncompressed idx: torchvision then does not
    try to download)."""
    data = load_dataset("mnist-5k")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", data.train), ("t10k", data.test)):
        for kind, array, magic in (
            ("images-idx3", split.x.numpy().reshape(-1, 28, 28), 0x803),
            ("labels-idx1", split.y.numpy(), 0x801),
        ):
            with open(raw / f"{prefix}-{kind}-ubyte", "wb") as f:
                f.write(struct.pack(">I", magic))
                f.writelines(struct.pack(">I", d) for d in array.shape)
                f.write(np.asarray(array, dtype=np.uint8).tobytes())


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        sys.exit(f"{' '.join(cmd[:3])} … failed: {tail}")
    return time.perf_counter() - start


def paper_cmd(model: str) -> list[str]:
    return [
        sys.executable, "-u", "project.py", "--device=cpu", "--dataset=MNIST",
        f"--model={model.upper()}", f"--restarts={RESTARTS}", f"--epochs={EPOCHS}",
        f"--batch_size={BATCH}", "--new_labels=shuffle_class",
        f"--learning_rate={PAPER_LR[model]}", "--top_dir=bench",
    ]  # fmt: skip


def our_cmd(model: str, data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "plasticity.cli", "run", "--model", model, "--dataset", "mnist",
        "--data-dir", str(data), "--task", "class_shuffle", "--restarts", str(RESTARTS),
        "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
        "--strategies", "reset,continuous,expanded", "--out", str(out),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-repo", type=Path, required=True)
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    if not (args.paper_repo / "project.py").is_file():
        sys.exit(f"{args.paper_repo} is not a checkout of the paper's code (no project.py)")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        paper = scratch / "paper"
        shutil.copytree(args.paper_repo, paper, ignore=shutil.ignore_patterns(".git"))
        write_mnist(paper / "Datasets")  # where its code looks: ./Datasets/MNIST/raw
        for model in args.models.split(","):
            theirs, ours = [], []
            for rep in range(args.reps):
                shutil.rmtree(paper / "bench", ignore_errors=True)
                theirs.append(timed(paper_cmd(model), paper))
                out = scratch / f"ours-{model}-{rep}"
                ours.append(timed(our_cmd(model, paper / "Datasets", out), Path.cwd()))
            t, o = statistics.median(theirs), statistics.median(ours)
            print(
                f"{model}: paper's code {PAPER_EPOCHS} strategy-epochs in {t:.1f} s "
                f"({PAPER_EPOCHS / t:.2f}/s); plasticity run {OUR_EPOCHS} in {o:.1f} s "
                f"({OUR_EPOCHS / o:.2f}/s): {(OUR_EPOCHS / o) / (PAPER_EPOCHS / t):.2f}x its rate "
                f"(median of {args.reps}, interleaved)",
                flush=True,
            )


if __name__ == "__main__":
    main()
