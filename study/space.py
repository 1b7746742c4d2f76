"""The define-by-run search space of one strategy (Optuna, through Ray Tune's OptunaSearch).

It lives in an importable module (never ``__main__``): the searcher state is pickled by
reference, and a restored study must find this function again.

Conditional parameters: for ``expanded``, the schedule kind is drawn first; ``alpha0`` and
``ramp`` only exist for kinds that use them (not ``paper``), and the ramp is named
``step_epoch`` for the ``step`` kind (a different quantity, so TPE models it apart) and is
capped at the trial's epochs per restart, which are drawn before it.
"""

from __future__ import annotations

from typing import Any

ORDER = ("epochs", "lr", "weight_decay", "schedule")


def define_space(
    trial: Any, space: dict[str, Any], constants: dict[str, Any], default_epochs: int
) -> dict[str, Any]:
    """Suggest every searchable parameter on ``trial``; return the fixed ones and ``constants``
    (OptunaSearch merges them with the suggested values into the trial's config).

    ``space`` maps a parameter to ``{"low", "high", "log", "int"}`` (a range), a list
    (categorical) or a plain value (fixed).
    """
    fixed: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    keys = sorted(space, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
    for key in keys:
        value = space[key]
        name = key
        kind = chosen.get("schedule", fixed.get("schedule"))
        if key in ("alpha0", "ramp") and kind == "paper":
            continue  # the paper's staircase has neither
        if key == "ramp":
            epochs = chosen.get("epochs", fixed.get("epochs", default_epochs))
            if isinstance(value, dict):
                value = {**value, "high": min(value["high"], epochs)}
                value["low"] = min(value["low"], value["high"] / 2)
            if kind == "step":
                name = "step_epoch"
        if isinstance(value, dict):
            chosen[key] = _suggest_range(trial, name, value)
        elif isinstance(value, list):
            chosen[key] = trial.suggest_categorical(name, value)
        else:
            fixed[key] = value
    return {**fixed, **constants}


def _suggest_range(trial: Any, name: str, r: dict[str, Any]) -> float | int:
    if r.get("int"):
        return trial.suggest_int(name, int(r["low"]), int(r["high"]), log=bool(r.get("log")))
    return trial.suggest_float(name, float(r["low"]), float(r["high"]), log=bool(r.get("log")))
