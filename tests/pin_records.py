"""Writes tests/data/pinned_records.json: the initial weights of the default networks (a digest)
and the records of a tiny run, with diagnostics, of the strategies that walk hidden units
(:data:`PINNED`), which ``test_models.py`` checks the current code against.

Run once on the commit before a change that must not move the default numbers; the file names
that commit. ``PYTHONPATH=. python tests/pin_records.py``
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import torch

from plasticity.config import RunConfig
from plasticity.data import Dataset, Split, load_dataset
from plasticity.loop import StrategyRun, TaskSequence
from plasticity.models import network_factory

OUT = Path(__file__).parent / "data" / "pinned_records.json"
# Parameters that make every strategy act within 2 tasks x 2 epochs of 4 steps.
PARAMS = {
    "expanded": {"schedule": "linear", "alpha0": 0.25, "ramp": 2},
    "redo": {"every": 1, "tau": 0.1},
    "cbp": {"rate": 0.05, "maturity": 2},
}
# (model, dataset) -> strategies whose records are pinned: those that walk hidden units or build
# other widths (redo, cbp, crelu), on an MLP and on a CNN (channels feeding a Flatten).
PINNED = {("mlp-small", "mnist-5k"): ("redo", "cbp", "crelu"), ("cnn", "mnist-5k"): ("cbp",)}
DIGESTS = (("mlp-small", "mnist-5k"), ("mlp", "mnist-5k"), ("cnn", "mnist-5k"), ("cnn", "cifar10"))
KEYS = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "alpha", "params")


def tiny_data() -> Dataset:
    """conftest's ``tiny``: 512 training and 256 test images of real MNIST."""
    d = load_dataset("mnist-5k")
    return Dataset(
        d.info,
        Split(d.train.x[:512].clone(), d.train.y[:512].clone()),
        Split(d.test.x[:256].clone(), d.test.y[:256].clone()),
    )


def config(model: str, strategies: tuple[str, ...]) -> RunConfig:
    return RunConfig(
        model=model,
        strategies=strategies,
        restarts=1,
        epochs=1,
        batch_size=128,
        lr=1e-3,
        device="cpu",
        diagnostics=True,
        strategy_params={s: PARAMS[s] for s in strategies if s in PARAMS},
    )


def weights_digest(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def records(model: str, strategies: tuple[str, ...], data: Dataset) -> dict:
    cfg = config(model, strategies)
    tasks = TaskSequence(cfg.objective, data, cfg.seed, cfg.restarts)
    out: dict = {}
    for s in cfg.strategies:
        run = StrategyRun(cfg, s, data, tasks)
        rows = []
        while not run.done:
            r = run.run_epoch().to_dict()
            rows.append({k: v for k, v in r.items() if k in KEYS or k.startswith("diag_")})
        out[s] = rows
    return out


def main() -> None:
    data = tiny_data()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    pinned = {
        "commit": commit,
        "initial_weights_sha256": {
            f"{m}/{d}": weights_digest(network_factory(m, d, 0)(0)) for m, d in DIGESTS
        },
        "records": {m: records(m, s, data) for (m, _), s in PINNED.items()},
    }
    OUT.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
