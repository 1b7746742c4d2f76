"""The typed run configuration, validated once where input enters (CLI, study file, trainable).

Below this boundary code trusts its arguments. ``RunConfig.to_dict()`` is what ``config.json``
holds; ``RunConfig.from_dict()`` reads it back (unknown keys are an error, not ignored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from plasticity import strategies
from plasticity.data import DATASETS
from plasticity.errors import UserError
from plasticity.models import MODELS, PAPER_LR
from plasticity.objectives import OBJECTIVES


@dataclass(frozen=True)
class RunConfig:
    """One experiment: a task sequence, the strategies trained through it, and how."""

    dataset: str = "mnist-5k"
    """mnist-5k (embedded, offline), mnist or cifar10 (torchvision)."""
    data_dir: str | None = None
    """Where torchvision datasets live (default $PLASTICITY_DATA or ~/.cache/plasticity/data)."""
    download: bool = False
    """Allow downloading a missing torchvision dataset."""
    model: str = "mlp"
    """mlp or cnn (the paper's, sized for the dataset) or mlp-small."""
    objective: str = "class_shuffle"
    """How each restart changes the labels: none, class_shuffle, full_shuffle, random_labels,
    permute_inputs."""
    strategies: tuple[str, ...] = ("reset", "continuous", "expanded")
    """Strategies to compare; all see the same task sequence."""
    restarts: int = 2
    """Objective changes after task 0 (tasks are 0..restarts)."""
    epochs: int = 10
    """Epochs per task."""
    batch_size: int = 8192
    """Minibatch size (the paper's 8192)."""
    lr: float | None = None
    """Adam learning rate; None takes the paper's for the model and dataset."""
    betas: tuple[float, float] = (0.9, 0.9)
    """Adam betas (the paper's code: 0.9, 0.9)."""
    eps: float = 1e-9
    """Adam epsilon (the paper's code)."""
    weight_decay: float = 1e-3
    """Adam (L2) weight decay; the paper's text says 0.9, its code uses 1e-3."""
    shuffle: bool = False
    """Shuffle the training set every epoch (the paper does not)."""
    seed: int = 0
    """Seeds the initial networks, the task sequence and the batch order."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    deterministic: bool = True
    """Use deterministic kernels (same seed, same numbers)."""
    diagnostics: bool = False
    """Record plasticity diagnostics every epoch (dormant units, ranks, norms; costs a probe
    forward pass and an SVD per epoch, and a gradient norm per step)."""
    strategy_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-strategy hyperparameters, e.g. {"expanded": {"schedule": "cosine"}}."""

    def __post_init__(self) -> None:
        for name, allowed in (
            ("dataset", DATASETS),
            ("model", MODELS),
            ("objective", OBJECTIVES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise UserError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
        strats = tuple(self.strategies)
        if not strats:
            raise UserError("no strategies given; choose from " + ", ".join(strategies.STRATEGIES))
        if len(set(strats)) != len(strats):
            raise UserError(f"a strategy is listed twice: {','.join(strats)}")
        for name in ("restarts", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(
                    f"{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        lr = PAPER_LR[(self.model, DATASETS[self.dataset].family)] if self.lr is None else self.lr
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise UserError(f"lr must be > 0, got {lr!r}")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            raise UserError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.eps <= 0 or self.weight_decay < 0:
            raise UserError("eps must be > 0 and weight-decay >= 0")
        unknown = sorted(set(self.strategy_params) - set(strats))
        if unknown:
            raise UserError(
                f"parameters given for strategy {unknown[0]!r}, which is not in the run "
                f"({','.join(strats)})"
            )
        # Full, validated parameters for every strategy in the run: config.json is complete.
        params = {
            s: dataclasses.asdict(
                strategies.parse_params(strategies.get(s), self.strategy_params.get(s))
            )
            for s in strats
        }
        resolve_device(self.device)
        object.__setattr__(self, "strategies", strats)
        object.__setattr__(self, "lr", float(lr))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "strategy_params", params)

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        d["betas"] = list(self.betas)
        d["strategy_params"] = {k: dict(v) for k, v in self.strategy_params.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(
                f"unknown run setting {unknown[0]!r}; allowed: {', '.join(sorted(names))}"
            )
        d = dict(d)
        for key in ("strategies", "betas"):
            if key in d and not isinstance(d[key], str):
                d[key] = tuple(d[key])
            elif key in d:
                d[key] = tuple(x.strip() for x in d[key].split(",") if x.strip())
        return cls(**d)

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes``; choosing fewer strategies drops the others' params."""
        d = {**self.to_dict(), **changes}
        if "strategies" in changes and "strategy_params" not in changes:
            keep = set(RunConfig.from_dict({"strategies": changes["strategies"]}).strategies)
            d["strategy_params"] = {k: v for k, v in d["strategy_params"].items() if k in keep}
        return RunConfig.from_dict(d)

    def params(self, strategy: str) -> Any:
        """The typed parameters of ``strategy``."""
        return strategies.parse_params(strategies.get(strategy), self.strategy_params[strategy])


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU. Raises :class:`UserError` for a device that
    does not exist here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)")
    elif dev.type != "cpu":
        raise UserError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev
