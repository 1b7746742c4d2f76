"""The one restart loop.

Task 0 trains on the original objective; tasks 1..R change it. Every strategy runs through the
same task sequence, ``epochs`` epochs per task, and every epoch yields a :class:`Record`.

:class:`StrategyRun` is one strategy's whole run, advanced an epoch at a time; its
:meth:`~StrategyRun.state_dict` holds everything needed to continue (networks, optimizer,
strategy state, position). Nothing reads global RNG state (every random draw is derived from the
seed and its purpose, see :mod:`plasticity.seeding`), so a run restored at any epoch boundary
continues with identical numbers. :func:`run_experiment` runs several strategies task by task.

Speed: the data sit on the device as uint8; a batch is a slice (or, when shuffling, an index
gather); labels of a task are remapped once on the device; metrics accumulate on the device and
are read once per epoch; evaluation runs in large batches under inference mode.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from plasticity import diagnostics, strategies
from plasticity.allocator import keep_freed_memory
from plasticity.config import RunConfig, resolve_device
from plasticity.data import Dataset, Split, load_dataset
from plasticity.errors import UserError
from plasticity.models import network_factory
from plasticity.objectives import Task, make_task
from plasticity.optim import make_optimizer
from plasticity.seeding import generator, set_deterministic

log = logging.getLogger(__name__)

EVAL_BATCH = 8192
PROBE_SIZE = 512  # training images the diagnostics look at
STATE_FORMAT = 3  # 2: beta1 and beta2 (were betas); 3: one "model" per strategy state


@dataclass(frozen=True)
class Record:
    """What one epoch of one strategy produced.

    ``train_loss``/``train_acc`` are means over the epoch's minibatches as they were trained on
    (each batch measured just before its update, as the paper's code records them);
    ``test_*`` are measured after the epoch. ``alpha`` is NaN for strategies without one.
    """

    strategy: str
    seed: int
    task: int
    epoch: int
    step: int
    """Optimizer steps taken by this strategy so far (all tasks)."""
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    alpha: float
    params: int
    """Parameters in the forward pass (frozen ones included)."""
    trainable_params: int
    majority_rate: float
    """Share of the task's training labels (its subset, under warm_start) taken by the most
    common label: the constant-guess accuracy."""
    test_meaningful: bool
    """False where test labels carry no signal (random_labels)."""
    seconds: float
    """Wall time of this epoch (train + evaluation); the only field that varies between runs."""
    diagnostics: dict[str, float] = field(default_factory=dict)
    """Plasticity diagnostics (with ``diagnostics`` on) and strategy counters (units recycled or
    replaced); flattened to ``diag_*`` columns by :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update({f"diag_{k}": v for k, v in d.pop("diagnostics").items()})
        return d


class TaskSequence:
    """Tasks ``0..restarts`` by index, made on demand and cached (a few at a time: labels, and
    a ``warm_start`` task's images, can be large)."""

    def __init__(
        self, objective: str, data: Dataset, seed: int, restarts: int, keep: int = 2
    ) -> None:
        self.objective, self.data, self.seed, self.keep = objective, data, seed, keep
        self.restarts = restarts
        self._cache: dict[int, Task] = {}

    def __getitem__(self, index: int) -> Task:
        if index not in self._cache:
            if len(self._cache) >= self.keep:
                self._cache.pop(min(self._cache))
            self._cache[index] = make_task(
                self.objective, self.data, self.seed, index, self.restarts
            )
        return self._cache[index]


class StrategyRun:
    """One strategy through tasks 0..R, an epoch at a time."""

    def __init__(
        self,
        config: RunConfig,
        strategy: str,
        data: Dataset,
        tasks: TaskSequence | None = None,
    ) -> None:
        if strategy not in config.strategies:
            raise ValueError(f"{strategy!r} is not one of the config's strategies")
        self.config, self.name, self.data = config, strategy, data
        self.tasks = tasks or TaskSequence(config.objective, data, config.seed, config.restarts)
        # Steps of an epoch over the whole training set, the most any task takes; this is what
        # Context.steps_per_epoch holds. A warm_start task trains on a subset: run_epoch counts
        # that task's own steps (and from them the fractional epoch given to before_step).
        self.steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
        ctx = strategies.Context(
            new_network=network_factory(
                config.model, config.dataset, config.seed, data.device, config.hidden, config.norm
            ),
            new_optimizer=partial(make_optimizer, config),
            epochs=config.epochs,
            steps_per_epoch=self.steps_per_epoch,
            seed=config.seed,
        )
        self.strategy = strategies.get(strategy)(ctx, config.params(strategy))
        self.task = 0
        self.epoch = 0
        self.steps = 0
        self.task_start: list[torch.Tensor] | None = None  # weights when the task began

    @property
    def done(self) -> bool:
        return self.task > self.config.restarts

    @property
    def total_epochs(self) -> int:
        return (self.config.restarts + 1) * self.config.epochs

    @property
    def epochs_done(self) -> int:
        return self.task * self.config.epochs + self.epoch

    def run_epoch(self) -> Record:
        """Train one epoch (crossing a task boundary first if one is due) and evaluate."""
        if self.done:
            raise RuntimeError("the run is finished")
        cfg, s, dev = self.config, self.strategy, self.data.device
        start = time.perf_counter()
        if self.epoch == 0 and self.task > 0:
            s.begin_task(self.task)
        if cfg.diagnostics and self.epoch == 0:
            self.task_start = [p.detach().clone() for p in s.trainable_parameters()]
        task = self.tasks[self.task]
        s.begin_epoch(self.epoch)
        grad_norms = []

        # The task's training images: a subset under warm_start (gathered once per task).
        x_all = self.data.train.x if task.x_train is None else task.x_train
        n = len(task.y_train)
        steps = math.ceil(n / cfg.batch_size)
        order = None
        if cfg.shuffle:
            g = generator(cfg.seed, "order", self.task, self.epoch)
            order = torch.randperm(n, generator=g).to(dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        for b, lo in enumerate(range(0, n, cfg.batch_size)):
            if order is None:
                xb, yb = x_all[lo : lo + cfg.batch_size], task.y_train[lo : lo + cfg.batch_size]
            else:
                idx = order[lo : lo + cfg.batch_size]
                xb, yb = x_all[idx], task.y_train[idx]
            s.before_step(self.epoch + b / steps)
            x = self.data.prepare(xb, task.pixel_perm)
            logits = s.forward(x)
            loss = F.cross_entropy(logits, yb)
            extra = s.penalty()
            s.optimizer.zero_grad(set_to_none=True)
            (loss if extra is None else loss + extra).backward()
            if cfg.diagnostics:
                grads = [p.grad for p in s.trainable_parameters() if p.grad is not None]
                grad_norms.append(
                    torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(g) for g in grads])
                    )
                    if grads
                    else loss * 0
                )
            s.optimizer.step()
            self.steps += 1
            s.after_step(x)
            with torch.no_grad():
                loss_sum += loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
        test_loss, test_acc = self.evaluate(task)
        extra_metrics = s.metrics()
        diag = {k: v for k, v in extra_metrics.items() if k != "alpha"}
        if cfg.diagnostics:
            diag.update(self.diagnose(task, grad_norms))
        record = Record(
            strategy=self.name,
            seed=cfg.seed,
            task=self.task,
            epoch=self.epoch,
            step=self.steps,
            train_loss=loss_sum.item() / n,
            train_acc=correct.item() / n,
            test_loss=test_loss,
            test_acc=test_acc,
            alpha=float(extra_metrics.get("alpha", math.nan)),
            params=s.parameter_count(),
            trainable_params=sum(p.numel() for p in s.trainable_parameters()),
            majority_rate=task.majority_rate,
            test_meaningful=task.meaningful_test,
            seconds=time.perf_counter() - start,
            diagnostics=diag,
        )
        self.epoch += 1
        if self.epoch == cfg.epochs:
            self.epoch, self.task = 0, self.task + 1
        return record

    def diagnose(self, task: Task, grad_norms: list[torch.Tensor]) -> dict[str, float]:
        """The diagnostics of :mod:`plasticity.diagnostics` for the strategy's whole function
        (:meth:`~plasticity.strategies.Strategy.model`); the distance from task start is that of
        the trained parameters."""
        s = self.strategy
        x = self.data.prepare(self.data.train.x[:PROBE_SIZE], task.pixel_perm)
        out = diagnostics.probe(s.model(), x)
        out["weight_norm"] = diagnostics.norm(s.model().parameters())
        if self.task_start is not None:
            out["distance"] = diagnostics.norm(
                p - q for p, q in zip(s.trainable_parameters(), self.task_start, strict=True)
            )
        if grad_norms:
            out["grad_norm"] = float(torch.stack(grad_norms).mean())
        return out

    @torch.inference_mode()
    def evaluate(self, task: Task) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of the current function on the task's test labels."""
        test = self.data.test
        loss = torch.zeros((), device=self.data.device)
        correct = torch.zeros((), device=self.data.device, dtype=torch.long)
        for lo in range(0, len(test), EVAL_BATCH):
            x = self.data.prepare(test.x[lo : lo + EVAL_BATCH], task.pixel_perm)
            y = task.y_test[lo : lo + EVAL_BATCH]
            logits = self.strategy.forward(x)
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        return loss.item() / len(test), correct.item() / len(test)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "strategy": self.name,
            "task": self.task,
            "epoch": self.epoch,
            "steps": self.steps,
            "state": self.strategy.state_dict(),
            "task_start": self.task_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT or state.get("strategy") != self.name:
            raise UserError(f"checkpoint is not a {self.name!r} run state (format {STATE_FORMAT})")
        # A field added since the checkpoint was written takes its default (which is what
        # the run that wrote it used: new fields default to the old behaviour).
        saved = {**RunConfig().to_dict(), **state["config"]}
        saved = {k: v for k, v in saved.items() if k not in ("device", "data_dir")}
        mine = {k: v for k, v in self.config.to_dict().items() if k not in ("device", "data_dir")}
        if saved != mine:
            diff = sorted(k for k in mine if saved.get(k) != mine[k])
            raise UserError(
                f"checkpoint was made with a different configuration ({', '.join(diff)})"
            )
        self.strategy.load_state_dict(state["state"])
        self.task, self.epoch, self.steps = state["task"], state["epoch"], state["steps"]
        self.task_start = state.get("task_start")


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a run state atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a run state; a missing, truncated or foreign file is a :class:`UserError`."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"no checkpoint at {path}") from None
    except Exception as e:  # torch raises many types for a damaged file
        raise UserError(
            f"corrupt checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0]
        ) from None


def prepare(config: RunConfig) -> Dataset:
    """Seeding block and data loading, shared by the CLI and the study trainable; the
    allocator settings of :mod:`plasticity.allocator` for the process that trains."""
    keep_freed_memory()
    device = resolve_device(config.device)
    set_deterministic(config.deterministic)
    data = load_dataset(config.dataset, config.data_dir, config.download, device)
    return first_images(data, config.train_images)


def first_images(data: Dataset, n: int) -> Dataset:
    """``data`` training on its first ``n`` training images (all of them for 0); the test
    split is unchanged."""
    if not n:
        return data
    if n > len(data.train):
        raise UserError(
            f"--train-images {n} is more than {data.info.name}'s {len(data.train)} training images"
        )
    return Dataset(data.info, Split(data.train.x[:n], data.train.y[:n]), data.test)


def iter_experiment(config: RunConfig, data: Dataset | None = None) -> Iterator[Record]:
    """Records of every strategy, task by task: all strategies finish task r before any starts
    task r+1 (so partial results always compare like with like)."""
    data = data if data is not None else prepare(config)
    tasks = TaskSequence(config.objective, data, config.seed, config.restarts)
    runs = [StrategyRun(config, s, data, tasks) for s in config.strategies]
    for _ in range(config.restarts + 1):
        for run in runs:
            for _ in range(config.epochs):
                yield run.run_epoch()


def run_experiment(
    config: RunConfig,
    data: Dataset | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """All records of ``config`` (see :func:`iter_experiment`)."""
    records = []
    for rec in iter_experiment(config, data):
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    return records
