"""``nap``: Normalize-and-Project (Lyle, Zheng, Khetarpal, Martens, van Hasselt, Pascanu & Dabney
2024, "Normalization and effective learning rates in reinforcement learning", NeurIPS 2024):
train one network continuously with

1. *normalize*: a layer norm before each nonlinearity, i.e. after every hidden Linear and Conv2d
   (the network ``norm: layer`` builds, :func:`plasticity.models.with_norm_layers`; a network
   of the setting without them gets them, so ``nap`` has them whatever the setting's ``norm``);
2. *project*: after every optimizer step, every weighted layer's weight (hidden and output
   layers) is scaled back to its Frobenius norm at initialisation,
   ``W ← W · ‖W_0‖ / ‖W‖``; and each norm layer's scale γ and offset β are scaled jointly back
   to their initial norm, ``(γ, β) ← (γ, β) · ‖(γ_0, β_0)‖ / ‖(γ, β)‖`` (with γ_0 = 1, β_0 = 0
   that is √d for d units).

Layer norm makes a hidden layer's output invariant to the scale of its weights, so their norm
only sets the effective learning rate; its growth during training decays that rate, which the
paper ties to loss of plasticity; projecting keeps it constant (learning-rate schedules are then
explicit, and the optimizer's own).

Sources: the paper's abstract ("couples the insertion of normalization layers with weight
projection, ensuring that the effective learning rate remains constant"); the joint projection of
the scale and offset to √d as in a public JAX implementation (``nap_project``:
``norm = Σ(scale² + bias²); scale·= √(d/norm); bias·= √(d/norm)``), whose weight projection is
per layer, as here. Not projected: the Linear and Conv2d biases (the implementation found has
none before its norm layers). NaP has no hyperparameters of its own (its search space is the
learning rate); it keeps the optimizer's state through a projection, as the paper's optimizer
does. The initial norms come from the task-0 network, which is rebuilt from the seed, so they
are not stored in checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from plasticity.models import NORM_LAYERS, with_norm_layers
from plasticity.strategies.base import Context, Strategy

WEIGHTED = (nn.Linear, nn.Conv2d)


def projected_groups(net: nn.Module) -> list[list[nn.Parameter]]:
    """The parameter groups NaP keeps at constant norm, in module order: each weighted layer's
    weight alone, each norm layer's scale and offset together."""
    groups: list[list[nn.Parameter]] = []
    for m in net.modules():
        if isinstance(m, WEIGHTED):
            groups.append([m.weight])
        elif isinstance(m, NORM_LAYERS):
            groups.append([p for p in (m.weight, m.bias) if p is not None])
    return [g for g in groups if g]


def group_norm(group: list[torch.Tensor]) -> torch.Tensor:
    """The Euclidean norm of the tensors of ``group`` taken as one vector."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in group]))


@torch.no_grad()
def project(groups: list[list[nn.Parameter]], targets: list[torch.Tensor]) -> None:
    """Scale every group in place so its joint norm is its target (a zero group stays zero)."""
    for group, target in zip(groups, targets, strict=True):
        norm = group_norm(group)
        if norm > 0:
            factor = target / norm
            for p in group:
                p.mul_(factor)


class NormalizeAndProject(Strategy):
    name = "nap"

    def __init__(self, ctx: Context, params: object = None) -> None:
        super().__init__(ctx, params)
        self.groups = projected_groups(self._model)
        with torch.no_grad():  # the task-0 network's norms, rebuilt from the seed on resume
            self.targets = [group_norm(g).clone() for g in self.groups]

    def fresh(self, key: int | str) -> nn.Module:
        return with_norm_layers(super().fresh(key))

    def after_step(self, x: torch.Tensor) -> None:
        project(self.groups, self.targets)
