"""The hyperparameter columns of a run's rows, from its configuration: plain Python (no pandas),
so that ``plasticity study status`` can show a trial's searched values at once."""

from __future__ import annotations

from typing import Any

RUN_SKIP = ("strategies", "seed", "device", "data_dir", "strategy_params")
"""Run fields that are not hyperparameter columns (seed and strategy are columns of the
record)."""


def run_columns(run: dict[str, Any], strategy: str) -> dict[str, Any]:
    """Hyperparameter columns of one strategy's rows: the run's setting and optimizer fields
    and ``strategy``'s own parameters (from a run's ``config.json`` or a trial's ``run``)."""
    cols = {k: v for k, v in run.items() if k not in RUN_SKIP}
    cols.update(run.get("strategy_params", {}).get(strategy, {}))
    return cols


def searched_values(space: dict[str, Any], run: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The values that a strategy's search ``space`` (a study file's) set in a trial's ``run``."""
    columns = run_columns(run, strategy)
    return {k: columns.get(k) for k in space}
