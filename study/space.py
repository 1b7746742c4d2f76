"""The define-by-run search space of one strategy (Optuna, through Ray Tune's OptunaSearch), and
the one function that turns chosen values into a run.

It lives in an importable module (never ``__main__``): the searcher state is pickled by
reference, and a restored study must find this function again.

A trial's config carries ``run``: the complete :meth:`plasticity.config.RunConfig.to_dict` of
that trial (setting, strategy, seed and every searched value in place), resolved here by
:func:`resolve_run`. The trainable, the evaluation phase and the analysis read ``run`` and
nothing else, so no layer maps search names back to run fields. (Optuna's own parameter names
stay at the top level of the config, as OptunaSearch puts them.)

Conditional parameters: for ``expanded``, the schedule kind is drawn first; ``alpha0`` and
``ramp`` only exist for kinds that use them (not ``paper``). For the ``step`` kind Optuna calls
the ramp ``step_epoch`` (:func:`optuna_name`: a different quantity, the epoch of the jump, so
TPE models it apart); in ``run`` it is the strategy's ``ramp``. The ramp is capped at the
trial's epochs per restart, which are drawn before it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from plasticity.config import TRIAL_FIELDS

ORDER = ("epochs", "lr", "weight_decay", "schedule")
STEP_EPOCH = "step_epoch"


def optuna_name(key: str, schedule: str | None) -> str:
    """The name Optuna knows a parameter by: for ``step`` schedules the ramp is
    :data:`STEP_EPOCH` (the epoch of the jump, another quantity than a ramp's length, so TPE
    models it apart); every other parameter keeps its name."""
    return STEP_EPOCH if key == "ramp" and schedule == "step" else key


def resolve_run(base: Mapping[str, Any], strategy: str, values: Mapping[str, Any]) -> dict:
    """``base`` (a run dict for ``strategy``) with ``values`` in place: keys of
    :data:`~plasticity.config.TRIAL_FIELDS` are run fields, the others the strategy's own."""
    run = copy.deepcopy(dict(base))
    own = dict(run.get("strategy_params", {}).get(strategy, {}))
    for key, value in values.items():
        if key in TRIAL_FIELDS:
            run[key] = value
        else:
            own[key] = value
    run["strategy_params"] = {strategy: own}
    return run


def define_space(
    trial: Any, space: dict[str, Any], base: dict[str, Any], strategy: str, constants: dict
) -> dict[str, Any]:
    """Suggest every searchable parameter on ``trial``; return ``constants`` and ``run`` (the
    trial's whole run, :func:`resolve_run` of ``base``), which OptunaSearch merges with the
    suggested values into the trial's config.

    ``space`` maps a parameter to ``{"low", "high", "log", "int"}`` (a range), a list
    (categorical) or a plain value (fixed).
    """
    values: dict[str, Any] = {}
    keys = sorted(space, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
    for key in keys:
        value, kind = space[key], values.get("schedule")
        name = optuna_name(key, kind)
        if key in ("alpha0", "ramp") and kind == "paper":
            continue  # the paper's staircase has neither
        if key == "ramp":
            epochs = values.get("epochs", base["epochs"])
            if isinstance(value, dict):
                value = {**value, "high": min(value["high"], epochs)}
                value["low"] = min(value["low"], value["high"] / 2)
        if isinstance(value, dict):
            values[key] = _suggest_range(trial, name, value)
        elif isinstance(value, list):
            values[key] = _suggest_choice(trial, name, value)
        else:
            values[key] = value
    return {**constants, "run": resolve_run(base, strategy, values)}


def _suggest_choice(trial: Any, name: str, choices: list[Any]) -> Any:
    """One of ``choices``. Optuna's categorical takes only None, bool, int, float and str (and
    its storage records the choices): a choice that is a list, such as hidden widths
    ``[100, 100]``, is offered under its label ``"100,100"`` and handed back as the list."""
    labels = [",".join(map(str, c)) if isinstance(c, (list, tuple)) else c for c in choices]
    return choices[labels.index(trial.suggest_categorical(name, labels))]


def _suggest_range(trial: Any, name: str, r: dict[str, Any]) -> float | int:
    if r.get("int"):
        return trial.suggest_int(name, int(r["low"]), int(r["high"]), log=bool(r.get("log")))
    return trial.suggest_float(name, float(r["low"]), float(r["high"]), log=bool(r.get("log")))
