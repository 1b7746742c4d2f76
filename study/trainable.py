"""The Ray Tune function trainable: one strategy, one hyperparameter configuration, the whole
restart loop, run in-process.

The config dict becomes plasticity's typed :class:`RunConfig` at this boundary. The trainable
reports after every epoch (the epoch's record plus the running objectives of
:mod:`plasticity.metrics`; the last report carries the final objective, which is what Optuna
records) and checkpoints the loop's whole state at task boundaries (or every
``checkpoint_every`` epochs). When Ray retries a crashed trial it continues from the last
checkpoint; the loop is deterministic, so the records equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from plasticity.config import RunConfig
from plasticity.loop import StrategyRun, load_state, prepare, save_state
from plasticity.metrics import objectives

log = logging.getLogger(__name__)


# Keys this trainable reports besides the epoch record and the objectives. Ray fills keys of its
# own (done, training_iteration, trial_id, ...): ours never take one of those names.
RUN_COMPLETE = "run_complete"
"""True in the report of a trial's last epoch only: the trial ran every epoch of every task."""
RESTART_EPOCHS = "restart_epochs_done"
"""Epochs trained on restart tasks (1..R): ASHA's clock. During task 0 (the same objective for
every strategy, so it says nothing about plasticity) it is 0, so ASHA's first rung always
compares running objectives taken over restart tasks."""
EXTRA_KEYS = (
    RUN_COMPLETE,
    RESTART_EPOCHS,
    "epochs_done",
    "epochs_total",
    "device",
    "node",
    "started_at",
    "reported_at",
)


def trial_run(config: dict[str, Any]) -> dict[str, Any]:
    """The run dict of a trial config (evaluation trials nest their config under "trial")."""
    return config.get("trial", config)["run"]


def to_run_config(config: dict[str, Any], device: str = "cpu") -> RunConfig:
    """The typed run of one trial: its ``run`` (see :mod:`study.space`) on ``device``."""
    return RunConfig.from_dict({**trial_run(config), "device": device})


def trial_device(gpus: float) -> str:
    """The GPU Ray assigned (it sets CUDA_VISIBLE_DEVICES), else the CPU: a node may declare GPUs
    that CUDA cannot see, and then the trial still runs."""
    if gpus > 0 and torch.cuda.is_available():
        return "cuda"
    if gpus > 0:
        log.warning("trial was given %s GPU but CUDA is not available; running on CPU", gpus)
    return "cpu"


def train_strategy(config: dict[str, Any]) -> None:
    """Run one trial to the end, reporting after every epoch."""
    # Ray logs a line per checkpoint from every trial; the status table is what users watch.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    config = config.get("trial", config)
    started_at = time.time()
    node = ray.get_runtime_context().get_node_id()
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    run_config = to_run_config(config, trial_device(resources.get("GPU", 0)))
    data = prepare(run_config)
    run = StrategyRun(run_config, run_config.strategies[0], data)

    records: list[dict[str, Any]] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            run.load_state_dict(load_state(Path(folder) / "state.pt", data.device))
            records = json.loads((Path(folder) / "records.json").read_text())
        log.info("restored at task %d epoch %d", run.task, run.epoch)

    every = int(config.get("checkpoint_every") or 0) or run_config.epochs
    fault = config.get("fail_once_at")
    while not run.done:
        record = run.run_epoch().to_dict()
        records.append(record)
        metrics = {
            **record,
            **objectives(records),
            "epochs_done": run.epochs_done,
            "epochs_total": run.total_epochs,
            RESTART_EPOCHS: max(0, run.epochs_done - run_config.epochs),
            RUN_COMPLETE: run.done,
            "device": str(data.device),
            "node": node,
            "started_at": started_at,
            "reported_at": time.time(),
        }
        if fault and _fault_due(fault, record):
            raise RuntimeError(f"injected fault at task {record['task']} epoch {record['epoch']}")
        if run.epochs_done % every == 0 or run.done:
            with tempfile.TemporaryDirectory() as folder:
                save_state(Path(folder) / "state.pt", run.state_dict())
                (Path(folder) / "records.json").write_text(json.dumps(records))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)


def _fault_due(fault: dict[str, Any], record: dict[str, Any]) -> bool:
    """Testing hook: crash once, after epoch ``fault['epoch']`` of task ``fault['task']``
    (``fault['marker']`` is a file that records that the crash happened)."""
    if (record["task"], record["epoch"]) != (fault["task"], fault["epoch"]):
        return False
    marker = Path(fault["marker"])
    if marker.exists():
        return False
    marker.write_text(str(os.getpid()))
    return True
