"""Experiment tracking: a study file's ``tracking:`` block as Ray Tune logger callbacks.

Off unless the study file names a backend::

    tracking:
      mlflow: {tracking_uri: "sqlite:///mlflow.db", experiment_name: my-study}
      wandb: {project: plasticity, mode: offline}

Ray Tune's own callbacks do the work (``ray.air.integrations.mlflow.MLflowLoggerCallback``,
``ray.air.integrations.wandb.WandbLoggerCallback``): every trial becomes a run with its config
as parameters and every epoch's report as metrics at step ``training_iteration`` (the epoch
count). The clients are optional extras (``pip install -e ".[mlflow]"``, ``".[wandb]"``);
:func:`check_tracking` names a missing one before anything is written.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from plasticity.errors import UserError
from study.spec import StudySpec
from study.trials import label

CLIENTS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
"""backend -> (module to import, the extra that installs it)."""


def backends(spec: StudySpec) -> list[str]:
    """The tracking backends a study uses, in a fixed order."""
    return [name for name in CLIENTS if getattr(spec.tracking, name) is not None]


def check_tracking(spec: StudySpec) -> None:
    """Fail with one line if a backend's client is not installed, or MLflow would refuse its
    tracking URI (a folder, which MLflow 3 accepts only with ``MLFLOW_ALLOW_FILE_STORE``)."""
    for name in backends(spec):
        module, extra = CLIENTS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"tracking.{name} needs the {module} client, which is not installed: "
                f'pip install "plasticity-study[{extra}]" (or remove tracking.{name})'
            )
    if spec.tracking.mlflow is not None:
        uri = spec.tracking.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        _check_mlflow_uri(uri)


def _check_mlflow_uri(uri: str | None) -> None:
    if uri is None or not _is_folder_uri(uri):
        return
    from mlflow import environment_variables as env  # present: check_tracking looked

    allow = getattr(env, "MLFLOW_ALLOW_FILE_STORE", None)
    if allow is not None and not allow.get():
        raise UserError(
            f"tracking.mlflow.tracking_uri {uri!r} is a folder, which this MLflow refuses "
            "unless MLFLOW_ALLOW_FILE_STORE=true is set; use sqlite:///PATH/mlflow.db (a "
            "local file) or a server"
        )


def _is_folder_uri(uri: str) -> bool:
    return uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks"))


def tracking_text(spec: StudySpec) -> str:
    """Where the study's trials are tracked, in one line (``plasticity study validate``)."""
    t, parts = spec.tracking, []
    if t.mlflow is not None:
        where = t.mlflow.tracking_uri or "$MLFLOW_TRACKING_URI or MLflow's default"
        parts.append(f"MLflow at {where}, experiment {t.mlflow.experiment_name or spec.name}")
    if t.wandb is not None:
        parts.append(f"Weights & Biases project {t.wandb.project} ({t.wandb.mode})")
    return "; ".join(parts) or "off (Ray's TensorBoard logs only)"


def trial_phase(trial: Any) -> tuple[str, str]:
    """``(PHASE-STRATEGY, STRATEGY)`` of a Ray trial, from its own config (the study's one
    experiment holds every phase's trials)."""
    strategy = trial.config.get("strategy", "?")
    return label(trial.config.get("phase", "?"), strategy), strategy


def tracking_callbacks(spec: StudySpec) -> list[Any]:
    """Ray Tune logger callbacks for the study's backends; each trial's run is tagged with the
    study, its phase (``search-STRATEGY`` or ``eval-STRATEGY``) and strategy."""
    check_tracking(spec)
    callbacks: list[Any] = []
    if spec.tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        class PhaseTaggedMLflow(MLflowLoggerCallback):
            def log_trial_start(self, trial: Any) -> None:
                base = self.tags
                phase, strategy = trial_phase(trial)
                self.tags = {**base, "phase": phase, "strategy": strategy}
                try:
                    super().log_trial_start(trial)
                finally:
                    self.tags = base

        m = spec.tracking.mlflow
        callbacks.append(
            PhaseTaggedMLflow(
                tracking_uri=m.tracking_uri,
                experiment_name=m.experiment_name or spec.name,
                tags={**m.tags, "study": spec.name},
            )
        )
    if spec.tracking.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        class PhaseTaggedWandb(WandbLoggerCallback):
            def log_trial_start(self, trial: Any) -> None:
                phase, strategy = trial_phase(trial)
                self.kwargs.update(job_type=phase, tags=[spec.name, phase, strategy])
                super().log_trial_start(trial)

        w = spec.tracking.wandb
        init: dict[str, Any] = {"mode": w.mode}
        if w.entity:
            init["entity"] = w.entity
        if w.dir:  # the logging actor may run in another working directory
            init["dir"] = str(Path(w.dir).expanduser().resolve())
        callbacks.append(PhaseTaggedWandb(project=w.project, group=w.group or spec.name, **init))
    return callbacks
