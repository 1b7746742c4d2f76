"""The contract every strategy honours, as rules a strategy is checked against on tiny data.

One definition: ``plasticity check-strategy NAME`` runs these rules on a user's strategy, and
the test suite runs the built-ins through the same rules (tests/test_strategies.py). Each rule
trains the strategy through a few tasks of a real-MNIST slice (mlp-small, 512 training images,
3 tasks of 3 epochs, 4 steps an epoch) and either passes, saying what it checked, or fails,
saying what it saw. A strategy whose own code raises fails that rule with the exception in one
line.

The rules (see :class:`plasticity.strategies.base.Strategy` for why each holds):

- ``optimizer``: after construction and after every epoch (so after every task boundary) the
  optimizer holds exactly :meth:`~Strategy.trainable_parameters`, which are exactly the
  parameters of :meth:`~Strategy.model` with ``requires_grad``. (A strategy that adds or
  replaces parameters and forgets the optimizer trains nothing new, silently.)
- ``model``: ``forward(x)`` is ``model()(x)``; the record's parameter counts are the model's
  (all, and trainable); the checkpoint's ``model`` state is the model's.
- ``determinism``: two runs with the same seed give the same records, to the bit.
- ``resume``: stopped at any epoch boundary, saved, rebuilt from scratch and restored, the run
  continues with the records of an uninterrupted one.
- ``activation``: every fresh network the strategy asks for (at construction, at boundaries,
  when restoring) has the strategy's activation: a variant of the class with the other
  activation asks for that one only.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from plasticity import strategies
from plasticity.config import RunConfig
from plasticity.data import Dataset, Split, load_dataset
from plasticity.errors import UserError, one_line
from plasticity.loop import Record, StrategyRun, load_state, save_state
from plasticity.models import network_factory

TRAIN_IMAGES, TEST_IMAGES = 512, 256
SETTING = "mlp-small, 512 MNIST images, 3 tasks x 3 epochs of 4 steps, CPU"
"""What the rules train, in words (:func:`tiny_data`, :func:`tiny_config`)."""


class Broken(Exception):
    """A rule does not hold; the message says what was seen."""


@dataclass(frozen=True)
class Outcome:
    """One rule's verdict on one strategy."""

    rule: str
    ok: bool
    seen: str
    """What was checked (a pass) or what broke the rule (a failure)."""
    seconds: float

    def line(self) -> str:
        return f"{'pass' if self.ok else 'FAIL'}  {self.rule:<11}  {self.seen}"


def tiny_data(full: Dataset | None = None) -> Dataset:
    """512 training and 256 test images of the embedded real-MNIST subset (``full``, loaded if
    not given), on the CPU."""
    full = full if full is not None else load_dataset("mnist-5k")
    return Dataset(
        full.info,
        Split(full.train.x[:TRAIN_IMAGES].clone(), full.train.y[:TRAIN_IMAGES].clone()),
        Split(full.test.x[:TEST_IMAGES].clone(), full.test.y[:TEST_IMAGES].clone()),
    )


def tiny_config(name: str, params: Mapping[str, Any] | None = None, **changes: Any) -> RunConfig:
    """The run the rules train: ``name`` alone through 3 tasks of 3 epochs of 4 steps."""
    settings: dict[str, Any] = dict(
        model="mlp-small", restarts=2, epochs=3, batch_size=128, lr=1e-3, device="cpu"
    )
    settings.update(changes)
    return RunConfig(strategies=(name,), strategy_params={name: dict(params or {})}, **settings)


# -- the rules ---------------------------------------------------------------------------------
# Each takes the run's config (one strategy) and the data, returns what it checked, and raises
# Broken with what it saw when the rule does not hold.


def optimizer_rule(config: RunConfig, data: Dataset) -> str:
    run = _run(config, data)
    _optimizer_in_line(run.strategy, "after construction")
    boundaries = 0
    while not run.done:
        where = _position(run)
        boundaries += run.epoch == 0 and run.task > 0
        run.run_epoch()
        _optimizer_in_line(run.strategy, f"after {where}")
    return (
        f"the optimizer holds exactly the trainable parameters after each of "
        f"{run.total_epochs} epochs ({boundaries} task boundaries)"
    )


def model_rule(config: RunConfig, data: Dataset) -> str:
    run = _run(config, data)
    x = data.prepare(data.test.x[:16])
    while not run.done:
        where = _position(run)
        record = run.run_epoch()
        s = run.strategy
        model = s.model()
        with torch.no_grad():
            if not torch.equal(s.forward(x), model(x)):
                raise Broken(f"after {where}: forward(x) differs from model()(x)")
        counts = (
            sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad),
        )
        if (record.params, record.trainable_params) != counts:
            raise Broken(
                f"after {where}: the record counts {record.params:,} parameters "
                f"({record.trainable_params:,} trainable), model() has {counts[0]:,} "
                f"({counts[1]:,} trainable)"
            )
        saved = set(s.state_dict().get("model", {}))
        if saved != set(model.state_dict()):
            diff = sorted(saved ^ set(model.state_dict()))
            raise Broken(
                f"after {where}: the checkpoint's model state is not model()'s ({diff[0]})"
            )
    return (
        "forward is model(), the records' parameter counts and the checkpoint are model()'s "
        f"after each of {run.total_epochs} epochs"
    )


def determinism_rule(config: RunConfig, data: Dataset) -> str:
    a, b = _records(config, data), _records(config, data)
    where = _first_difference(a, b)
    if where:
        raise Broken(f"two runs of seed {config.seed} differ: {where}")
    return f"two runs of seed {config.seed} give the same {len(a)} records"


def resume_rule(config: RunConfig, data: Dataset) -> str:
    expected = _records(config, data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.pt"
        for stop in range(1, len(expected)):
            first = _run(config, data)
            head = [first.run_epoch() for _ in range(stop)]
            where = _position(first)
            save_state(path, first.state_dict())
            del first
            resumed = _run(config, data)
            try:
                resumed.load_state_dict(load_state(path))
            except UserError as e:
                raise Broken(f"saved before {where}, the state does not load back: {e}") from None
            tail = [resumed.run_epoch() for _ in range(resumed.total_epochs - stop)]
            diff = _first_difference(_numbers(head + tail), expected)
            if diff:
                raise Broken(f"saved and restored before {where}, then: {diff}")
    return (
        f"saved, rebuilt and restored at each of {len(expected) - 1} epoch boundaries, "
        "the records equal an uninterrupted run's"
    )


def activation_rule(config: RunConfig, data: Dataset) -> str:
    name = config.strategies[0]
    cls = strategies.get(name)
    other = "relu" if cls.activation == "crelu" else "crelu"
    variant = type(f"{cls.__name__}Variant", (cls,), {"activation": other})
    factory = network_factory(config.model, config.dataset, config.seed)
    asked: list[tuple[Any, str]] = []

    def new_network(key: int | str, activation: str = "relu") -> torch.nn.Module:
        asked.append((key, activation))
        return factory(key)  # a ReLU network whatever was asked: the request is what is checked

    ctx = strategies.Context(
        new_network, lambda ps: torch.optim.Adam(ps, lr=1e-3), 2, 1, config.seed
    )
    params = config.params(name)
    s = variant(ctx, params)
    x, y = data.prepare(data.train.x[:64]), data.train.y[:64]
    for task in range(3):
        if task:
            s.begin_task(task)
        for epoch in range(2):
            s.begin_epoch(epoch)
            s.before_step(float(epoch))
            loss = F.cross_entropy(s.forward(x), y)
            extra = s.penalty()
            s.optimizer.zero_grad()
            (loss if extra is None else loss + extra).backward()
            s.optimizer.step()
            s.after_step(x)
    variant(ctx, params).load_state_dict(s.state_dict())
    wrong = [key for key, activation in asked if activation != other]
    if wrong:
        raise Broken(
            f"a variant with activation {other!r} asked for {len(wrong)} of {len(asked)} "
            f"network(s) with another (keys {', '.join(map(repr, wrong[:3]))}); "
            "make them with self.fresh(key)"
        )
    return (
        f"a variant with activation {other!r} asked for all {len(asked)} network(s) with it "
        "(3 tasks, a checkpoint, a restore)"
    )


RULES: dict[str, Callable[[RunConfig, Dataset], str]] = {
    "optimizer": optimizer_rule,
    "model": model_rule,
    "determinism": determinism_rule,
    "resume": resume_rule,
    "activation": activation_rule,
}
"""Every rule, by name, in the order they are checked."""


def run_rule(rule: str, config: RunConfig, data: Dataset) -> Outcome:
    """One rule's :class:`Outcome` (an exception from the strategy's code is a failure)."""
    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and 10x so on a busy CPU
    try:
        seen, ok = RULES[rule](config, data), True
    except Broken as e:
        seen, ok = str(e), False
    except Exception as e:  # the strategy's own code raised (the run was valid): a failure
        seen, ok = f"raised {one_line(e)}", False
    finally:
        torch.set_num_threads(threads)
    return Outcome(rule, ok, seen, time.perf_counter() - start)


def check(
    name: str,
    params: Mapping[str, Any] | None = None,
    data: Dataset | None = None,
    rules: tuple[str, ...] = tuple(RULES),
) -> Iterator[Outcome]:
    """Each rule's :class:`Outcome` for strategy ``name`` (a built-in, an entry point's name or
    ``module:Class``) with ``params``, as it is decided. An unusable name or bad parameters
    are a :class:`UserError` before any rule runs."""
    config = tiny_config(name, params)
    data = data if data is not None else tiny_data()
    for rule in rules:
        yield run_rule(rule, config, data)


# -- helpers -----------------------------------------------------------------------------------
def _run(config: RunConfig, data: Dataset) -> StrategyRun:
    return StrategyRun(config, config.strategies[0], data)


def _records(config: RunConfig, data: Dataset) -> list[dict[str, Any]]:
    run = _run(config, data)
    return _numbers([run.run_epoch() for _ in range(run.total_epochs)])


def _numbers(records: list[Record]) -> list[dict[str, Any]]:
    """Every field of each record but its wall time."""
    return [{k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"} for r in records]


def _position(run: StrategyRun) -> str:
    """The epoch ``run`` trains next, in words."""
    boundary = " (after the task boundary)" if run.epoch == 0 and run.task > 0 else ""
    return f"task {run.task} epoch {run.epoch}{boundary}"


def _first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """The first field that differs between two record lists, in words ('' if none)."""
    if len(a) != len(b):
        return f"{len(a)} records against {len(b)}"
    for ra, rb in zip(a, b):
        for key in ra:
            if not _same(ra[key], rb.get(key)):
                at = f"task {ra['task']} epoch {ra['epoch']}"
                return f"{at}: {key} {ra[key]!r} against {rb.get(key)!r}"
    return ""


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True  # NaN (alpha of a strategy without one) equals itself here
    return x == y


def _optimizer_in_line(s: strategies.Strategy, where: str) -> None:
    held = {id(p): p for g in s.optimizer.param_groups for p in g["params"]}
    trainable = {id(p): p for p in s.trainable_parameters()}
    in_model = {id(p): p for p in s.model().parameters() if p.requires_grad}
    problems = [
        _count(trainable.keys() - held.keys(), trainable, "trainable but not in the optimizer"),
        _count(held.keys() - trainable.keys(), held, "in the optimizer but not trainable"),
        _count(
            in_model.keys() - trainable.keys(),
            in_model,
            "of model() with requires_grad but not in trainable_parameters()",
        ),
        _count(trainable.keys() - in_model.keys(), trainable, "trainable but not model()'s"),
    ]
    if any(problems):
        raise Broken(f"{where}: " + "; ".join(p for p in problems if p))


def _count(ids: set[int], params: dict[int, torch.Tensor], what: str) -> str:
    if not ids:
        return ""
    n = sum(params[i].numel() for i in ids)
    return f"{len(ids)} tensor(s) ({n:,} parameters) {what}"
