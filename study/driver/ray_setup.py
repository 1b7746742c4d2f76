"""Ray for a study: connecting (a local Ray or a cluster), what the workers get, the check that
a trial fits, and what the driver's logs say about situations a restore makes normal."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from plasticity.errors import UserError
from study.spec import StudySpec

log = logging.getLogger(__name__)


@contextlib.contextmanager
def connected(address: str | None, log_to_driver: bool = True) -> Iterator[None]:
    """Ray for the block: the cluster at ``address``, else a new local Ray (shut down after
    the block); a Ray already initialised in this process (tests) is used as it is."""
    import ray

    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        init_ray(address, include_dashboard=False, log_to_driver=log_to_driver)
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def ray_init_env() -> dict[str, Any]:
    """``ray.init``'s runtime environment for a study's workers on a cluster: the allocator
    settings as environment variables (:func:`plasticity.allocator.worker_env`), which glibc
    applies as each worker process starts, so they reach the trials' threads; set for this
    job's workers on every node. Empty where they do not apply."""
    from plasticity.allocator import worker_env

    env = worker_env()
    return {"runtime_env": {"env_vars": env}} if env else {}


def init_ray(address: str | None, **kwargs: Any) -> None:
    """``ray.init`` for a study. A local Ray (``address`` None) gets the allocator settings
    through the environment it is started with (the driver's, for the moment of the call):
    its raylet passes them to every worker, including those it starts ahead of the first
    trial, which a runtime environment would leave unused. A cluster gets them through
    :func:`ray_init_env`."""
    import ray

    from plasticity.allocator import worker_env

    if address is not None:
        ray.init(address=address, **ray_init_env(), **kwargs)
        return
    added = {k: v for k, v in worker_env().items() if k not in os.environ}
    os.environ.update(added)
    try:
        ray.init(address="local", **kwargs)
    finally:
        for k in added:
            os.environ.pop(k, None)


def check_resources(spec: StudySpec) -> None:
    """Fail before any trial starts if no alive node can hold one trial."""
    import ray

    need_cpu, need_gpu = spec.resources.cpu, spec.resources.gpu
    for node in ray.nodes():
        have = node.get("Resources", {})
        if node.get("Alive") and have.get("CPU", 0) >= need_cpu and have.get("GPU", 0) >= need_gpu:
            return
    raise UserError(
        f"no node of the cluster has {need_cpu} CPU and {need_gpu} GPU for one "
        f"trial (cluster: {ray.cluster_resources()})"
    )


class ExpectedOnRestore(logging.Filter):
    """Ray logs, as an error with a traceback, a restored trial's attempt to delete a checkpoint
    that the rollback to the snapshot had already removed: harmless, and after a restore
    expected. One quiet line replaces it; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if "Error handling checkpoint" in str(record.msg) and isinstance(error, FileNotFoundError):
            log.info("a checkpoint rolled back by the restore was already gone (harmless)")
            return False
        return True


class DiskFullInOneLine(logging.Filter):
    """A full storage fails every write of a study: each trial's checkpoint (Ray retries it,
    in vain), Ray's syncs, the driver's files. Ray logs each with a traceback; one line each
    says it (the driver then stops with its own one line, and a resume after space is freed
    continues). Every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        text = f"{record.getMessage()} {error or ''}"
        if "No space left on device" in text:
            first = record.getMessage().splitlines()[0].rstrip(" :")
            record.msg, record.args = f"{first}: no space left on the storage", ()
            record.exc_info = record.exc_text = None
        return True


def quiet_restores() -> None:
    """Filter what Ray logs about situations a restore makes normal (see ExpectedOnRestore) and
    its warning that snapshots are frequent (each trial checkpoint forces one, by design)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    legacy_console()  # else Ray ignores the restored reporter, with a warning
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, ExpectedOnRestore) for f in controller.filters):
        controller.addFilter(ExpectedOnRestore())
    for name in (
        "ray.tune.execution.tune_controller",
        "ray.train._internal.syncer",
        "ray.tune.execution.experiment_state",  # its snapshot upload
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DiskFullInOneLine) for f in logger.filters):
            logger.addFilter(DiskFullInOneLine())


def snapshot_when_needed() -> None:
    """Ray forces an experiment snapshot when a trial has checkpointed ``num_to_keep`` times
    since the last one (ray 2.60's ``_ExperimentCheckpointManager.on_trial_checkpoint``), so
    that no snapshot names a checkpoint that the trial's newer ones have deleted. A snapshot
    writes every trial's state (~35 kB each here) and the searcher, so its cost grows with
    the study; with tiny trials whose two checkpoints came since the last snapshot, that was
    one snapshot per trial: profiled at 1,000 trials, a fifth of the driver's CPU, and the
    reason its cost per trial grew. Yet a trial that had no checkpoint when the last snapshot
    was taken can lose none that it names: its checkpoints are not counted until it has one
    kept from before, so only trials that could lose the snapshot's checkpoint force one.
    Otherwise Ray's own period (``TUNE_GLOBAL_CHECKPOINT_S``, "auto": every 10 s or more,
    at most ~5% of the time) takes the snapshots. Idempotent."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as Manager

    if getattr(Manager.on_trial_checkpoint, "_study", False):
        return
    force_if_needed = Manager.on_trial_checkpoint

    def on_trial_checkpoint(self: Any, trial: Any) -> None:
        counted = self._trial_num_checkpoints_since_last_sync
        kept = trial.run_metadata.checkpoint_manager.best_checkpoint_results
        n = self._sync_every_n_trial_checkpoints
        if n and n >= 2 and trial not in counted and len(kept) < 2:
            return  # its first checkpoint: the last snapshot names none of this trial's
        force_if_needed(self, trial)

    on_trial_checkpoint._study = True
    Manager.on_trial_checkpoint = on_trial_checkpoint


def legacy_console() -> None:
    """Ray Tune's legacy console engine, the one that honours a ``CLIReporter`` (also for a
    restored experiment, whose reporter comes back with it): the default engine since Ray 2.6
    ignores a custom reporter (ray-project/ray#38202). ``RAY_AIR_NEW_OUTPUT=1`` keeps Ray's
    default."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
