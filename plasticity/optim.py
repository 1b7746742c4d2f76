"""The optimizer is part of the setting: which one, and its hyperparameters.

The optimizer choice is itself a plasticity intervention (Lyle et al. 2023 show that Adam's
second-moment statistics drive much of the loss of plasticity), so every run names it:

- ``adam``: :class:`torch.optim.Adam`, weight decay as an L2 term added to the gradient (the
  paper's code: β = (0.9, 0.9), ε = 1e-9, weight decay 1e-3);
- ``adamw``: :class:`torch.optim.AdamW`, decoupled weight decay (Loshchilov & Hutter 2019);
- ``sgd``: :class:`torch.optim.SGD` with ``momentum``, weight decay as L2; β and ε unused;
- ``trac``: TRAC (Muppidi et al. 2024) over the run's ``adam``, :mod:`plasticity.trac`;
- ``kron``: PSGD Kron (Li 2018; ``kron-torch``) with ``lr``, ``beta1`` as its momentum and
  ``weight_decay`` (decoupled, matrices only), :mod:`plasticity.kron`; β2 and ε unused.

TRAC and Kron wrap their authors' packages (the ``optimizers`` extra), imported when a run asks
for them.

Plain weight decay is the baseline every strategy already carries in this setting: the L2 term
of ``adam``/``sgd`` (Plasticine's "L2") or AdamW's decoupled decay, at ``weight_decay``; a
study compares it by searching ``weight_decay`` or fixing it in ``setting`` (0 turns it off).
"""

from __future__ import annotations

from typing import Protocol

import torch

OPTIMIZERS = ("adam", "adamw", "sgd", "trac", "kron")
PACKAGES = {"trac": "trac_optimizer", "kron": "kron_torch"}
"""The module each optional optimizer imports (from the ``optimizers`` extra)."""


class OptimizerSettings(Protocol):
    """What :func:`make_optimizer` reads (a :class:`plasticity.config.RunConfig` has it all)."""

    optimizer: str
    lr: float | None
    beta1: float
    beta2: float
    eps: float
    momentum: float
    weight_decay: float
    seed: int


def make_optimizer(
    config: OptimizerSettings, params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``params``."""
    adam = dict(
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    if config.optimizer == "trac":
        from plasticity.trac import trac_adam

        return trac_adam(params, **adam)
    if config.optimizer == "kron":
        from plasticity.kron import kron

        return kron(
            params,
            lr=config.lr,
            b1=config.beta1,
            weight_decay=config.weight_decay,
            seed=config.seed,
        )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, **adam)
