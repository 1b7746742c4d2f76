"""The study's Ray Tune ``Tuner``: its trainable, searcher, sampler, scheduler, run config and
progress table. Built once at launch; ``Tuner.restore`` brings the same one back from
``tuner.pkl`` (Ray pickles :func:`trial_dirname` into it by reference as
``study.driver.trial_dirname``: that name is part of a study folder's format)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

from plasticity.seeding import derive_seed
from study.driver.ray_setup import legacy_console
from study.plan import base_run, eval_templates, spec_rungs, trial_constants
from study.space import define_space
from study.spec import StudySpec
from study.store.checkpoints import KEEP
from study.store.folder import EXPERIMENT, StudyFolder
from study.trials import RESTART_EPOCHS, SEARCH, label


def make_trainable(spec: StudySpec):
    """The wrapped trainable; ``Tuner.restore`` must get the same one."""
    from ray import tune

    from study.trainable import train_strategy

    return tune.with_resources(
        train_strategy, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )


def make_tuner(folder: StudyFolder, spec: StudySpec, trainable: Any, rungs: dict[str, list[int]]):
    """The study's Tuner: one :class:`study.search.StudySearch` over every strategy, each
    searching to the largest of its ``rungs`` and evaluated at every one."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from study.search import (
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
                constants=trial_constants(spec, strategy, SEARCH),
            ),
            metric=spec.metric,
            mode="max",
            sampler=make_sampler(spec, strategy),
            study_name=f"{spec.name}.{strategy}",  # in memory: saved with Ray's snapshot
        )
    search = StudySearch(
        spec.name,
        searchers,
        rungs=rungs,
        concurrency=spec.concurrency,
        evals=eval_templates(spec),
        cap=spec.max_concurrent_trials,
        metric=spec.metric,
    )
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
        run_config=run_config(folder, spec),
    )


def make_sampler(spec: StudySpec, strategy: str):
    """TPE for a conditional space with concurrent trials: start-up sized to the budget, the
    multivariate group model (it models the parameters that exist together, e.g. ``alpha0``
    and ``ramp`` only for ramped schedules) and the constant liar (a running trial counts as a
    poor one, so concurrent suggestions spread out), seeded per strategy. The start-up is
    sized to the strategy's largest rung as the study file sets it (an extension does not
    change it: the sampler is built once)."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # multivariate and group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=spec.budget.startup(spec_rungs(spec)[strategy][-1]),
            multivariate=True,
            group=True,
            constant_liar=True,
            seed=derive_seed(spec.budget.search_seed, "tpe", strategy) % 2**32,
        )


@contextlib.contextmanager
def pending_trials(spec: StudySpec) -> Iterator[None]:
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


def run_config(folder: StudyFolder, spec: StudySpec):
    """The experiment's ``tune.RunConfig``: in the study folder, with the study's retries,
    two checkpoints kept per trial, the progress table and the tracking callbacks."""
    from ray import tune

    from study.tracking import tracking_callbacks

    return tune.RunConfig(
        name=EXPERIMENT,
        storage_path=folder.root,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP),
        verbose=1,  # Ray's status table; per-epoch results go to result.json, not the console
        progress_reporter=progress_reporter(spec),
        callbacks=tracking_callbacks(spec),
    )


PROGRESS_METRICS = {"task": "task", "epochs_done": "epochs", "epochs_total": "of"}
"""Ray's status table: the trial's task and epochs, beside the objective (see
:func:`progress_reporter`)."""
PROGRESS_PARAMS = ["strategy", "phase", "run/seed", "run/lr"]
"""Ray's status table: a trial's strategy, phase, seed and learning rate. Ray looks every
column up in the best trial's config and fails on a missing key, so only keys that every trial
has (an evaluation trial has no Optuna parameters)."""


def progress_reporter(spec: StudySpec):
    """Ray's live status table: per trial the objective so far, its epoch progress and
    :data:`PROGRESS_PARAMS`, and the best trial so far. Ray 2.60's default output ignores a
    reporter and prints every trial's whole config; the legacy engine, which honours it, is
    chosen unless ``RAY_AIR_NEW_OUTPUT`` is set. The reporter holds the metric and mode, so the
    ``TuneConfig`` must not set them (Ray refuses both; the searcher has them).
    """
    from ray import tune

    legacy_console()
    return tune.CLIReporter(
        metric_columns={spec.metric: spec.metric, **PROGRESS_METRICS},
        parameter_columns={p: p.rsplit("/", 1)[-1] for p in PROGRESS_PARAMS},
        metric=spec.metric,
        mode="max",
        print_intermediate_tables=True,
        sort_by_metric=True,  # finished trials best first
        max_report_frequency=30,
    )


def trial_dirname(trial: Any) -> str:
    """``PHASE-STRATEGY_TRIALID``, e.g. ``search-reset_1a2b3_00000`` (Ray's default folder
    names spell out the whole config)."""
    config = trial.config
    return (
        f"{label(config.get('phase', 'trial'), config.get('strategy', 'trial'))}_{trial.trial_id}"
    )
