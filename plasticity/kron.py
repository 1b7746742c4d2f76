"""``kron``: PSGD Kron, stochastic gradient descent preconditioned by a Kronecker product.

Source: Li 2018, "Preconditioner on Matrix Lie Group for SGD" (ICLR 2019) and Li 2015,
"Preconditioned Stochastic Gradient Descent" (IEEE TNNLS 2018), reference code
``lixilinx/psgd_torch``; the package ``kron-torch`` 0.3.3 (Evan Walters), whose
:class:`kron_torch.Kron` steps here, with the package's own defaults except what the run sets:
``lr``, ``b1`` = the run's ``beta1``, ``weight_decay`` (added to the preconditioned step of
matrices only, decoupled like AdamW's).

Each weight matrix W (m x n) keeps upper-triangular factors Q_l (m x m) and Q_r (n x n); a
vector keeps a diagonal one. The step is ``W <- W - lr · clip(P m)`` with m the debiased
momentum of the gradient (β = ``b1``), ``P = Q^T Q`` applied as ``Q_l^T Q_l m Q_r^T Q_r`` and
the update's RMS clipped at 1.1. The factors are fitted online so that P matches the inverse
square root of the gradient's covariance, from a random probe vector, with probability 1 for
the first 500 steps, then annealed to 0.03 (the package's schedule).

What this adapter changes around the package, each for one behaviour of it:

- the probe vectors come from ``torch.randn_like``, the global generator, which nothing else in
  a run reads (:mod:`plasticity.seeding`): each step draws them from a generator seeded by
  (run seed, "kron", step), so a run is a function of its seed and resumes bit-identically;
- its kernels are wrapped in ``torch.compile``, which on the CPU needs a C++ toolchain and
  tens of seconds per shape: they run eagerly (the same operations);
- it prints the sizes of its buffers at the first step: logged at debug level instead;
- its ``state_dict`` holds einsum expressions (strings, which torch's ``load_state_dict``
  rebuilds character by character into garbage), numpy integers and the update schedule
  object (which ``torch.load(weights_only=True)`` refuses), and leaves out its step and
  update counters and its balancing RNG: :class:`Kron` saves and restores all of them.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping
from typing import Any

import torch

from plasticity.errors import UserError
from plasticity.seeding import derive_seed

log = logging.getLogger(__name__)

try:
    from kron_torch import Kron as _PackageKron
except ImportError:  # an optional dependency: the error comes when a run asks for it
    _PackageKron = None

_SCHEDULE = "preconditioner_update_probability"


def kron(
    params: list[torch.nn.Parameter], lr: float, b1: float, weight_decay: float, seed: int
) -> torch.optim.Optimizer:
    """:class:`Kron` over ``params``, its probe vectors seeded by ``seed``."""
    if _PackageKron is None:
        raise UserError(
            "optimizer 'kron' needs the kron-torch package: pip install -e '.[optimizers]'"
        )
    return Kron(params, lr=lr, b1=b1, weight_decay=weight_decay, seed=seed)


class Kron(_PackageKron or torch.optim.Optimizer):  # type: ignore[misc]
    """:class:`kron_torch.Kron`, seeded, eager, quiet and checkpointable (see the module)."""

    def __init__(self, params: Any, seed: int, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.seed = seed

    def step(self, closure: Any = None) -> Any:
        cuda = sorted({p.device.index or 0 for p in self._params() if p.device.type == "cuda"})
        printed = io.StringIO()
        with (
            torch.random.fork_rng(devices=cuda),
            torch.compiler.set_stance("force_eager"),
            contextlib.redirect_stdout(printed),
        ):
            torch.manual_seed(derive_seed(self.seed, "kron", int(self._prob_step)))
            loss = super().step(closure)
        if printed.getvalue():
            log.debug("kron-torch: %s", printed.getvalue().strip())
        return loss

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        exprs, state = {}, {}
        for k, v in out["state"].items():
            v = dict(v)
            if "exprs" in v:
                exprs[k] = v.pop("exprs")
            if "merged_shape" in v:
                v["merged_shape"] = [int(d) for d in v["merged_shape"]]
            state[k] = v
        out["state"] = state
        out["param_groups"] = [
            {k: v for k, v in g.items() if k != _SCHEDULE} for g in out["param_groups"]
        ]
        version, internal, gauss = self.rng.getstate()
        out["kron"] = {
            "exprs": exprs,
            "prob_step": int(self._prob_step),
            "update_counter": int(self._update_counter),
            "rng": [version, list(internal), gauss],
        }
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("kron")
        # the schedule object is not saved (torch.load(weights_only=True) refuses it): this
        # optimizer's own, built from the same run setting, goes back in
        schedules = [g[_SCHEDULE] for g in self.param_groups]
        state_dict["param_groups"] = [
            {**g, _SCHEDULE: s} for g, s in zip(state_dict["param_groups"], schedules)
        ]
        super().load_state_dict(state_dict)
        params = self._params()
        for k, exprs in extra["exprs"].items():
            self.state[params[k]]["exprs"] = exprs
        self._prob_step = torch.tensor(extra["prob_step"], dtype=torch.int32)
        self._update_counter = torch.tensor(extra["update_counter"], dtype=torch.int32)
        version, internal, gauss = extra["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
