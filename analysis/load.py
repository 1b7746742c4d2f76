"""Read run and study folders into one tidy table, with no Ray running and no training code.

One row per (source, trial, seed, strategy, task, epoch), with every metric the trial reported
and its hyperparameters as columns. Columns always present:

``source`` (folder), ``kind`` (run | study), ``phase`` (run | search | eval | superseded),
``trial``,
``status``, ``dataset``, ``model``, ``objective``, ``strategy``, ``seed``, ``task``, ``epoch``,
``global_epoch`` (task · epochs + epoch), ``epochs``, ``lr``, the strategy's parameters, and the
record fields of :class:`plasticity.loop.Record`. Study trials also have ``rung`` (an evaluation
trial: the number of search trials after which the best it re-runs was chosen, the rung of the
budget ladder it ran for; a rung that re-used it is in study.json's ``ladder``, see
:mod:`analysis.budget`) and ``search_index`` (a search trial: its position, from 1, in the order
its strategy's search suggested it, from study.json's ``search_order``; empty for studies from
before the ladder).

Studies: trials are read from each experiment's ``result.json`` (one JSON object per report):
the study's one experiment ``trials/``, or, in studies written before it, ``search-STRATEGY/``
and ``eval/``. A trial's phase is its config's ``phase`` (search or eval), or ``superseded``
for an evaluation trial of a best that an extended search replaced (study.json's
``superseded``): kept in the table, left out of the comparisons.
A resumed trial repeats ``training_iteration`` values; the last report of each iteration wins.
Trial folders that the newest ``experiment_state-*.json`` does not know (orphans of a restore)
are left out and counted. A truncated or corrupt result file is skipped and named.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.columns import run_columns
from plasticity.errors import UserError

log = logging.getLogger(__name__)

RUN_KIND = "plasticity-run"
STUDY_KIND = "plasticity-study"
EXPERIMENTS = ("trials", "eval")
"""A study's Ray Tune experiments besides ``search-STRATEGY`` (the layout before ``trials``)."""


@dataclass
class Loaded:
    """The tidy table plus what the reader noticed on the way."""

    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    studies: list[Path] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    """Studies (or runs) whose phases had not all finished."""


def load(paths: list[str | Path]) -> Loaded:
    """Read every path (run or study folder) into one table."""
    frames, out = [], Loaded(pd.DataFrame())
    for p in paths:
        path = Path(p)
        kind = folder_kind(path)
        frame = _load_run(path, out) if kind == RUN_KIND else _load_study(path, out)
        if frame is not None and not frame.empty:
            frames.append(frame)
    if not frames:
        raise UserError("no finished epochs to analyse in " + ", ".join(map(str, paths)))
    table = pd.concat(frames, ignore_index=True)
    table["global_epoch"] = table["task"] * table["epochs"] + table["epoch"]
    out.table = table.sort_values(["source", "phase", "trial", "task", "epoch"], ignore_index=True)
    return out


def folder_kind(path: Path) -> str:
    """``plasticity-run`` or ``plasticity-study``; :class:`UserError` for anything else."""
    if not path.is_dir():
        raise UserError(f"{path} is not a folder")
    for name in ("config.json", "study.json"):
        file = path / name
        if file.is_file():
            try:
                kind = json.loads(file.read_text()).get("kind")
            except (ValueError, AttributeError):
                raise UserError(f"{file} is corrupt (not a JSON object)") from None
            if kind in (RUN_KIND, STUDY_KIND):
                return kind
    raise UserError(
        f"{path} is not a run or a study (no config.json or study.json from plasticity)"
    )


def _load_run(path: Path, out: Loaded) -> pd.DataFrame | None:
    meta = json.loads((path / "config.json").read_text())
    config = meta.get("config")
    needed = ("dataset", "model", "objective", "epochs", "lr", "restarts", "strategies")
    if not isinstance(config, dict) or any(k not in config for k in needed):
        raise UserError(f"{path / 'config.json'} is corrupt (no complete run configuration)")
    records = path / "records.parquet"
    if not records.is_file():
        out.warnings.append(f"{path}: no records.parquet yet (run not started or interrupted)")
        out.running.append(str(path))
        return None
    try:
        frame = pd.read_parquet(records)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(
            f"{records} is unreadable (truncated or corrupt: {type(e).__name__}); "
            "re-run the run into a new --out"
        ) from None
    expected = (config["restarts"] + 1) * config["epochs"] * len(config["strategies"])
    if len(frame) < expected:
        out.running.append(str(path))
    for strategy in config["strategies"]:
        for key, value in run_columns(config, strategy).items():
            if key not in frame:
                frame[key] = None
            frame.loc[frame.strategy == strategy, key] = value
    frame["source"], frame["kind"], frame["phase"] = str(path), "run", "run"
    frame["trial"] = frame["strategy"] + "-s" + frame["seed"].astype(str)
    frame["status"] = "TERMINATED" if len(frame) >= expected else "RUNNING"
    return frame


def _load_study(path: Path, out: Loaded) -> pd.DataFrame | None:
    state = json.loads((path / "study.json").read_text())
    out.studies.append(path)
    unfinished = [p for p, s in state.get("phases", {}).items() if s != "done"]
    if unfinished:
        out.running.append(f"{path} ({', '.join(unfinished)} not finished)")
    frames = []
    superseded = set(state.get("superseded", []))
    order = {
        t: i + 1
        for trials in (state.get("search_order") or {}).values()
        for i, t in enumerate(trials)
    }
    for experiment in sorted(p for p in path.iterdir() if p.is_dir()):
        if experiment.name in EXPERIMENTS or experiment.name.startswith("search-"):
            frames += _load_experiment(path, experiment, out, superseded, order)
    if superseded:
        out.warnings.append(
            f"{path}: left {len(superseded)} evaluation trial(s) of an earlier best out of the "
            "comparisons (the study was extended and found another best; phase 'superseded')"
        )
    if not frames:
        out.warnings.append(f"{path}: no trial has reported yet")
        return None
    return pd.concat(frames, ignore_index=True)


def _load_experiment(
    study: Path,
    experiment: Path,
    out: Loaded,
    superseded: set[str] = frozenset(),
    order: dict[str, int] | None = None,
) -> list[pd.DataFrame]:
    """The trials of a Ray Tune experiment that its newest state knows, as one frame (in a
    list: none when no trial has reported)."""
    folder_phase = "eval" if experiment.name == "eval" else "search"
    known = _known_trials(experiment)
    reports, constants, orphans = [], [], 0
    for result in sorted(experiment.glob("*/result.json")):
        rows = _read_results(result, out)
        if not rows:
            continue
        trial_id = rows[0].get("trial_id")
        if known is not None and trial_id not in known:
            orphans += 1
            continue
        config = rows[-1].get("config") or _params(result.parent)
        trial = config.get("trial", config)
        run, phase = trial.get("run"), trial.get("phase", folder_phase)
        if not isinstance(run, dict):
            out.warnings.append(
                f"skipped {result.parent}: its config has no run (a trial from an older "
                "plasticity; analyse it with that version)"
            )
            continue
        if trial_id in superseded:
            phase = "superseded"
        reports.append(rows)
        constants.append(
            {
                **run_columns(run, run["strategies"][0]),
                "source": str(study),
                "kind": "study",
                "phase": phase,
                "trial": trial_name(experiment.name, trial_id),
                "rung": trial.get("rung") if phase != "search" else None,
                "search_index": (order or {}).get(trial_id) if phase == "search" else None,
                "status": (known or {}).get(trial_id, "UNKNOWN"),
            }
        )
    if orphans:
        out.warnings.append(
            f"{experiment}: left out {orphans} orphan trial folder(s) that "
            "the experiment state does not know (a restore rolled them back)"
        )
    return [_trials_frame(reports, constants)] if reports else []


def _trials_frame(reports: list[list[dict[str, Any]]], constants: list[dict[str, Any]]):
    """One frame of every trial's reports (``reports[i]``: trial i's rows) with trial i's
    ``constants`` in each of its rows (they replace reported columns of the same name): the
    frame that concatenating one frame per trial gives, columns and dtypes included, built
    at once (a frame per trial cost ~50 ms each, most of ``analyze`` at 1,000 trials)."""
    frame = pd.DataFrame([row for rows in reports for row in rows])
    frame = frame.drop(columns=["config"], errors="ignore")
    counts = [len(rows) for rows in reports]
    order: dict[str, None] = {}  # pd.concat's: each trial's columns, then its constants
    for rows, const in zip(reports, constants):
        order.update((k, None) for row in rows for k in row if k != "config")
        order.update(dict.fromkeys(const))
    for key in dict.fromkeys(k for c in constants for k in c):
        values = [c.get(key, _MISSING) for c in constants]
        frame[key] = _repeated(key, values, counts)
    return frame[list(order)]


_MISSING = object()
"""A constant that a trial does not have (another strategy's parameter): NaN in its rows."""


def _repeated(key: str, values: list[Any], counts: list[int]) -> pd.Series:
    """A column holding ``values[i]`` ``counts[i]`` times, of the dtype that concatenating a
    frame per value (each set to its value, or without the column where it is
    :data:`_MISSING`) would give it: one dtype if every value has it, else what
    ``pd.concat`` makes of them (e.g. object for whole numbers and None)."""
    samples = {type(v): v for v in values}
    frames = [
        pd.DataFrame({key: [v]}) if v is not _MISSING else pd.DataFrame({f"not {key}": [0]})
        for v in samples.values()
    ]
    dtype = pd.concat(frames, ignore_index=True)[key].dtype
    repeated = [np.nan if v is _MISSING else v for v, n in zip(values, counts) for _ in range(n)]
    return pd.Series(repeated, dtype=dtype)


def trial_name(experiment: str, trial_id: str) -> str:
    """A study trial's ``trial`` in the table: ``EXPERIMENT/TRIAL_ID``."""
    return f"{experiment}/{trial_id}"


def _known_trials(experiment: Path) -> dict[str, str] | None:
    """trial_id -> status from the newest experiment state (None: no state file)."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    # A driver killed mid-write leaves the newest empty or torn: the newest whole state is the
    # file, else the driver's checked copy of it (FILE.whole), else an older session's.
    for path in [p for state in reversed(states) for p in (state, Path(f"{state}.whole"))]:
        try:
            data = json.loads(path.read_text())
            trials = [json.loads(t[0]) for t in data["trial_data"]]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
        return {t["trial_id"]: t.get("status", "UNKNOWN") for t in trials}
    return None


def _params(trial: Path) -> dict[str, Any]:
    try:
        return json.loads((trial / "params.json").read_text())
    except (OSError, ValueError):
        return {}


def _read_results(path: Path, out: Loaded) -> list[dict[str, Any]]:
    """Reports of one trial, one per training_iteration (the last of repeats wins)."""
    by_iteration: dict[int, dict[str, Any]] = {}
    bad = 0
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        out.warnings.append(f"skipped {path}: unreadable ({type(e).__name__})")
        return []
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            by_iteration[int(row["training_iteration"])] = row
        except (ValueError, KeyError, TypeError):
            bad += 1
    if bad:
        out.warnings.append(f"{path}: skipped {bad} corrupt or truncated line(s)")
    return [by_iteration[k] for k in sorted(by_iteration) if "task" in by_iteration[k]]
