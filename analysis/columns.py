"""The hyperparameter columns of a run's rows, from its configuration: plain Python (no pandas),
so that ``plasticity study status`` can show a trial's searched values at once."""

from __future__ import annotations

from typing import Any

RUN_SKIP = ("strategies", "seed", "device", "data_dir", "strategy_params")
"""Run fields that are not hyperparameter columns (seed and strategy are columns of the
record)."""


def model_label(run: dict[str, Any]) -> str:
    """The model with its factors, e.g. ``mlp`` (the model's own widths, no norm layers),
    ``mlp[100-100]``, ``mlp[100-100,ln]``, ``cnn[ln]``: runs that differ in width, depth or
    norm are different settings to the analysis (a study axis)."""
    parts = []
    if run.get("hidden"):
        parts.append("-".join(str(w) for w in run["hidden"]))
    if run.get("norm", "none") != "none":
        parts.append("ln" if run["norm"] == "layer" else str(run["norm"]))
    return f"{run['model']}[{','.join(parts)}]" if parts else str(run["model"])


def run_columns(run: dict[str, Any], strategy: str) -> dict[str, Any]:
    """Hyperparameter columns of one strategy's rows: the run's setting and optimizer fields
    and ``strategy``'s own parameters (from a run's ``config.json`` or a trial's ``run``).
    ``model`` is :func:`model_label`, the model with its factors; ``hidden`` and ``norm`` stay
    columns of their own (``hidden`` as text, ``"100,100"``: a cell holds one value)."""
    cols = {k: v for k, v in run.items() if k not in RUN_SKIP}
    if "model" in run:
        cols["model"] = model_label(run)
    if isinstance(cols.get("hidden"), (list, tuple)):
        cols["hidden"] = ",".join(str(w) for w in cols["hidden"])
    cols.update(run.get("strategy_params", {}).get(strategy, {}))
    return cols


def searched_values(space: dict[str, Any], run: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The values that a strategy's search ``space`` (a study file's) set in a trial's ``run``."""
    columns = run_columns(run, strategy)
    return {k: columns.get(k) for k in space}
