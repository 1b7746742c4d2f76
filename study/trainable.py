"""The Ray Tune function trainable: one strategy, one hyperparameter configuration, the whole
restart loop, run in-process.

The config dict becomes plasticity's typed :class:`RunConfig` at this boundary. The trainable
reports after every epoch (the epoch's record plus the running objectives of
:mod:`plasticity.metrics`; the last report carries the final objective, which is what Optuna
records) and checkpoints the loop's whole state at task boundaries (or every
``checkpoint_every`` epochs) and after its last epoch. When Ray retries a crashed trial it
continues from the last checkpoint; the loop is deterministic, so the records equal those of an
uninterrupted run. A checkpoint that cannot be read (truncated, garbage, another
configuration's) is never used: the trial continues from the newest one that loads (Ray keeps
two), else from the start, and says which (``restored_from`` in its reports and a warning in
its log).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from plasticity.allocator import keep_freed_memory
from plasticity.config import RunConfig
from plasticity.loop import StrategyRun, load_state, prepare, save_state
from plasticity.metrics import objectives, running_objectives
from study import faults
from study.faults import TrialFault
from study.store.checkpoints import Lease, end_lease, ended, write_lease
from study.trials import RESTART_EPOCHS, RESTORED_FROM, RUN_COMPLETE

log = logging.getLogger(__name__)

NOOP_ENV = "PLASTICITY_BENCH_NOOP"
"""Benchmark-only (``benchmarks/scale.py --noop``): with this variable set in the workers'
environment, a trial does not train; it reports records of a real trial's shape and checkpoints
at the same moments (:func:`report_only`), so that the driver's cost per trial can be measured
at thousands of trials. Not a study-file setting: no study a user launches sees it."""


# A Ray worker imports this module in its main thread, before it starts the thread that runs a
# trial: the allocator settings must come first to reach that thread (plasticity.allocator).
keep_freed_memory()


def to_run_config(config: dict[str, Any], device: str = "cpu") -> RunConfig:
    """The typed run of one trial: its ``run`` (see :mod:`study.space`) on ``device``."""
    return RunConfig.from_dict({**config["run"], "device": device})


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
    started_at = time.time()
    if os.environ.get(NOOP_ENV):
        report_only(config, started_at)
        return
    node = ray.get_runtime_context().get_node_id()
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    run_config = to_run_config(config, trial_device(resources.get("GPU", 0)))
    data = prepare(run_config)
    run, records, restored_from = restore(run_config, data, tune.get_checkpoint())

    context = {RESTORED_FROM: restored_from, "device": str(data.device), "node": node}
    context["started_at"] = started_at

    lease = TrialLease(node)

    def metrics(so_far: list[dict[str, Any]]) -> dict[str, Any]:
        lease.renew(so_far[-1].get("seconds", 0.0))
        return epoch_metrics(so_far, run_config.epochs, run.total_epochs, context)

    # Replay what the checkpoint holds: Ray's result logger restores result.json from storage
    # on a retry, which can lag behind (it syncs at experiment snapshots), so reports since
    # then would be missing from it. Replays repeat training_iteration values with identical
    # rows (the analysis keeps the last); Optuna and ASHA skip steps they have seen.
    for i in range(1, len(records) + 1):
        tune.report(metrics(records[:i]))

    every = int(config.get("checkpoint_every") or 0) or run_config.epochs
    fault = TrialFault.of(config)  # tests and the fault suite only
    while not run.done:
        record = run.run_epoch().to_dict()
        records.append(record)
        if fault is not None:
            fault.strike(record)
        # The last epoch checkpoints too, though only a resume in the window before Ray's next
        # snapshot reads it: the kill/resume guarantees were built on it (without it, two
        # kill/resume tests failed in a fresh-clone run). It forced a snapshot at every
        # trial's end until snapshots were forced only where a checkpoint the last one names
        # could be lost (study.driver.ray_setup.snapshot_when_needed).
        if run.epochs_done % every == 0 or run.done:
            faults.hold(record["task"])  # the fault suite only
            with tempfile.TemporaryDirectory() as folder:
                save_state(Path(folder) / "state.pt", run.state_dict())
                (Path(folder) / "records.json").write_text(json.dumps(records))
                tune.report(metrics(records), checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics(records))
    lease.end()


class TrialLease:
    """This trial's lease in the study folder (:mod:`study.store.checkpoints`): renewed at
    every report, ended with the run. It goes through the storage Ray gives the trial (Ray's
    developer API ``get_storage``: a path or a URI, as the study's). A write that fails (a full
    disk) is one warning: the lease only informs ``status`` and ``resume``."""

    def __init__(self, node: str) -> None:
        context = tune.get_context()
        storage = context.get_storage()
        self.fs = storage.storage_filesystem
        self.study = storage.experiment_fs_path.rsplit("/", 1)[0]
        self.trial, self.node, self.warned = context.get_trial_id(), node, False

    def renew(self, epoch_s: float) -> None:
        host, pid = socket.gethostname(), os.getpid()
        self._try(write_lease, Lease(self.trial, host, pid, self.node, time.time(), epoch_s))

    def end(self) -> None:
        self._try(end_lease, self.trial)

    def _try(self, write: Any, arg: Any) -> None:
        try:
            write(self.fs, self.study, arg)
        except OSError as e:
            if not self.warned:
                log.warning("cannot write the trial's lease (%s)", e.strerror or e)
                self.warned = True


def report_only(config: dict[str, Any], started_at: float) -> None:
    """The trial of :data:`NOOP_ENV`: every epoch's report with made-up accuracies (drawn from
    the trial's run, so a retry reports the same), a checkpoint at the same epochs as a real
    trial (its records only), no data, no network."""
    run_config = to_run_config(config)
    rng = random.Random(json.dumps(config["run"], sort_keys=True))
    epochs, total = run_config.epochs, (run_config.restarts + 1) * run_config.epochs
    every = int(config.get("checkpoint_every") or 0) or epochs
    context = {RESTORED_FROM: "", "device": "cpu", "node": "", "started_at": started_at}
    records: list[dict[str, Any]] = []
    for i in range(total):
        acc = rng.random()
        records.append(
            {
                "strategy": run_config.strategies[0],
                "seed": run_config.seed,
                "task": i // epochs,
                "epoch": i % epochs,
                "step": i + 1,
                "train_loss": 1 - acc,
                "train_acc": acc,
                "test_loss": 1 - acc,
                "test_acc": acc,
                "alpha": float("nan"),
                "params": 0,
                "trainable_params": 0,
                "majority_rate": 0.1,
                "test_meaningful": True,
                "seconds": 0.0,
            }
        )
        metrics = epoch_metrics(records, epochs, total, context)
        if (i + 1) % every == 0 or i + 1 == total:
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "records.json").write_text(json.dumps(records))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)


def epoch_metrics(
    records: list[dict[str, Any]], epochs: int, total: int, context: dict[str, Any]
) -> dict[str, Any]:
    """The report after the last of ``records`` (one per epoch so far; ``epochs`` per task,
    ``total`` in the run): that epoch's record, the running objectives and our keys.
    ``training_iteration`` is set to the epoch count: Ray's own counter goes on from the
    newest checkpoint, which a fallback to an older one (or a replay) leaves elsewhere. The
    last report's objectives, which Optuna records, are :func:`objectives`' to the bit (the
    analysis computes the same); earlier ones come from the faster
    :func:`running_objectives`."""
    done = len(records)
    return {
        "training_iteration": done,
        **records[-1],
        **(objectives if done == total else running_objectives)(records),
        "epochs_done": done,
        "epochs_total": total,
        RESTART_EPOCHS: max(0, done - epochs),
        RUN_COMPLETE: done == total,
        **context,
        "reported_at": time.time(),
    }


def restore(
    run_config: RunConfig, data: Any, checkpoint: tune.Checkpoint | None
) -> tuple[StrategyRun, list[dict[str, Any]], str]:
    """The run, its records so far and where it starts: from ``checkpoint`` (the newest, which
    Ray hands over) or, if that cannot be read, from the newest older one that can; from the
    start if none can. A checkpoint that fails to load is never used in part: each try
    starts from a fresh run."""
    strategy = run_config.strategies[0]
    if checkpoint is None:
        return StrategyRun(run_config, strategy, data), [], ""
    for candidate in [checkpoint, *_older(checkpoint)]:
        name = Path(candidate.path).name
        if _gone(candidate):
            # the driver deletes a trial's checkpoints as the search records it ended; a
            # resume from a snapshot taken before that runs the trial again
            log.info("checkpoint %s is gone (the trial had ended)", name)
            continue
        run = StrategyRun(run_config, strategy, data)
        try:
            with candidate.as_directory() as folder:
                run.load_state_dict(load_state(Path(folder) / "state.pt", data.device))
                records = json.loads((Path(folder) / "records.json").read_text())
            if not isinstance(records, list) or len(records) != run.epochs_done:
                raise ValueError(f"{len(records)} records for {run.epochs_done} epochs")
        except Exception as e:  # torch, pickle, zip and json each fail in their own way
            log.warning("checkpoint %s is unreadable (%s: %s)", name, type(e).__name__, e)
            continue
        level = logging.INFO if candidate is checkpoint else logging.WARNING
        log.log(level, "restored from %s at task %d epoch %d", name, run.task, run.epoch)
        return run, records, name
    log.warning("no readable checkpoint: the trial runs again from the start")
    return StrategyRun(run_config, strategy, data), [], "start"


def _gone(checkpoint: tune.Checkpoint) -> bool:
    """The checkpoint was deleted as its trial ended (a tombstone, or nothing, is left)."""
    from pyarrow import fs as pafs

    info = checkpoint.filesystem.get_file_info(checkpoint.path)
    if info.type == pafs.FileType.NotFound:
        return True
    state = checkpoint.filesystem.get_file_info(f"{checkpoint.path}/state.pt")
    return state.type == pafs.FileType.NotFound and ended(checkpoint.filesystem, checkpoint.path)


def _older(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    """The trial's other checkpoints older than ``checkpoint``, newest first."""
    from pyarrow import fs as pafs

    parent, name = checkpoint.path.rsplit("/", 1)
    infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    names = sorted(
        (i.base_name for i in infos if re.fullmatch(r"checkpoint_\d+", i.base_name)), reverse=True
    )
    return [
        tune.Checkpoint(f"{parent}/{n}", filesystem=checkpoint.filesystem)
        for n in names
        if n < name
    ]
