"""The optimizer is part of the setting: which one, and its hyperparameters.

The optimizer choice is itself a plasticity intervention (Lyle et al. 2023 show that Adam's
second-moment statistics drive much of the loss of plasticity), so every run names it:

- ``adam``: :class:`torch.optim.Adam`, weight decay as an L2 term added to the gradient (the
  paper's code: β = (0.9, 0.9), ε = 1e-9, weight decay 1e-3);
- ``adamw``: :class:`torch.optim.AdamW`, decoupled weight decay (Loshchilov & Hutter 2019);
- ``sgd``: :class:`torch.optim.SGD` with ``momentum``, weight decay as L2; β and ε unused.
"""

from __future__ import annotations

from typing import Protocol

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")


class OptimizerSettings(Protocol):
    """What :func:`make_optimizer` reads (a :class:`plasticity.config.RunConfig` has it all)."""

    optimizer: str
    lr: float | None
    beta1: float
    beta2: float
    eps: float
    momentum: float
    weight_decay: float


def make_optimizer(
    config: OptimizerSettings, params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``params``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(
        params,
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
