"""The study file: a YAML document, validated on load into typed, frozen models.

A study compares strategies on one setting. Each strategy gets its own Optuna search with the
same budget (so baselines are tuned as hard as the method); the best configuration of each is
then re-run on fresh seeds (the evaluation phase). Example (the embedded demo)::

    name: demo
    setting: {dataset: mnist-5k, model: mlp, objective: class_shuffle, restarts: 2}
    strategies:
      reset:    {lr: {low: 1.0e-4, high: 1.0e-2, log: true}}
      expanded: {lr: {low: 1.0e-4, high: 1.0e-2, log: true},
                 schedule: [linear, cosine, step], alpha0: {low: 0.0, high: 0.8},
                 ramp: {low: 1, high: 8}}
    budget: {trials_per_strategy: 4, eval_seeds: 2}

A parameter is a range ``{low, high}`` (floats; ``log: true`` for a log scale, ``int: true`` for
integers), a list (categorical) or a single value (fixed). The model factors are searched as
choices: ``hidden: [[100, 100], [400, 400]]`` (each choice a list of widths), ``norm: [none,
layer]``; in ``setting`` they are fixed for the whole study (``hidden: [100, 100]``).
Searchable parameters: the run fields of ``plasticity.config.TRIAL_FIELDS`` (``lr``,
``epochs``, ``optimizer``, ``beta2``, ``weight_decay``, ``hidden``, ``norm``, …) for every
strategy, plus the strategy's own (``plasticity.strategies``, or a plugin's ``Params``: a
strategy key may be a name an installed package registers, or ``MODULE:CLASS`` in your code);
``STRATEGY: default`` searches the learning rate and the strategy's default ranges
(:func:`default_space`). For ``expanded``, ``ramp`` is the ramp length of linear/cosine and the
jump epoch of step, capped at the trial's epochs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from plasticity.config import SETTING_FIELDS, TRIAL_FIELDS, RunConfig
from plasticity.errors import UserError
from plasticity.fields import field_docs, field_types
from plasticity.metrics import OBJECTIVES
from study.budget import Budget
from study.space import resolve_run

OBJECTIVE_METRICS = OBJECTIVES
PRESET_DIR = Path(__file__).parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """A numeric range. ``int: true`` samples integers; ``log: true`` samples on a log scale."""

    low: float
    high: float
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


Param = Range | list[Any] | float | int | str | bool


def _setting_model() -> type[BaseModel]:
    """The study file's ``setting``: :class:`RunConfig`'s setting fields, with their types,
    defaults and docstrings (nothing copied by hand), validated by RunConfig itself."""
    kinds, docs = field_types(RunConfig), field_docs(RunConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    strict = {int: StrictInt, bool: StrictBool, str: StrictStr}
    fields: dict[str, Any] = {}
    for name in SETTING_FIELDS:
        kind = strict.get(kinds[name], kinds[name])
        if defaults[name] is None:
            kind = kind | None
        fields[name] = (kind, Field(defaults[name], description=docs.get(name)))
    return create_model("Setting", __base__=_Strict, __validators__=_SETTING_CHECK, **fields)


def _trusted(info: ValidationInfo) -> bool:
    """Validation of a study file taken as checked when it was written (see
    :func:`load_spec`)."""
    return bool(info.context and info.context.get("trusted"))


@model_validator(mode="after")
def _valid_run(self: BaseModel, info: ValidationInfo) -> BaseModel:
    if _trusted(info):
        return self
    try:
        RunConfig(**self.model_dump(), strategies=("reset",), device="cpu")
    except UserError as e:
        raise ValueError(str(e)) from None
    return self


_SETTING_CHECK = {"valid_run": _valid_run}
Setting = _setting_model()


class Resources(_Strict):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)
    """GPUs per trial; 0.25 packs four trials on one GPU. With no CUDA the trial uses the CPU."""


class Expectation(_Strict):
    """The published direction a scenario expects: ``strategy`` ends ``direction`` (above or
    below) ``baseline`` on ``metric`` (paired over evaluation seeds)."""

    metric: Literal[OBJECTIVE_METRICS]  # type: ignore[valid-type]
    strategy: str = "continuous"
    baseline: str = "reset"
    direction: Literal["above", "below"] = "below"


class Scenario(_Strict):
    """What a shipped scenario reproduces (its header, machine-readable)."""

    reproduces: str
    """The published result, with its source."""
    expects: list[Expectation] = Field(min_length=1)
    chance: float = Field(0.1, ge=0, lt=1)
    """The metric's chance level: 0 after normalisation (reset's mean is 1)."""


class MlflowTracking(_Strict):
    """Every trial as an MLflow run (Ray Tune's ``MLflowLoggerCallback``, on the driver)."""

    tracking_uri: str | None = None
    """Where runs go: ``sqlite:///PATH/mlflow.db`` (a local file), ``http(s)://SERVER``, or a
    folder (``file:///PATH``; MLflow 3 refuses folders unless ``MLFLOW_ALLOW_FILE_STORE=true``).
    Default: ``$MLFLOW_TRACKING_URI``, else MLflow's own default."""
    experiment_name: str | None = None
    """The MLflow experiment (default: the study's name)."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Tags on every run (the study and phase are always added)."""


class WandbTracking(_Strict):
    """Every trial as a Weights & Biases run (Ray Tune's ``WandbLoggerCallback``)."""

    project: str
    mode: Literal["offline", "online", "disabled"] = "offline"
    """offline (default) writes runs locally; sync them later with ``wandb sync``."""
    group: str | None = None
    """Runs are grouped by this (default: the study's name)."""
    entity: str | None = None
    """The W&B team or user (default: your default entity)."""
    dir: str | None = None
    """Where the local run files go (default: W&B's, ``./wandb``)."""


class Tracking(_Strict):
    """Optional experiment tracking of every trial (off unless a backend is given)."""

    mlflow: MlflowTracking | None = None
    wandb: WandbTracking | None = None


class StudySpec(_Strict):
    """A whole study file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    setting: Setting = Field(default_factory=Setting)
    strategies: dict[str, dict[str, Param]]
    budget: Budget = Budget()
    metric: Literal[OBJECTIVE_METRICS] = "auc_test_acc"  # type: ignore[valid-type]
    """The objective, maximised: see study.metrics."""
    resources: Resources = Resources()
    concurrency: int = Field(2, ge=1)
    """Trials of one strategy running at once (its search's trials, then its evaluation's);
    the strategies run side by side. TPE learns from a strategy's finished trials, so a lower
    value makes a strategy's search more guided and less parallel."""
    max_concurrent_trials: StrictInt | None = Field(None, ge=1)
    """Trials of the whole study running at once, all strategies together (none: only each
    strategy's concurrency and the cluster's resources limit them)."""
    storage: str = "studies"
    """Local or NFS path, or an s3:// / gs:// URI; the study lives in STORAGE/NAME."""
    checkpoint_every: int = Field(0, ge=0)
    """Epochs between checkpoints; 0 checkpoints at every task boundary."""
    max_failures: int = Field(2, ge=0)
    """Retries of a crashed trial (from its last checkpoint)."""
    scenario: Scenario | None = None
    """For a scenario of the suite: the published result and the direction it expects."""
    tracking: Tracking = Tracking()
    """Send every trial to MLflow and/or Weights & Biases (see :mod:`study.tracking`)."""

    @field_validator("strategies")
    @classmethod
    def _check_strategies(
        cls, value: dict[str, dict[str, Any]], info: ValidationInfo
    ) -> dict[str, dict[str, Any]]:
        if not value:
            raise ValueError("no strategies to compare")
        if _trusted(info):
            return value
        from plasticity import strategies as strategy_registry

        for name, space in value.items():
            try:  # a built-in, an installed plugin's name or MODULE:CLASS, imported here
                cls = strategy_registry.get(name)
            except UserError as e:
                raise ValueError(str(e)) from None
            own = {f.name for f in dataclasses.fields(cls.Params)}
            for key in space:
                if key not in own and key not in TRIAL_FIELDS:
                    allowed = ", ".join([*TRIAL_FIELDS, *sorted(own)])
                    raise ValueError(f"{name}: unknown parameter {key!r}; allowed: {allowed}")
            for key, v in space.items():
                _check_choices(f"{name}.{key}", v)
        return value

    @model_validator(mode="after")
    def _something_to_search(self) -> StudySpec:
        # A fixed configuration (no range, no list) is allowed where the budget is one trial:
        # more trials of it would repeat the same run, seed and all.
        one = self.budget.policy == "trials_per_strategy" and self.budget.ladder(0) == [1]
        for name, space in self.strategies.items():
            if not one and not any(isinstance(v, (Range, list)) for v in space.values()):
                raise ValueError(
                    f"{name}: nothing to search (give a range or a list; or, to run a fixed "
                    "configuration, budget: {trials_per_strategy: 1})"
                )
        return self


def _check_choices(where: str, value: Any) -> None:
    if isinstance(value, list) and not value:
        raise ValueError(f"{where}: an empty list of choices")
    if where.endswith(".hidden") and not all(isinstance(c, list) for c in _options(value)):
        raise ValueError(
            f"{where}: give a list of width lists, e.g. [[100, 100], [400, 400]] "
            "(one list of widths per choice)"
        )


def load_spec(
    source: str | Path | dict[str, Any],
    trusted: bool = False,
    add_strategies: tuple[str, ...] | list[str] = (),
    **overrides: Any,
) -> StudySpec:
    """A validated :class:`StudySpec` from a YAML file or a dict; ``overrides`` replace top-level
    keys (e.g. ``storage``, ``name``); ``add_strategies`` are compared too, each with its
    default space (``STRATEGY: default``) on the file's budget and seeds: a new method run
    through a shipped scenario beside its strategies. Every problem is one :class:`UserError`
    line.

    ``trusted``: a file checked when it was written (a launched study's study.yaml, a shipped
    preset) read by a command that only reads (status, list, presets): its types and structure
    are validated, but not what needs the training code (torch), i.e. building each strategy's
    run, the strategy registry and its parameters; ``STRATEGY: default`` stays unexpanded, as
    an empty space."""
    raw, where = (dict(source), "study") if isinstance(source, dict) else _read(Path(source))
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if add_strategies:
        _add_strategies(raw, add_strategies, where)
    _expand_defaults(raw, trusted)
    try:
        spec = StudySpec.model_validate(raw, context={"trusted": trusted})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}: {loc + ': ' if loc else ''}{msg}") from None
    if not trusted:
        _check_params(spec)
    _check_scheduler(spec, where)
    for expectation in spec.scenario.expects if spec.scenario else []:
        for role in ("strategy", "baseline"):
            name = getattr(expectation, role)
            if name not in spec.strategies:
                raise UserError(f"{where}: scenario.expects: {role} {name!r} is not compared")
    return spec


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """A study file's YAML mapping, and where it came from."""
    if not path.is_file():
        raise UserError(f"no study file at {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text (YAML) file") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of study settings")
    return raw, str(path)


def _add_strategies(raw: dict[str, Any], names: tuple[str, ...] | list[str], where: str) -> None:
    have = raw.get("strategies")
    have = dict(have) if isinstance(have, dict) else {}
    for name in names:
        if name in have:
            raise UserError(f"{where}: --with {name}: the study compares it already")
        have[name] = "default"
    raw["strategies"] = have


def default_space(strategy: str, setting: dict[str, Any]) -> dict[str, Any]:
    """``STRATEGY: default`` in a study file: the learning rate a decade either side of the
    paper's for the model and dataset, plus the strategy's own default ranges
    (``Params.SEARCH``), the ramp capped at the epochs per restart."""
    from plasticity import strategies as strategy_registry
    from plasticity.data import DATASETS
    from plasticity.models import PAPER_LR

    model, dataset = setting.get("model", "mlp"), setting.get("dataset", "mnist-5k")
    lr = PAPER_LR.get((model, DATASETS.get(dataset, DATASETS["mnist-5k"]).family), 1e-3)
    space: dict[str, Any] = {"lr": {"low": lr / 10, "high": lr * 10, "log": True}}
    for key, value in getattr(strategy_registry.get(strategy).Params, "SEARCH", {}).items():
        space[key] = dict(value) if isinstance(value, dict) else list(value)
    if "ramp" in space:
        space["ramp"]["high"] = min(space["ramp"]["high"], int(setting.get("epochs", 10)))
    return space


def _expand_defaults(raw: dict[str, Any], trusted: bool) -> None:
    strategies = raw.get("strategies")
    if not isinstance(strategies, dict):
        return
    setting = raw.get("setting") if isinstance(raw.get("setting"), dict) else {}
    for name, space in list(strategies.items()):
        if space == "default" and trusted:
            strategies[name] = {}
        elif space == "default":
            from plasticity import strategies as strategy_registry

            strategy_registry.get(name)  # an unknown name, a broken plugin: one UserError line
            strategies[name] = default_space(name, setting)


def _check_params(spec: StudySpec) -> None:
    """Fixed values, the ends of ranges and every choice must make a valid run (RunConfig
    validates, as it does for a trial); a range must fit its parameter's type."""
    from plasticity import strategies

    for name, space in spec.strategies.items():
        base = {**spec.setting.model_dump(), "strategies": [name], "device": "cpu"}
        kinds = {**field_types(strategies.get(name).Params), **field_types(RunConfig)}
        for key, value in space.items():
            if isinstance(value, Range):
                _check_range(f"{name}.{key}", value, kinds[key])
            for option in _options(value):
                try:
                    RunConfig.from_dict(resolve_run(base, name, {key: option}))
                except UserError as e:
                    raise UserError(f"{name}.{key} = {option!r}: {e}") from None


def _check_scheduler(spec: StudySpec, where: str) -> None:
    """asha's clock counts restart epochs only (``study.trials.RESTART_EPOCHS``): a trial
    of R restarts x E epochs can be stopped only if ``grace_epochs`` < R x E."""
    if spec.budget.scheduler != "asha":
        return
    epochs = [max(_options(s.get("epochs", spec.setting.epochs))) for s in spec.strategies.values()]
    longest = spec.setting.restarts * max(epochs)
    if spec.budget.grace_epochs >= longest:
        raise UserError(
            f"{where}: budget.grace_epochs ({spec.budget.grace_epochs}) must be below the restart "
            f"epochs of a trial (restarts x epochs = {longest}), or asha can stop no trial; "
            "lower it or use scheduler: fifo"
        )


def _options(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value.low, value.high] if isinstance(value, Range) else [value]


def _check_range(where: str, r: Range, kind: type) -> None:
    if kind is int and not r.int:
        raise UserError(f"{where} is an integer: give its range int: true (or a list)")
    if r.int and not (float(r.low).is_integer() and float(r.high).is_integer()):
        raise UserError(f"{where}: int: true needs whole-number ends, got {r.low} and {r.high}")
    if kind not in (int, float):
        raise UserError(f"{where} takes a list of choices, not a range")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown study preset {name!r}; choose from {', '.join(preset_names())}")
    return path
