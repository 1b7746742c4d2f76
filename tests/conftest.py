"""Shared tiny data: a real-MNIST slice small enough for unit tests to train in milliseconds."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from plasticity.config import RunConfig
from plasticity.conformance import tiny_data
from plasticity.data import Dataset, load_dataset

# `plasticity run` flags for a run that finishes in about a second.
TINY_RUN_ARGS = [
    "--model",
    "mlp-small",
    "--restarts",
    "1",
    "--epochs",
    "2",
    "--batch-size",
    "1000",
    "--device",
    "cpu",
]


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    """The embedded 4,000/1,000 real-MNIST subset on the CPU."""
    return load_dataset("mnist-5k")


@pytest.fixture(scope="session")
def tiny(mnist5k: Dataset) -> Dataset:
    """512 training and 256 test images of real MNIST: what the conformance kit trains on."""
    return tiny_data(mnist5k)


@pytest.fixture
def tiny_config() -> RunConfig:
    """A run that takes well under a second on ``tiny``: 3 tasks x 3 epochs, 4 steps/epoch."""
    return RunConfig(
        model="mlp-small",
        restarts=2,
        epochs=3,
        batch_size=128,
        lr=1e-3,
        device="cpu",
        strategy_params={"expanded": {"schedule": "linear", "alpha0": 0.25, "ramp": 2}},
    )


def optimizer_param_ids(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in opt.param_groups for p in group["params"]}
