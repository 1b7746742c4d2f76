"""How many bytes a run's saved state takes, without training or allocating it.

The state a checkpoint holds (:meth:`plasticity.loop.StrategyRun.state_dict`) is built for real
by the strategy's own code, on PyTorch's meta device (shapes and dtypes, no storage): the
network as the strategy has it after its first task boundary (``expanded``: the trained part
and the frozen old part together, the most it ever holds), the optimizer's state after one
step (Adam's two moments per trained parameter, SGD's momentum, ...), the strategy's extra
state (``l2_init``'s anchor, ``redo``'s and ``cbp``'s counters) and, with diagnostics on, the
weights at the task's start. Its bytes are the tensors' bytes plus torch.save's per-tensor
overhead, and the records so far as JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch

from plasticity import strategies
from plasticity.config import RunConfig
from plasticity.models import network_factory
from plasticity.optim import make_optimizer

PER_TENSOR = 200
"""torch.save's bytes per tensor beyond its data (its zip entry, 64-byte alignment and its
pickled description): measured ~150-200 on torch 2.x."""
RECORD = 600
"""Bytes of one epoch's record in a checkpoint's records.json, without diagnostics."""


def tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested state (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


def state_bytes(state: Any) -> int:
    """Bytes torch.save takes for ``state``: its tensors' data, each with its overhead, and the
    rest pickled (tensors of the meta device count their shape's bytes)."""
    data = [(t.numel() * t.element_size()) for t in tensors(state)]
    rest = io.BytesIO()
    torch.save(_without_tensors(state), rest)
    return sum(data) + PER_TENSOR * len(data) + rest.tell()


def _without_tensors(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return None
    if isinstance(obj, dict):
        return {k: _without_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_without_tensors(v) for v in obj]
    return obj


def checkpoint_state(config: RunConfig, strategy: str) -> dict[str, Any]:
    """The largest state a checkpoint of ``strategy``'s run holds (see the module's docstring),
    on the meta device."""
    meta = torch.device("meta")
    ctx = strategies.Context(
        new_network=network_factory(
            config.model, config.dataset, config.seed, meta, config.hidden, config.norm
        ),
        new_optimizer=partial(make_optimizer, config),
        epochs=config.epochs,
        steps_per_epoch=1,
        seed=config.seed,
    )
    with torch.device(meta):
        s = strategies.get(strategy)(ctx, config.params(strategy))
        if config.restarts > 0:
            s.begin_task(1)
        trained = s.trainable_parameters()
        for p in trained:
            p.grad = torch.zeros_like(p)
        s.optimizer.step()
        state = s.state_dict()
    task_start = [p.detach() for p in trained] if config.diagnostics else None
    return {"state": state, "task_start": task_start}


def checkpoint_bytes(config: RunConfig, strategy: str) -> int:
    """Bytes of ``strategy``'s largest checkpoint: its state (:func:`checkpoint_state`) and
    every record of the run (the last checkpoint holds them all)."""
    records = (config.restarts + 1) * config.epochs
    record = RECORD + (400 if config.diagnostics else 0)
    return (
        state_bytes(checkpoint_state(config, strategy))
        + records * record
        + len(json.dumps(config.to_dict()))
    )
