"""The typed run configuration: the one description of a run, validated once where input
enters (CLI, study file, trainable).

Everything else is derived from :class:`RunConfig`'s fields: the ``plasticity run`` flags
(:func:`plasticity.fields.add_flags`, help from the docstrings below), a study file's
``setting`` keys and defaults (:data:`SETTING_FIELDS`), the keys a strategy's search space may
set (:data:`TRIAL_FIELDS`), the Ray trial config (a whole ``to_dict()``), the checkpoint
metadata and ``config.json``. Below this boundary code trusts its arguments.
``RunConfig.to_dict()`` is what ``config.json`` holds; ``RunConfig.from_dict()`` reads it back
(unknown keys are an error, not ignored).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plasticity.errors import UserError

if TYPE_CHECKING:
    import torch

# The training code (torch, the strategies, the data) is imported inside the functions that
# validate a run: reading this module's fields (a study file's schema, `plasticity --help`,
# `plasticity study status`) must not import torch.


@dataclass(frozen=True)
class RunConfig:
    """One experiment: a task sequence, the strategies trained through it, and how."""

    dataset: str = "mnist-5k"
    """mnist-5k (embedded, offline), mnist or cifar10 (torchvision)."""
    data_dir: str | None = None
    """Where torchvision datasets live (default $PLASTICITY_DATA or ~/.cache/plasticity/data)."""
    download: bool = False
    """Allow downloading a missing torchvision dataset."""
    train_images: int = 0
    """Train on the first N images of the training set only (0: all of it); the order is the
    dataset's own, the same for every seed (e.g. Kumar et al.'s 1,200-image random labels)."""
    model: str = "mlp"
    """mlp or cnn (the paper's, sized for the dataset) or mlp-small."""
    hidden: tuple[int, ...] | None = None
    """Widths of the hidden Linear layers, comma-separated; their number is the depth (e.g.
    100,100: 784-100-100-10 on MNIST; for cnn, the layers after the convolutions). Default: the
    model's own."""
    norm: str = "none"
    """none, or layer: a LayerNorm after every hidden Linear (GroupNorm(1, C) after a conv),
    before its activation (Lyle et al. 2024)."""
    objective: str = "class_shuffle"
    """How each restart changes the task: none, class_shuffle, full_shuffle, random_labels,
    permute_inputs, warm_start (see plasticity.objectives)."""
    strategies: tuple[str, ...] = ("reset", "continuous", "expanded")
    """Strategies to compare, comma-separated; all see the same task sequence. A name from
    `plasticity strategies`, or MODULE:CLASS for a strategy in your own code."""
    restarts: int = 2
    """Objective changes after task 0 (tasks are 0..restarts; 0 trains task 0 only)."""
    epochs: int = 10
    """Epochs per task."""
    batch_size: int = 8192
    """Minibatch size (the paper's 8192)."""
    optimizer: str = "adam"
    """adam (L2 weight decay, the paper's), adamw (decoupled weight decay), sgd, trac (TRAC
    over adam, Muppidi et al. 2024) or kron (PSGD Kron); trac and kron need the optimizers
    extra."""
    lr: float | None = None
    """Learning rate (default: the paper's for the model and dataset)."""
    beta1: float = 0.9
    """Adam/AdamW/TRAC β1, Kron's momentum (the paper's code: 0.9)."""
    beta2: float = 0.9
    """Adam/AdamW/TRAC β2 (the paper's code: 0.9; PyTorch's default 0.999)."""
    eps: float = 1e-9
    """Adam/AdamW/TRAC ε (the paper's code: 1e-9; PyTorch's default 1e-8)."""
    momentum: float = 0.0
    """SGD momentum (sgd only)."""
    weight_decay: float = 1e-3
    """Weight decay: L2 for adam, trac and sgd, decoupled for adamw and kron (kron: matrices
    only) (the paper's code: 1e-3)."""
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
        from plasticity import strategies
        from plasticity.data import DATASETS
        from plasticity.models import PAPER_LR, parse_hidden

        for name, allowed in _choices().items():
            if getattr(self, name) not in allowed:
                raise UserError(
                    f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(allowed)}"
                )
        _check_optimizer_package(self.optimizer)
        strats = _check_strategies(tuple(self.strategies))
        hidden = None if self.hidden is None else parse_hidden(self.hidden)
        for name, low in _MIN_INTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a positive integer" if low == 1 else f"an integer >= {low}"
                raise UserError(f"{_flag(name)} must be {what}, got {value!r}")
        lr = PAPER_LR[(self.model, DATASETS[self.dataset].family)] if self.lr is None else self.lr
        for name, value, ok, rule in (
            ("lr", lr, lambda v: v > 0, "> 0"),
            ("eps", self.eps, lambda v: v > 0, "> 0"),
            ("weight_decay", self.weight_decay, lambda v: v >= 0, ">= 0"),
            ("beta1", self.beta1, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("beta2", self.beta2, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("momentum", self.momentum, lambda v: 0 <= v < 1, "in [0, 1)"),
        ):
            if not _finite(value) or not ok(value):
                raise UserError(f"{_flag(name)} must be {rule}, got {value!r}")
        unknown = sorted(set(self.strategy_params) - set(strats))
        if unknown:
            raise UserError(
                f"parameters given for strategy {unknown[0]!r}, which is not in the run "
                f"({','.join(strats)})"
            )
        # Full, validated parameters for every strategy in the run: config.json is complete.
        params = {
            s: dataclasses.asdict(
                strategies.parse_params(strategies.get(s), self.strategy_params.get(s), s)
            )
            for s in strats
        }
        resolve_device(self.device)
        object.__setattr__(self, "strategies", strats)
        object.__setattr__(self, "hidden", hidden)
        for name in _FLOATS:
            object.__setattr__(self, name, float(lr if name == "lr" else getattr(self, name)))
        object.__setattr__(self, "strategy_params", params)

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        d["strategy_params"] = {k: dict(v) for k, v in self.strategy_params.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise UserError(
                f"unknown run setting {unknown[0]!r}; allowed: {', '.join(sorted(FIELDS))}"
            )
        d = dict(d)
        if isinstance(d.get("strategies"), str):
            d["strategies"] = tuple(x.strip() for x in d["strategies"].split(",") if x.strip())
        elif "strategies" in d:
            d["strategies"] = tuple(d["strategies"])
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
        from plasticity import strategies

        return strategies.parse_params(
            strategies.get(strategy), self.strategy_params[strategy], strategy
        )


FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
"""Every field of a run, in declaration order."""
PER_RUN_FIELDS = ("strategies", "seed", "device", "strategy_params")
"""Fields that a study sets per trial, never in its ``setting``."""
SETTING_FIELDS = tuple(f for f in FIELDS if f not in PER_RUN_FIELDS)
"""The keys of a study file's ``setting`` (the same for every strategy unless searched)."""
TRIAL_FIELDS = (
    "hidden",
    "norm",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "beta1",
    "beta2",
    "eps",
    "momentum",
    "weight_decay",
    "shuffle",
)
"""Run fields a strategy's search space may set, besides the strategy's own parameters."""


def _choices() -> dict[str, Any]:
    """The fields that name one of a fixed set, and the set."""
    from plasticity.data import DATASETS
    from plasticity.models import MODELS, NORMS
    from plasticity.objectives import OBJECTIVES
    from plasticity.optim import OPTIMIZERS

    return {
        "dataset": DATASETS,
        "model": MODELS,
        "norm": NORMS,
        "objective": OBJECTIVES,
        "optimizer": OPTIMIZERS,
    }


_MIN_INTS = {"train_images": 0, "restarts": 0, "epochs": 1, "batch_size": 1}
_FLOATS = ("lr", "beta1", "beta2", "eps", "momentum", "weight_decay")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_optimizer_package(optimizer: str) -> None:
    """An optimizer from an optional package is refused where input enters (a study file is
    checked at launch, not in every trial) when the package is not installed."""
    import importlib.util

    from plasticity.optim import PACKAGES

    if optimizer in PACKAGES and importlib.util.find_spec(PACKAGES[optimizer]) is None:
        raise UserError(
            f"optimizer {optimizer!r} needs the {PACKAGES[optimizer].replace('_', '-')} package: "
            "pip install -e '.[optimizers]'"
        )


def _check_strategies(strats: tuple[str, ...]) -> tuple[str, ...]:
    from plasticity import strategies

    if not strats:
        raise UserError("no strategies given; choose from " + ", ".join(strategies.names()))
    if len(set(strats)) != len(strats):
        raise UserError(f"a strategy is listed twice: {','.join(strats)}")
    for s in strats:
        strategies.get(s)  # an unknown name or a broken plugin is a one-line UserError
    return strats


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU. Raises :class:`UserError` for a device that
    does not exist here."""
    import torch

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
