"""Plasticity diagnostics, measured on a fixed probe batch of training inputs.

Definitions (pinned; tests check each on hand-made matrices):

- **dormant ratio** (Sokar et al. 2023): the share of all hidden units whose score
  ``s_i = E|h_i| / mean_j E|h_j|`` (mean over the layer's units) is at most τ (default 0.025).
- **zero fraction**: the share of hidden units that are exactly 0 on every probe input (dead ReLUs).
- **effective rank** (Roy & Vetterli 2007) of the last hidden layer's features ``F``
  (``probe x units``): ``exp(−Σ_k p_k log p_k)`` with ``p = σ / Σσ``, σ the singular values.
- **srank** (Kumar et al. 2021) with δ = 0.01: the smallest k such that the top-k singular values
  reach ``(1 − δ) Σσ``.
- **weight norm**: ``sqrt(Σ ‖θ‖²)`` over the trained network's parameters.
- **distance from task start**: ``sqrt(Σ ‖θ − θ_start‖²)``, θ_start the weights when the task began.
- **gradient norm**: ``sqrt(Σ ‖∇θ‖²)`` of the loss, averaged over the epoch's steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from plasticity.units import dormant_units, hidden_layers, unit_activity


def dormant_ratio(activity: list[torch.Tensor], tau: float = 0.025) -> float:
    """Share of units with ``E|h_i| / mean_j E|h_j| <= tau``; ``activity``: one ``units``
    vector of mean |h| per layer."""
    dormant = sum(len(dormant_units(a, tau)) for a in activity)
    return dormant / max(sum(a.numel() for a in activity), 1)


def zero_fraction(peak: list[torch.Tensor]) -> float:
    """Share of units whose largest |h| over the probe is exactly 0; ``peak`` per layer."""
    zero = sum(int((p == 0).sum()) for p in peak)
    return zero / max(sum(p.numel() for p in peak), 1)


def effective_rank(features: torch.Tensor) -> float:
    """``exp(−Σ p_k log p_k)``, ``p = σ/Σσ`` of ``features`` (``samples x units``)."""
    sigma = torch.linalg.svdvals(features.double())
    if sigma.sum() <= 0:
        return 0.0
    p = sigma / sigma.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Smallest k whose top-k singular values sum to at least ``(1 − delta) Σσ``."""
    sigma = torch.linalg.svdvals(features.double())
    if sigma.sum() <= 0:
        return 0
    cumulative = torch.cumsum(sigma, 0) / sigma.sum()
    return (
        int(torch.searchsorted(cumulative, torch.tensor(1 - delta, dtype=cumulative.dtype) - 1e-12))
        + 1
    )


def norm(tensors: Iterable[torch.Tensor]) -> float:
    """``sqrt(Σ ‖t‖²)``."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


@torch.no_grad()
def probe(network: nn.Module, x: torch.Tensor, tau: float = 0.025) -> dict[str, float]:
    """Dormant ratio, zero fraction, effective rank and srank of ``network`` on batch ``x``."""
    acts: list[torch.Tensor] = []
    modules = [h.act for h in hidden_layers(network)] if isinstance(network, nn.Sequential) else []
    if not modules:
        return {}
    handles = [m.register_forward_hook(lambda mod, a, out: acts.append(out)) for m in modules]
    try:
        network(x)
    finally:
        for h in handles:
            h.remove()
    mean_abs = [unit_activity(a) for a in acts]
    peak = [a.abs().amax(dim=(0, 2, 3)) if a.dim() == 4 else a.abs().amax(0) for a in acts]
    features = acts[-1].flatten(1)
    return {
        "dormant": dormant_ratio(mean_abs, tau),
        "zero": zero_fraction(peak),
        "effective_rank": effective_rank(features),
        "srank": float(srank(features)),
    }
