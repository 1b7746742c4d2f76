"""The strategy interface: a small object that owns the network and its optimizer and acts at
the moments a plasticity method needs (after Avalanche's plugins, with far fewer hooks).

The restart loop calls, in this order::

    begin_task(r)            # at every task boundary, r >= 1 (task 0 is the network as built)
    begin_epoch(e)
      before_step(t)         # t = epoch + step / steps_per_epoch (fractional epochs)
      forward(x) -> logits   # the function being trained and evaluated
      penalty() -> extra loss term or None
      ... backward, optimizer.step() ...
      after_step(x)
    metrics() -> extra numbers for the epoch's record (e.g. α)

What a strategy trains is :meth:`Strategy.model`: the whole function :meth:`Strategy.forward`
computes, as one ``nn.Module`` (for a composite, e.g. ``expanded``'s blend of a new and a frozen
old network, the module holding every part). Diagnostics, parameter counts and checkpoints see
that module; its parts stay private to the strategy. The trainable parameters are the model's
parameters with ``requires_grad``; frozen parts are part of the model but not of the optimizer.

Every fresh network a strategy makes comes from :meth:`Strategy.fresh`, which passes the
strategy's own activation (a CReLU strategy never gets a ReLU network at a boundary).

A strategy that adds, replaces or re-initialises parameters must bring the optimizer in line
(:meth:`Strategy.reset_optimizer`, or edit its parameter groups and state): the loop trusts
``self.optimizer`` to hold exactly :meth:`Strategy.trainable_parameters`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from plasticity.errors import UserError, one_line


def freeze(module: nn.Module) -> nn.Module:
    """``module`` with ``requires_grad`` off and its gradients freed (it is never trained again)."""
    module.requires_grad_(False)
    for p in module.parameters():
        p.grad = None
    return module


@dataclass(frozen=True)
class Context:
    """What a strategy may use: fresh networks and optimizers, and the shape of the run."""

    new_network: Callable[..., nn.Module]
    """``f(key, activation="relu")``: a freshly initialised network, the same for the same key
    in every strategy. Strategies call it through :meth:`Strategy.fresh`, which passes their
    activation."""
    new_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    epochs: int
    """Epochs per task."""
    steps_per_epoch: int
    seed: int


@dataclass(frozen=True)
class NoParams:
    """This strategy has no hyperparameters."""

    SEARCH: ClassVar[dict[str, Any]] = {}
    """Default search ranges for studies (``study`` files may say ``STRATEGY: default``)."""

    def validate(self) -> None:
        """Raise :class:`UserError` on a value out of range."""


class Strategy:
    """Base class: continuous training with no intervention. Subclasses override hooks."""

    name: ClassVar[str] = "base"
    Params: ClassVar[type] = NoParams
    activation: ClassVar[str] = "relu"

    def __init__(self, ctx: Context, params: Any = None) -> None:
        self.ctx = ctx
        self.params = params if params is not None else self.Params()
        self._model: nn.Module = self.fresh(0)
        """The whole function :meth:`forward` computes (see :meth:`model`)."""
        self.optimizer = ctx.new_optimizer(self.trainable_parameters())

    def fresh(self, key: int | str) -> nn.Module:
        """A freshly initialised network for ``key`` with this strategy's activation (the same
        network for the same key in every strategy of that activation)."""
        return self.ctx.new_network(key, self.activation)

    # -- hooks -------------------------------------------------------------------------------
    def begin_task(self, task: int) -> None:
        """The objective has just changed to task ``task`` (>= 1)."""

    def begin_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (0-based, within the task) is about to start."""

    def before_step(self, t: float) -> None:
        """An optimizer step at time ``t`` (epochs since the task began) is about to happen."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the function being trained: ``model()(x)``."""
        return self._model(x)

    def penalty(self) -> torch.Tensor | None:
        """An extra loss term added to the task loss (e.g. a regulariser), or None."""
        return None

    def after_step(self, x: torch.Tensor) -> None:
        """An optimizer step on input batch ``x`` has just been taken."""

    def metrics(self) -> dict[str, float]:
        """Extra numbers for this epoch's record."""
        return {}

    # -- the model, its parameters and the optimizer -----------------------------------------
    def model(self) -> nn.Module:
        """The whole function :meth:`forward` computes, every part (trainable or frozen) that
        takes part in it included."""
        return self._model

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The model's parameters that are trained (``requires_grad``), in module order."""
        return [p for p in self._model.parameters() if p.requires_grad]

    def parameter_count(self) -> int:
        """Parameters taking part in the forward pass, frozen ones included."""
        return sum(p.numel() for p in self._model.parameters())

    def reset_optimizer(self) -> None:
        """A fresh optimizer over the current trainable parameters (no stale moments)."""
        self.optimizer = self.ctx.new_optimizer(self.trainable_parameters())

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The model's weights and the optimizer's state (subclasses add what rebuilds the
        model's structure and their own counters)."""
        return {"model": self._model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict` into a model of the same structure (subclasses rebuild the
        structure first)."""
        if "model" not in state:
            raise UserError("checkpoint was written by an older version (no 'model' state)")
        self._model.load_state_dict(state["model"])
        self.reset_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])


def parse_params(cls: type[Strategy], values: Mapping[str, Any] | None, name: str = "") -> Any:
    """Build and validate ``cls.Params`` from a mapping (values may be strings, as from the
    command line). ``name`` is what the user called the strategy (default ``cls.name``; a
    plugin's ``module:Class``). Raises :class:`UserError` naming the bad key or value, also
    where a plugin's ``Params`` raises something else."""
    name = name or cls.name
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        allowed = ", ".join(fields) or "none"
        raise UserError(
            f"unknown parameter {unknown[0]!r} for strategy {name!r}; allowed: {allowed}"
        )
    kwargs = {k: _coerce(name, k, v, type(getattr(cls.Params(), k))) for k, v in values.items()}
    try:
        params = cls.Params(**kwargs)
        params.validate()
    except UserError:
        raise
    except Exception as e:  # a plugin's Params may raise anything: say it in one line
        raise UserError(f"strategy {name!r} rejected its parameters: {one_line(e)}") from None
    return params


def _coerce(strategy: str, key: str, value: Any, kind: type) -> Any:
    bad = UserError(f"{strategy}.{key} must be {kind.__name__}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if kind in (int, float):
        return _number(strategy, key, value, kind, bad)
    # a str (or None) default takes a string; a plugin's own type (a tuple) is taken as given
    if not isinstance(value, str if kind in (str, type(None)) else kind):
        raise bad
    return value


def _number(strategy: str, key: str, value: Any, kind: type, bad: UserError) -> Any:
    if isinstance(value, bool):
        raise bad
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise bad from None
    if kind is int and float(value) != out:
        raise bad
    if kind is float and not math.isfinite(out):  # nan would disable a threshold silently
        raise UserError(f"{strategy}.{key} must be a finite number, got {value!r}")
    return out
