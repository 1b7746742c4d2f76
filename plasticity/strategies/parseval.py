"""``parseval``: Parseval regularisation (Chung, Cherif, Meger & Precup 2024, "Parseval
regularization for continual reinforcement learning", NeurIPS 2024): keep training one network
with the extra loss

    λ · Σ_l ‖W_l W_lᵀ − s·I‖²_F

over the weight matrices W_l (``units x inputs``) of the hidden layers, which pulls each layer's
rows towards an orthogonal set of norm √s. As in the authors' code (``wechu/parseval_reg``,
``parseval_reg/agent.py``: ``torch.norm(W @ W.t() - scale * torch.eye(rows), p='fro') ** 2``
summed over the layers named ``linear_orthog``): the output layer and the biases are not
regularised, and s = 2 (their ReLU networks' orthogonal initialisation gain √2, squared). A
hidden conv's weight is read as ``out_channels x (in_channels·k·k)`` (the paper has MLPs only).

Left as they are: the code multiplies λ by (64/width)² (λ was tuned at width 64); here λ is the
coefficient itself, and its search range covers both. Their networks start orthogonal with
gain √2, so the penalty starts at zero; ours start with PyTorch's default initialisation (rows
of squared norm about 1/3), so with s = 2 it first pulls the rows' norms up (``parseval.scale``
sets s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plasticity.errors import UserError
from plasticity.strategies.base import Strategy
from plasticity.units import hidden_layers


@dataclass(frozen=True)
class Params:
    strength: float = 1e-3
    """λ of the penalty (the paper's, for width-64 networks)."""
    scale: float = 2.0
    """s: the target W Wᵀ = s·I (the code's ReLU default, gain √2 squared)."""

    SEARCH: ClassVar[dict[str, Any]] = {"strength": {"low": 1e-5, "high": 1e-2, "log": True}}

    def validate(self) -> None:
        if self.strength < 0:
            raise UserError(f"parseval.strength must be >= 0, got {self.strength}")
        if self.scale <= 0:
            raise UserError(f"parseval.scale must be > 0, got {self.scale}")


def parseval_penalty(weights: list[torch.Tensor], scale: float) -> torch.Tensor:
    """Σ ‖W Wᵀ − s·I‖²_F over ``weights`` (each ``rows x ...``, read as ``rows x rest``)."""
    terms = []
    for w in weights:
        m = w.reshape(w.shape[0], -1)
        eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
        terms.append((m @ m.T - scale * eye).pow(2).sum())
    return torch.stack(terms).sum()


class Parseval(Strategy):
    name = "parseval"
    Params = Params

    def penalty(self) -> torch.Tensor:
        weights = [h.layer.weight for h in hidden_layers(self._model)]
        return self.params.strength * parseval_penalty(weights, self.params.scale)
