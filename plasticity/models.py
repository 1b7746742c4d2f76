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

Two factors change a model (:func:`with_factors`; the defaults leave it as above, weight for
weight):

- ``hidden``: the widths of the hidden Linear layers, their number the depth (``(100, 100)`` is
  Kumar et al. 2023's and Dohare et al. 2024's permuted-MNIST MLP, 784-100-100-10). For a CNN
  they are the fully connected layers after the convolutions.
- ``norm``: ``layer`` puts a normalisation layer after every hidden Linear and Conv2d, *before*
  its activation, on the pre-activations (Lyle et al. 2024, "Disentangling the causes of
  plasticity loss": layer normalisation with weight decay; Normalize-and-Project, Lyle et al.
  2024b, inserts it "before each nonlinearity" likewise). After a Linear it is ``nn.LayerNorm``
  over the units; after a Conv2d it is ``nn.GroupNorm(1, C)``, the layer norm of a feature map
  (over channels and positions, per sample) with one scale and shift per channel. Normalising
  over the channels at each position instead (Plasticine's conv encoders) would leave a 2-channel
  layer (the MNIST CNN's first) only the sign of its two values. The output layer is never
  normalised. Norm layers draw no random numbers, so a network's Linear and Conv2d weights are
  the same with and without them.

Every network is an ``nn.Sequential`` of Linear/Conv2d, optional norm, ReLU/CReLU/Fourier,
MaxPool2d and Flatten modules, so strategies that act on hidden units (ReDo, continual backprop)
can walk its layers (:func:`plasticity.units.hidden_layers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from plasticity.data import DATASETS, NUM_CLASSES
from plasticity.errors import UserError
from plasticity.seeding import seeded

NORMS = ("none", "layer")
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm)
"""The modules ``norm: layer`` inserts (after a Linear, after a Conv2d)."""


@dataclass(frozen=True)
class MLPSpec:
    hidden: tuple[int, ...]
    norm: str = "none"


@dataclass(frozen=True)
class CNNSpec:
    channels: tuple[int, ...]
    hidden: tuple[int, ...]
    norm: str = "none"


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


def parse_hidden(value: str | Sequence[int]) -> tuple[int, ...]:
    """Hidden widths from ``"100,100"`` or ``[100, 100]``: one or more positive integers
    (raises :class:`UserError` otherwise)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence):
        items = [items]
    widths = []
    for x in items:
        if isinstance(x, str) and x.strip().isdigit():
            x = int(x)
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            widths = []
            break
        widths.append(x)
    if not widths:
        raise UserError(f"hidden must be positive integer widths, e.g. 100,100; got {value!r}")
    return tuple(widths)


def with_factors(
    spec: MLPSpec | CNNSpec, hidden: Sequence[int] | None = None, norm: str = "none"
) -> MLPSpec | CNNSpec:
    """``spec`` with its hidden widths replaced by ``hidden`` (None keeps them) and ``norm``
    (raises :class:`UserError` on an unknown norm)."""
    if norm not in NORMS:
        raise UserError(f"unknown norm {norm!r}; choose from {', '.join(NORMS)}")
    widths = spec.hidden if hidden is None else parse_hidden(hidden)
    return replace(spec, hidden=widths, norm=norm)


class CReLU(nn.Module):
    """Concatenated ReLU (Shang et al. 2016; Abbas et al. 2023): ``[relu(x), relu(-x)]`` along
    the feature/channel axis, so no unit can be dead for every input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)


class Fourier(nn.Module):
    """Deep Fourier features (Lewandowski et al. 2024): ``[sin(z), cos(z)]`` of each
    pre-activation ``z`` along the feature/channel axis (all sines, then all cosines)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.sin(x), torch.cos(x)], dim=1)


ACTIVATIONS = ("relu", "crelu", "fourier")
DOUBLING = ("crelu", "fourier")
"""Activations that pass on two features per unit: the next layer reads twice the inputs, and
:func:`crelu_spec` narrows the widths to keep the parameter count."""
_MODULES = {"relu": nn.ReLU, "crelu": CReLU, "fourier": Fourier}


def build(
    spec: MLPSpec | CNNSpec,
    shape: tuple[int, int, int],
    num_classes: int = NUM_CLASSES,
    activation: str = "relu",
) -> nn.Sequential:
    """An untrained network with PyTorch's default initialisation (as in the paper's code).
    With ``crelu`` or ``fourier`` (:data:`DOUBLING`) every activation doubles its width, so the
    next layer takes twice the inputs (use :func:`crelu_spec` to keep the parameter count).
    With ``spec.norm == "layer"`` a norm layer sits between each hidden layer and its
    activation (see the module docstring)."""
    c, h, w = shape
    grow = 2 if activation in DOUBLING else 1

    def act(units: int, conv: bool) -> list[nn.Module]:
        """The norm (if any) and the activation after a hidden layer of ``units`` outputs."""
        out: list[nn.Module] = []
        if spec.norm == "layer":
            out.append(nn.GroupNorm(1, units) if conv else nn.LayerNorm(units))
        return [*out, _MODULES[activation]()]

    if isinstance(spec, MLPSpec):
        layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
    else:
        layers = []
        for out in spec.channels:
            layers += [nn.Conv2d(c, out, 3, padding="same"), *act(out, True), nn.MaxPool2d(2)]
            c, h, w = out * grow, h // 2, w // 2
        layers.append(nn.Flatten())
        width = c * h * w
    for out in spec.hidden:
        layers += [nn.Linear(width, out), *act(out, False)]
        width = out * grow
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def with_norm_layers(net: nn.Sequential) -> nn.Sequential:
    """``net`` with a norm layer after every hidden Linear and Conv2d, as ``norm: layer`` builds
    it (``nn.LayerNorm`` after a Linear, ``nn.GroupNorm(1, C)`` after a Conv2d, fresh: scale 1,
    shift 0); ``net`` itself if it has norm layers already. The weighted layers are the same
    modules, so their weights are ``net``'s."""
    mods = list(net)
    if any(isinstance(m, NORM_LAYERS) for m in mods):
        return net
    weighted = [i for i, m in enumerate(mods) if isinstance(m, (nn.Linear, nn.Conv2d))]
    layers: list[nn.Module] = []
    for i, m in enumerate(mods):
        layers.append(m)
        if i in weighted[:-1]:  # every weighted layer but the output layer
            conv = isinstance(m, nn.Conv2d)
            units = m.out_channels if conv else m.out_features
            norm = nn.GroupNorm(1, units) if conv else nn.LayerNorm(units)
            layers.append(norm.to(m.weight.device))
    return nn.Sequential(*layers)


def _count(spec: MLPSpec | CNNSpec, shape: tuple[int, int, int], activation: str) -> int:
    with torch.device("meta"):
        return count_parameters(build(spec, shape, activation=activation))


def crelu_spec(spec: MLPSpec | CNNSpec, shape: tuple[int, int, int]) -> MLPSpec | CNNSpec:
    """The architecture with hidden widths (and conv channels) scaled so that its CReLU network
    (or any :data:`DOUBLING` one: same shapes) has the parameter count of the ReLU one, within
    1% where integer widths allow.

    One scale for everything is found by bisection on the count (monotone in the scale); the
    conv channels are then fixed and the hidden widths' scale is fitted again.
    """
    target = _count(spec, shape, "relu")
    channels = getattr(spec, "channels", ())

    def scaled(f: float, g: float) -> MLPSpec | CNNSpec:
        hidden = tuple(max(1, round(x * g)) for x in spec.hidden)
        if isinstance(spec, MLPSpec):
            return replace(spec, hidden=hidden)
        return replace(spec, channels=tuple(max(1, round(x * f)) for x in channels), hidden=hidden)

    def fit(count) -> float:  # the scale whose count is closest to the target (bisection)
        lo, hi = 0.05, 1.5
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
        return lo if abs(count(lo) - target) <= abs(count(hi) - target) else hi

    f = fit(lambda x: _count(scaled(x, x), shape, "crelu"))
    # Conv channels are few, so rounding them moves the count a lot: fix them, refit the rest.
    g = fit(lambda x: _count(scaled(f, x), shape, "crelu"))
    return scaled(f, g)


def network_factory(
    model: str,
    dataset: str,
    seed: int,
    device: torch.device | str = "cpu",
    hidden: Sequence[int] | None = None,
    norm: str = "none",
) -> Callable[..., nn.Sequential]:
    """``f(key, activation="relu")`` → a freshly initialised network, seeded by
    ``(seed, "init", key)`` (and the activation, for CReLU networks), with the factors
    ``hidden`` and ``norm`` (:func:`with_factors`).

    Built on the CPU under a derived seed, then moved: the same key gives the same initial
    weights on every device and for every strategy.
    """
    spec = with_factors(architecture(model, dataset), hidden, norm)
    shape = DATASETS[dataset].shape
    specs = {"relu": spec}

    def fresh(key: int | str, activation: str = "relu") -> nn.Sequential:
        if activation not in specs:
            specs[activation] = crelu_spec(spec, shape)
        keys = ("init", key) if activation == "relu" else ("init", activation, key)
        with seeded(seed, *keys):
            net = build(specs[activation], shape, activation=activation)
        return net.to(device)

    return fresh


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_count(
    model: str,
    dataset: str,
    activation: str = "relu",
    hidden: Sequence[int] | None = None,
    norm: str = "none",
) -> int:
    """Parameter count without allocating weights (built on the meta device)."""
    spec = with_factors(architecture(model, dataset), hidden, norm)
    shape = DATASETS[dataset].shape
    if activation in DOUBLING:
        spec = crelu_spec(spec, shape)
    return _count(spec, shape, activation)


def describe(spec: MLPSpec | CNNSpec, shape: tuple[int, int, int], activation: str = "relu") -> str:
    """A one-line layer summary, e.g. ``conv(1→2)-pool-conv(2→4)-pool-196-98-98-10``; with
    CReLU or Fourier features, ``98x2`` marks a layer whose activation doubles its width; with
    ``norm: layer``, ``98+ln`` a layer followed by a norm layer."""
    grow = 2 if activation in DOUBLING else 1
    mark = ("+ln" if spec.norm == "layer" else "") + ("x2" if grow == 2 else "")
    c, h, w = shape
    parts = []
    if isinstance(spec, CNNSpec):
        for out in spec.channels:
            parts += [f"conv({c}→{out}{mark})", "pool"]
            c, h, w = out * grow, h // 2, w // 2
    parts += [str(c * h * w), *(f"{x}{mark}" for x in spec.hidden), str(NUM_CLASSES)]
    return "-".join(parts)
