"""``trac``: TRAC, a parameter-free wrapper around a base optimizer for lifelong learning.

Source: Muppidi, Zhang & Wang 2024, "Fast TRAC: A Parameter-Free Optimizer for Lifelong
Reinforcement Learning" (NeurIPS 2024); the authors' package ``trac-optimizer`` 0.0.2
(``trac_optimizer.start_trac``), which this module wraps: its update is the package's.

TRAC lets the base optimizer (here :class:`torch.optim.Adam` with the run's β, ε and weight
decay) move an unscaled copy Δ of the weights, and sets the weights to
``θ_t = θ_ref + S_t · Δ_t``, where θ_ref is the weights at the first step and the scale S_t is
tuned online (Cutkosky et al. 2023's erfi-potential tuner), one ``s_j`` per discount β_j in
(0.9, 0.99, ..., 0.999999)::

    h_t = <Δ_t, g_t>          (Δ_t = (θ_t - θ_ref) / (S_t + ε), before the base step)
    v_j <- β_j² v_j + h_t²
    σ_j <- β_j σ_j - h_t      (σ_j starts at 1e-8)
    s_j  = s_prev / erfi(1/√2) · erfi(σ_j / (√2 · √v_j + ε))      (s_prev = ε = 1e-8)
    S_t  = Σ_j s_j            (0 before the first step; the weights use max(S_t, 0))

so a weight starts at its reference and moves away from it only as far as the gradients'
agreement with Δ keeps asking: the pull towards θ_ref is what the paper credits for keeping
plasticity. TRAC's state lives in the base optimizer's ``state["_trac"]``, keyed by the
parameter tensors themselves; :class:`TRACAdam` makes that state survive our checkpoints.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import torch

from plasticity.errors import UserError


@functools.cache
def _package_class(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    try:
        from trac_optimizer import start_trac
    except ImportError:
        raise UserError(
            "optimizer 'trac' needs the trac-optimizer package: pip install -e '.[optimizers]'"
        ) from None
    # The package appends {iteration, S} to a log file at every step; the run's records are
    # ours, so it writes to the null device.
    return start_trac(os.devnull, base)


def trac_adam(params: list[torch.nn.Parameter], **adam: Any) -> torch.optim.Optimizer:
    """TRAC over :class:`torch.optim.Adam` (``adam`` are Adam's keyword arguments)."""
    return _checkpointable_class(torch.optim.Adam)(params, **adam)


@functools.cache
def _checkpointable_class(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    return type(f"TRAC{base.__name__}", (_Checkpointable, _package_class(base)), {})


class _Checkpointable(torch.optim.Optimizer):
    """TRAC's state in a checkpoint. The package keeps each parameter's reference θ_ref under
    ``state["_trac"][param]``; torch's ``state_dict`` maps only the top-level keys to
    parameter indices, so a restored optimizer would hold references keyed by the saved
    tensors, not by its own parameters, and fail at its next step. Here the inner keys become
    indices too, and go back to parameters on loading."""

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        trac = out["state"].get("_trac")
        if trac is not None:
            index = {id(p): i for i, p in enumerate(self._params())}
            out["state"]["_trac"] = {
                (index[id(k)] if isinstance(k, torch.Tensor) else k): v for k, v in trac.items()
            }
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        trac = state_dict["state"].get("_trac")
        super().load_state_dict(state_dict)  # keeps "_trac" as given (not a parameter index)
        if trac is None:
            return
        params = self._params()
        restored: dict[Any, Any] = {}
        for k, v in trac.items():
            param = params[k] if isinstance(k, int) else None
            restored[k if param is None else param] = _clone(v, param)
        self.state["_trac"] = restored


def _clone(value: Any, param: torch.Tensor | None) -> Any:
    """A copy of ``value`` (the loaded checkpoint stays untouched by later steps), tensors of a
    parameter's entry on that parameter's device."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone() if param is None else value.to(param.device, copy=True)
    if isinstance(value, dict):
        return {k: _clone(v, param) for k, v in value.items()}
    return value
