"""Plasticity diagnostics, measured on a fixed probe batch of training inputs.

They describe the strategy's whole function, :meth:`~plasticity.strategies.Strategy.model`.
A model may be composite (``expanded``'s blend of a new and a frozen old network, ``injection``'s
``f + g_a − g_b``): its *parts* are the ``nn.Sequential`` networks inside it that have hidden
layers and run in its forward pass (a plain network is its own single part). Hidden units are
those of every part, frozen parts included, since all of them compute the output.

Definitions (pinned; tests check each on hand-made matrices and a hand-made composite):

- **dormant ratio** (Sokar et al. 2023): the share of all hidden units whose score
  ``s_i = E|h_i| / mean_j E|h_j|`` (mean over the layer's units) is at most τ (default 0.025).
- **zero fraction**: the share of hidden units that are exactly 0 on every probe input (dead ReLUs).
- **effective rank** (Roy & Vetterli 2007) of the last hidden features ``F`` (``probe x units``:
  the last hidden layer of every part, concatenated along units, in module order):
  ``exp(−Σ_k p_k log p_k)`` with ``p = σ / Σσ``, σ the singular values. A part and an identical
  copy of it (``g_a`` and ``g_b`` at an injection) give the rank of the part alone.
- **srank** (Kumar et al. 2021) with δ = 0.01 of the same ``F``: the smallest k such that the top-k
  singular values reach ``(1 − δ) Σσ``.
- **active units** (Plasticine's "fraction of active units", ``compute_active_units`` in
  ``RLE-Foundation/Plasticine``, ``plasticine/metrics.py``, for ReLU and CReLU): the share of the
  entries of ``F`` (probe inputs x last hidden units) that are not exactly 0,
  ``1 − mean(F == 0)``. Unlike ``1 − zero`` it counts (input, unit) pairs of the last hidden
  layer: a unit silent on half the probe counts half. Under CReLU one of each pair
  ``relu(x), relu(−x)`` is zero, so it is 1/2 whenever no pre-activation is exactly 0.
- **feature norm** (Plasticine's ``compute_feature_norm``): the mean over probe inputs of the L2
  norm of the input's last hidden features, ``mean_x ‖F_x‖₂``.
- **feature variance** (Plasticine's ``compute_feature_variance``): the mean over probe inputs of
  the variance of the input's features across units, ``mean_x var_j F_xj`` with the ``n − 1``
  divisor (``torch.var``'s default, as there; 0 for a single unit). It is the spread of one
  representation's values, not the variation of a unit across inputs.

  These three are Plasticine's for one network. For a composite they are each part's (its own
  ``F``), averaged over the parts: a part beside an identical copy of itself again gives the
  part's values, where the concatenated ``F`` would multiply the norm by √2.
- **weight norm**: ``sqrt(Σ ‖θ‖²)`` over every parameter of the model, frozen parts included.
- **distance from task start**: ``sqrt(Σ ‖θ − θ_start‖²)`` over the *trained* parameters
  (:meth:`~plasticity.strategies.Strategy.trainable_parameters`), θ_start their values when the
  task began (after the boundary's intervention). A strategy's trained parameters are the same
  tensors throughout a task, so this is defined across ``expanded``/``injection`` boundaries,
  where the parameter set changes: it measures how far the part being trained has moved.
- **gradient norm**: ``sqrt(Σ ‖∇θ‖²)`` of the loss over the trained parameters, averaged over the
  epoch's steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

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


def active_fraction(features: torch.Tensor) -> float:
    """``1 − mean(F == 0)``: the share of nonzero entries of ``features`` (``samples x units``)."""
    return 1.0 - float((features == 0).double().mean())


def feature_norm(features: torch.Tensor) -> float:
    """``mean_x ‖F_x‖₂`` over the rows of ``features`` (``samples x units``)."""
    return float(torch.linalg.vector_norm(features.double(), dim=1).mean())


def feature_variance(features: torch.Tensor) -> float:
    """``mean_x var_j F_xj``: each row's variance across units (divisor ``units − 1``), averaged
    over rows; 0 for a single unit. ``features``: ``samples x units``."""
    if features.shape[1] < 2:
        return 0.0
    return float(features.double().var(dim=1).mean())


def norm(tensors: Iterable[torch.Tensor]) -> float:
    """``sqrt(Σ ‖t‖²)``."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def parts(model: nn.Module) -> list[nn.Sequential]:
    """The networks ``model`` is made of: every ``nn.Sequential`` among its modules (itself
    included) that has hidden layers, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.Sequential) and hidden_layers(m)]


@torch.no_grad()
def probe(model: nn.Module, x: torch.Tensor, tau: float = 0.025) -> dict[str, float]:
    """Dormant ratio, zero fraction, effective rank, srank, active units, feature norm and
    feature variance of ``model`` on batch ``x``, over the hidden units of every part that runs
    in its forward pass (see the module docstring). Empty when ``model`` has no hidden layers."""
    layers = [hidden_layers(part) for part in parts(model)]
    acts: dict[tuple[int, int], torch.Tensor] = {}

    def keep(key: tuple[int, int]) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            acts[key] = out

        return hook

    handles = [
        h.act.register_forward_hook(keep((p, k)))
        for p, hidden in enumerate(layers)
        for k, h in enumerate(hidden)
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    if not acts:
        return {}
    ran = [p for p, hidden in enumerate(layers) if (p, len(hidden) - 1) in acts]
    every = [acts[p, k] for p in ran for k in range(len(layers[p]))]
    mean_abs = [unit_activity(a) for a in every]
    peak = [a.abs().amax(dim=(0, 2, 3)) if a.dim() == 4 else a.abs().amax(0) for a in every]
    per_part = [acts[p, len(layers[p]) - 1].flatten(1) for p in ran]
    features = torch.cat(per_part, dim=1)

    def mean_over_parts(metric: Callable[[torch.Tensor], float]) -> float:
        return sum(metric(f) for f in per_part) / len(per_part)

    return {
        "dormant": dormant_ratio(mean_abs, tau),
        "zero": zero_fraction(peak),
        "effective_rank": effective_rank(features),
        "srank": float(srank(features)),
        "active": mean_over_parts(active_fraction),
        "feature_norm": mean_over_parts(feature_norm),
        "feature_variance": mean_over_parts(feature_variance),
    }
