"""Hidden units of a ``nn.Sequential`` network: finding them, watching them, re-initialising them.

A *hidden unit* is an output feature (Linear) or output channel (Conv2d) of a layer that is
followed by an activation and then by another weighted layer. ReDo, continual backprop and the
diagnostics act on them. Re-initialising a unit touches three places, and the optimizer:

- its incoming weights (a row of the layer's weight; for a conv, one output filter) and bias,
- its outgoing weights (the next layer's input columns that read it: one column, one input
  channel, or, after a ``Flatten``, the block of H·W columns of its channel),
- Adam's moments for exactly those entries (zeroed, so stale statistics do not push the
  fresh weights).

With a norm layer between a hidden layer and its activation (``norm: layer``, see
:mod:`plasticity.models`), a unit also owns that layer's scale and shift for it, which are reset
to the fresh network's (1 and 0). The norm's statistics pool the whole layer, so a re-initialised
unit shifts its neighbours' normalised values a little: zero outgoing weights keep the output
unchanged only without a norm layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plasticity.models import NORM_LAYERS

WEIGHTED = (nn.Linear, nn.Conv2d)
PASSIVE = (nn.MaxPool2d, nn.Flatten, *NORM_LAYERS)
"""Modules between a hidden layer and its reader that are not its activation."""


@dataclass
class Hidden:
    """One hidden layer: ``layer`` makes the units, ``act`` activates them, ``out`` reads them."""

    layer: nn.Linear | nn.Conv2d
    act: nn.Module
    out: nn.Linear | nn.Conv2d
    group: int
    """Input columns of ``out`` per unit: 1, or H·W when a conv feeds a Linear via Flatten."""
    norm: nn.LayerNorm | nn.GroupNorm | None = None
    """The norm layer between ``layer`` and ``act`` (one scale and shift per unit), if any."""

    @property
    def size(self) -> int:
        return self.layer.weight.shape[0]

    def outgoing_columns(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices into ``out``'s input dimension that read units ``idx``."""
        if self.group == 1:
            return idx
        offsets = torch.arange(self.group, device=idx.device)
        return (idx[:, None] * self.group + offsets).flatten()

    def column_magnitude(self) -> torch.Tensor:
        """Mean |weight| of ``out`` per input column (over its outputs, and kernel taps for a
        conv): ``size * group``."""
        w = self.out.weight.detach().abs()
        return w.mean(dim=(0, 2, 3)) if w.dim() == 4 else w.mean(dim=0)

    def column_weights(self, cols: torch.Tensor) -> torch.Tensor:
        """The weights of ``out`` reading input columns ``cols`` (a conv's summed over kernel
        taps): ``out units x len(cols)``."""
        w = self.out.weight.detach()[:, cols]
        return w.sum(dim=(2, 3)) if w.dim() == 4 else w


def hidden_layers(net: nn.Sequential) -> list[Hidden]:
    """Every hidden layer of ``net``, in order (the output layer has no units here). Its
    activation is the first module after it that is not a norm, pooling or flattening."""
    mods = list(net)
    weighted = [i for i, m in enumerate(mods) if isinstance(m, WEIGHTED)]
    out = []
    for i, j in zip(weighted, weighted[1:]):
        between = mods[i + 1 : j]
        act = next(m for m in between if not isinstance(m, PASSIVE))
        norm = next((m for m in between if isinstance(m, NORM_LAYERS)), None)
        layer, nxt = mods[i], mods[j]
        group = 1
        if isinstance(layer, nn.Conv2d) and isinstance(nxt, nn.Linear):
            group = nxt.in_features // layer.out_channels
        out.append(Hidden(layer, act, nxt, group, norm))
    return out


def unit_activity(h: torch.Tensor) -> torch.Tensor:
    """Mean |h| per unit over a batch (and over positions for conv maps): ``units``."""
    h = h.detach().abs()
    return h.mean(dim=(0, 2, 3)) if h.dim() == 4 else h.mean(dim=0)


def dormant_units(activity: torch.Tensor, tau: float) -> torch.Tensor:
    """Indices of units whose score ``activity / mean(activity)`` is at most ``tau`` (the ReDo
    score of Sokar et al. 2023; ``activity`` from :func:`unit_activity`)."""
    score = activity / activity.mean().clamp_min(1e-12)
    return torch.nonzero(score <= tau).flatten()


class ActivityProbe:
    """Forward hooks that keep, for every hidden layer, the per-unit mean |activation| of the
    latest forward pass (the training batch, when read right after an optimizer step)."""

    def __init__(self, hidden: list[Hidden]) -> None:
        self.hidden = hidden
        self.latest: list[torch.Tensor | None] = [None] * len(hidden)
        self._handles = [h.act.register_forward_hook(self._hook(i)) for i, h in enumerate(hidden)]

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.latest[i] = unit_activity(output)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class InputProbe:
    """Forward pre-hooks on every hidden layer's reader ``out``: for the latest forward pass, the
    batch mean of each input column of ``out`` and of its absolute value (``size * group`` per
    layer; a conv reader's columns are channels, averaged over positions too). Unlike
    :class:`ActivityProbe` this sees what the next layer multiplies, after pooling."""

    def __init__(self, hidden: list[Hidden]) -> None:
        self.hidden = hidden
        self.mean: list[torch.Tensor | None] = [None] * len(hidden)
        self.mean_abs: list[torch.Tensor | None] = [None] * len(hidden)
        self._handles = [
            h.out.register_forward_pre_hook(self._hook(i)) for i, h in enumerate(hidden)
        ]

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            dims = (0, 2, 3) if x.dim() == 4 else (0,)
            self.mean[i], self.mean_abs[i] = x.mean(dim=dims), x.abs().mean(dim=dims)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@torch.no_grad()
def absorb_into_bias(hidden: Hidden, idx: torch.Tensor, mean: torch.Tensor) -> None:
    """Add the mean contribution of units ``idx`` to the bias of ``out``:
    ``b_out += Σ_{c ∈ cols(idx)} W_out[:, c] · mean[c]`` (``mean``: ``size * group``, the mean
    of each input column of ``out``). Exact for a Linear reader; for a conv reader it assumes
    every kernel tap sees the channel mean (true away from the zero-padded border)."""
    if hidden.out.bias is None or len(idx) == 0:
        return
    cols = hidden.outgoing_columns(idx)
    hidden.out.bias += hidden.column_weights(cols) @ mean[cols]


# Per-entry optimizer statistics that belong to the old weights: Adam's/AdamW's moments, SGD's
# momentum buffer (a fresh unit must not be pushed by them).
OPTIMIZER_STATS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def _reset_norm(hidden: Hidden, idx: torch.Tensor, fresh: Hidden) -> list[torch.Tensor]:
    """Give units ``idx`` the fresh norm layer's scale and shift; the tensors it wrote."""
    if hidden.norm is None or fresh.norm is None:
        return []
    written = []
    for mine, new in ((hidden.norm.weight, fresh.norm.weight), (hidden.norm.bias, fresh.norm.bias)):
        if mine is not None and new is not None:
            mine[idx] = new[idx].to(mine.device)
            written.append(mine)
    return written


@torch.no_grad()
def reinit_units(
    hidden: Hidden, idx: torch.Tensor, fresh: Hidden, optimizer: torch.optim.Optimizer | None
) -> None:
    """Give units ``idx`` the incoming weights of the same units of a freshly initialised
    network (``fresh``), a zero bias, zero outgoing weights and, behind a norm layer, the fresh
    network's scale and shift for them; zero their optimizer statistics
    (:data:`OPTIMIZER_STATS`)."""
    if len(idx) == 0:
        return
    cols = hidden.outgoing_columns(idx)
    hidden.layer.weight[idx] = fresh.layer.weight[idx].to(hidden.layer.weight.device)
    if hidden.layer.bias is not None:
        hidden.layer.bias[idx] = 0.0
    hidden.out.weight[:, cols] = 0.0
    norm_params = [(p, "rows") for p in _reset_norm(hidden, idx, fresh)]
    if optimizer is None:
        return
    for param, where in (
        (hidden.layer.weight, "rows"),
        (hidden.layer.bias, "rows"),
        (hidden.out.weight, "cols"),
        *norm_params,
    ):
        state = optimizer.state.get(param) if param is not None else None
        if not state:
            continue
        for key in OPTIMIZER_STATS:
            if key in state:
                if where == "rows":
                    state[key][idx] = 0.0
                else:
                    state[key][:, cols] = 0.0
