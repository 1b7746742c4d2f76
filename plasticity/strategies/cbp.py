"""``cbp``: continual backprop (Dohare et al. 2024, Nature, "Loss of plasticity in deep continual
learning"), the generate-and-test of their code, ``shibhansh/loss-of-plasticity``:
``lop/algos/gnt.py`` (``GnT.update_utility``, ``test_features``, ``gen_new_features``) and, for
conv layers, ``lop/algos/convGnT.py``.

After each optimizer step, for every hidden layer, with η = ``decay`` (0.99) and ``h_c`` the
batch mean of what the next layer reads in input column ``c`` (after pooling and flattening,
as ``lop/nets/conv_net.py`` hands its features to ``ConvGnT``; a unit owns one column, or the
H·W columns of its channel after a ``Flatten``):

1. age ``a_i ← a_i + 1`` (before the utility, as ``test_features`` does);
2. contribution utility ``u_i ← η·u_i + (1 − η)·c_i`` with
   ``c_i = mean_{c ∈ cols(i)} ( mean_k |W_out[k, c]| · E|h_c| )`` (the paper's eq. 1; ``gnt.py``
   averages over the outgoing weights where the paper sums them, which ranks a layer's units
   identically);
3. running mean of what the next layer reads, ``m_c ← η·m_c + (1 − η)·E h_c``
   (``mean_feature_act``);
4. units with ``a_i > maturity`` are eligible; ``rate`` × (number eligible) is added to a
   per-layer counter whose integer part is the number replaced now, the fraction carried over
   (``gnt.py`` with ``accumulate=True``, the only mode of ``cbp_linear.py``; ``gnt.py``'s default
   instead draws a Bernoulli for a fraction, and we keep the loop free of random draws);
5. the eligible units of lowest *bias-corrected* utility ``û_i = u_i / (1 − η^{a_i})`` are
   replaced (``bias_corrected_util``; ties go to the lower index);
6. replacing unit i: its mean contribution moves into the next layer's bias,
   ``b_out += Σ_{c ∈ cols(i)} W_out[:, c] · m_c / (1 − η^{a_i})`` (the "update bias to correct
   for the removed features" of ``gen_new_features``); then fresh incoming weights (the same
   rows of a freshly initialised network: the paper samples them from the initial
   distribution), zero bias, zero outgoing weights, Adam moments of those entries zeroed, and
   ``u_i = m_c = a_i = 0``.

Where we depart from the code, and why:

- ``gnt.py`` zeroes ``mean_feature_act`` of the chosen units in ``test_features`` *before*
  ``gen_new_features`` reads it, so its bias transfer adds exactly zero; ``convGnT.py`` and
  ``cbp_linear.py`` have none. We transfer the mean as the code's comment intends, so a
  replacement leaves the next layer's input unchanged on average; ``transfer_bias=False`` gives
  the code's effective behaviour.
- Their ``AdamGnT`` keeps a step count per entry and resets it; ``torch.optim.Adam`` keeps one
  per tensor, so we zero only the moments, and a fresh entry's first updates are bias-corrected
  with the tensor's step (smaller than a first Adam step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plasticity.errors import UserError
from plasticity.strategies.base import Context, Strategy
from plasticity.units import InputProbe, absorb_into_bias, hidden_layers, reinit_units


@dataclass(frozen=True)
class Params:
    rate: float = 1e-4
    """Fraction of eligible units replaced per step."""
    maturity: int = 100
    """Steps a unit must have lived before it can be replaced."""
    decay: float = 0.99
    """η of the utility's and the mean's moving averages."""
    transfer_bias: bool = True
    """Move a replaced unit's mean contribution into the next layer's bias."""

    SEARCH: ClassVar[dict[str, Any]] = {
        "rate": {"low": 1e-5, "high": 1e-2, "log": True},
        "maturity": [10, 100, 1000],
    }

    def validate(self) -> None:
        if not 0 <= self.rate <= 1:
            raise UserError(f"cbp.rate must be in [0, 1], got {self.rate}")
        if self.maturity < 0:
            raise UserError(f"cbp.maturity must be >= 0, got {self.maturity}")
        if not 0 <= self.decay < 1:
            raise UserError(f"cbp.decay must be in [0, 1), got {self.decay}")


def bias_correction(age: torch.Tensor, decay: float) -> torch.Tensor:
    """``1 − η^a`` per unit: the weight a moving average started at 0 has put on real data
    after ``a`` updates (Adam's bias correction). ``age``: ``units``."""
    return 1.0 - decay ** age.to(torch.float64)


def lowest_utility(
    utility: torch.Tensor, age: torch.Tensor, decay: float, maturity: int, count: int
) -> torch.Tensor:
    """Indices of the ``count`` units with ``age > maturity`` whose bias-corrected utility
    ``u / (1 − η^age)`` is lowest (ties: lower index first). ``utility``, ``age``: ``units``."""
    eligible = torch.nonzero(age > maturity).flatten()
    corrected = utility[eligible].double() / bias_correction(age[eligible], decay)
    order = torch.argsort(corrected, stable=True)
    return eligible[order[:count]]


class ContinualBackprop(Strategy):
    name = "cbp"
    Params = Params

    def __init__(self, ctx: Context, params: Params | None = None) -> None:
        super().__init__(ctx, params)
        self.hidden = hidden_layers(self._model)
        self.probe = InputProbe(self.hidden)
        dev = next(self._model.parameters()).device
        self.utility = [torch.zeros(h.size, device=dev) for h in self.hidden]
        """``u``: the running contribution utility per unit."""
        self.mean = [torch.zeros(h.size * h.group, device=dev) for h in self.hidden]
        """``m``: the running mean of each input column the next layer reads."""
        self.age = [torch.zeros(h.size, dtype=torch.long, device=dev) for h in self.hidden]
        self.pending = [0.0] * len(self.hidden)
        self.steps = 0
        self.replaced = 0

    def after_step(self, x: torch.Tensor) -> None:
        self.steps += 1
        eta = self.params.decay
        fresh = None
        for i, layer in enumerate(self.hidden):
            mean, mean_abs = self.probe.mean[i], self.probe.mean_abs[i]
            if mean is None:
                continue
            self.age[i] += 1
            contribution = (layer.column_magnitude() * mean_abs).view(layer.size, -1).mean(1)
            self.utility[i].mul_(eta).add_(contribution, alpha=1 - eta)
            self.mean[i].mul_(eta).add_(mean, alpha=1 - eta)
            eligible = int((self.age[i] > self.params.maturity).sum())
            self.pending[i] += self.params.rate * eligible
            count = int(self.pending[i])
            if count == 0:
                continue
            self.pending[i] -= count
            idx = lowest_utility(self.utility[i], self.age[i], eta, self.params.maturity, count)
            if self.params.transfer_bias:
                correction = bias_correction(self.age[i], eta).repeat_interleave(layer.group)
                absorb_into_bias(layer, idx, (self.mean[i] / correction).to(self.mean[i].dtype))
            if fresh is None:
                fresh = hidden_layers(self.fresh(f"cbp-{self.steps}"))
            reinit_units(layer, idx, fresh[i], self.optimizer)
            self.utility[i][idx] = 0.0
            self.mean[i][layer.outgoing_columns(idx)] = 0.0
            self.age[i][idx] = 0
            self.replaced += len(idx)

    def metrics(self) -> dict[str, float]:
        return {"replaced": float(self.replaced)}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "utility": self.utility,
            "mean": self.mean,
            "age": self.age,
            "pending": self.pending,
            "steps": self.steps,
            "replaced": self.replaced,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.utility = [u.clone() for u in state["utility"]]
        self.mean = [m.clone() for m in state["mean"]]
        self.age = [a.clone() for a in state["age"]]
        self.pending = [float(p) for p in state["pending"]]
        self.steps, self.replaced = int(state["steps"]), int(state["replaced"])
