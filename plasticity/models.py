"""The paper's architectures, built from their parameter counts (the ground truth).

The paper's layer lists are not quite right; these reproduce its stated parameter counts exactly:

=========  ==========================================================  ============
model      layers                                                      parameters
=========  ==========================================================  ============
MLP/MNIST  784-1568-1568-10                                              3,706,762
MLP/C10    3072-6144-6144-6144-6144-10                                 132,206,602
CNN/MNIST  conv(1→2)-pool-conv(2→4)-pool-196-98-98-10                       30,094
CNN/C10    conv(3→6)-pool-conv(6→12)-pool-768-384-384-10                   447,814
=========  ==========================================================  ============

All convolutions are 3x3 'same' with ReLU and 2x2 max-pooling. ``mlp-small`` (two hidden layers
of 256) is not the paper's: it is for quick experiments on a laptop.

Every network is an ``nn.Sequential`` of Linear/Conv2d/ReLU/MaxPool2d/Flatten modules, so
strategies that act on hidden units (ReDo, continual backprop) can walk its layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from plasticity.data import DATASETS, NUM_CLASSES
from plasticity.errors import UserError
from plasticity.seeding import seeded


@dataclass(frozen=True)
class MLPSpec:
    hidden: tuple[int, ...]


@dataclass(frozen=True)
class CNNSpec:
    channels: tuple[int, ...]
    hidden: tuple[int, ...]


# (model, dataset family) -> architecture.
ARCHITECTURES: dict[tuple[str, str], MLPSpec | CNNSpec] = {
    ("mlp", "mnist"): MLPSpec(hidden=(1568, 1568)),
    ("mlp", "cifar10"): MLPSpec(hidden=(6144,) * 4),
    ("cnn", "mnist"): CNNSpec(channels=(2, 4), hidden=(98, 98)),
    ("cnn", "cifar10"): CNNSpec(channels=(6, 12), hidden=(384, 384)),
    ("mlp-small", "mnist"): MLPSpec(hidden=(256, 256)),
    ("mlp-small", "cifar10"): MLPSpec(hidden=(256, 256)),
}
MODELS = ("mlp", "cnn", "mlp-small")
PAPER_MODELS = ("mlp", "cnn")

# Learning rates from the paper (Adam): MLP/MNIST 1e-3, MLP/CIFAR10 5e-5, CNN/MNIST 1e-2,
# CNN/CIFAR10 1e-3. mlp-small uses the MLP's.
PAPER_LR: dict[tuple[str, str], float] = {
    ("mlp", "mnist"): 1e-3,
    ("mlp", "cifar10"): 5e-5,
    ("cnn", "mnist"): 1e-2,
    ("cnn", "cifar10"): 1e-3,
    ("mlp-small", "mnist"): 1e-3,
    ("mlp-small", "cifar10"): 5e-5,
}


def architecture(model: str, dataset: str) -> MLPSpec | CNNSpec:
    """The spec of ``model`` for ``dataset`` (raises :class:`UserError` on unknown names)."""
    if model not in MODELS:
        raise UserError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    return ARCHITECTURES[(model, DATASETS[dataset].family)]


def build(
    spec: MLPSpec | CNNSpec, shape: tuple[int, int, int], num_classes: int = NUM_CLASSES
) -> nn.Sequential:
    """An untrained network with PyTorch's default initialisation (as in the paper's code)."""
    c, h, w = shape
    if isinstance(spec, MLPSpec):
        layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
    else:
        layers = []
        for out in spec.channels:
            layers += [nn.Conv2d(c, out, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        layers.append(nn.Flatten())
        width = c * h * w
    for out in spec.hidden:
        layers += [nn.Linear(width, out), nn.ReLU()]
        width = out
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def network_factory(
    model: str, dataset: str, seed: int, device: torch.device | str = "cpu"
) -> Callable[[int | str], nn.Sequential]:
    """``f(key)`` → a freshly initialised network, seeded by ``(seed, "init", key)``.

    Built on the CPU under a derived seed, then moved: the same key gives the same initial
    weights on every device and for every strategy.
    """
    spec = architecture(model, dataset)
    shape = DATASETS[dataset].shape

    def fresh(key: int | str) -> nn.Sequential:
        with seeded(seed, "init", key):
            net = build(spec, shape)
        return net.to(device)

    return fresh


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_count(model: str, dataset: str) -> int:
    """Parameter count without allocating weights (built on the meta device)."""
    with torch.device("meta"):
        net = build(architecture(model, dataset), DATASETS[dataset].shape)
    return count_parameters(net)


def describe(spec: MLPSpec | CNNSpec, shape: tuple[int, int, int]) -> str:
    """A one-line layer summary, e.g. ``conv(1→2)-pool-conv(2→4)-pool-196-98-98-10``."""
    c, h, w = shape
    parts = []
    if isinstance(spec, CNNSpec):
        for out in spec.channels:
            parts += [f"conv({c}→{out})", "pool"]
            c, h, w = out, h // 2, w // 2
    parts += [str(c * h * w), *map(str, spec.hidden), str(NUM_CLASSES)]
    return "-".join(parts)
