"""Named run settings: the paper's eight (2 models x 2 datasets x {class, full} shuffle) and a
demo that finishes on a laptop CPU.

Hyperparameters are the paper's code's: Adam (β = 0.9, 0.9; ε = 1e-9; weight decay 1e-3),
batch 8192, no shuffling, lr 1e-3 MLP/MNIST, 5e-5 MLP/CIFAR10, 1e-2 CNN/MNIST, 1e-3 CNN/CIFAR10;
class shuffle 10 epochs x 30 restarts, full shuffle 20 epochs x 15 restarts.
"""

from __future__ import annotations

from typing import Any

from plasticity.errors import UserError
from plasticity.models import PAPER_LR

# The paper's code's optimizer: Adam with L2 weight decay (standard Adam: β2 0.999, ε 1e-8).
PAPER_ADAM = {"optimizer": "adam", "beta1": 0.9, "beta2": 0.9, "eps": 1e-9, "weight_decay": 1e-3}
PAPER_SHUFFLES = {"class": ("class_shuffle", 10, 30), "full": ("full_shuffle", 20, 15)}


def _paper() -> dict[str, dict[str, Any]]:
    out = {}
    for model in ("mlp", "cnn"):
        for dataset in ("mnist", "cifar10"):
            for short, (objective, epochs, restarts) in PAPER_SHUFFLES.items():
                out[f"paper-{model}-{dataset}-{short}"] = {
                    "dataset": dataset,
                    "model": model,
                    "objective": objective,
                    "epochs": epochs,
                    "restarts": restarts,
                    "batch_size": 8192,
                    "lr": PAPER_LR[(model, dataset)],
                    **PAPER_ADAM,
                }
    return out


PRESETS: dict[str, dict[str, Any]] = {
    **_paper(),
    "demo": {
        "dataset": "mnist-5k",
        "model": "mlp",
        "objective": "class_shuffle",
        "epochs": 10,
        "restarts": 2,
        "batch_size": 8192,
        **PAPER_ADAM,
    },
}


def preset(name: str) -> dict[str, Any]:
    """The settings of preset ``name`` (raises :class:`UserError` on an unknown name)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return dict(PRESETS[name])
