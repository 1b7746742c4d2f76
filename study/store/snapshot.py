"""Ray Tune's experiment snapshot, read as files (no Ray): which files make one snapshot, the
sessions that wrote them, and the trials they hold.

Ray Tune saves an experiment as a snapshot of three files per driver session (launch or
resume), ``PREFIX<session>SUFFIX`` (:data:`SNAPSHOT_FILES`), rewritten in place at every
snapshot; ``Tuner.restore`` reads the newest of each kind. The trial states are JSON
(``experiment_state-*.json``: ``trial_data`` is a list of ``[trial JSON, runtime JSON]``
pairs, each itself a JSON string); :func:`parse_trials` is the one reader of that format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pyarrow import fs as pafs

SNAPSHOT_FILES = {
    "experiment_state-": ".json",  # the trials (JSON, written in place: may be torn)
    "searcher-state-": ".pkl",  # the StudySearch (study.search), pickled
    "search_gen_state-": ".json",  # the SearchGenerator around it (a cloudpickle)
}
"""The files of one Ray Tune experiment snapshot, ``PREFIX<session>SUFFIX``: every driver
session (launch or resume) writes its own set, rewritten in place at each snapshot."""

KEPT = ".whole"
"""Suffix of the checked copies of a whole snapshot (and of tuner.pkl) that the driver keeps.
Ray downloads every ``.json`` and ``.pkl`` file of the experiment folder and uploads them all
again with each snapshot, rewriting older sessions' files in place too: a full disk can
truncate those as well. The copy, under a name Ray does not touch, survives that."""

TUNER_FILE = "tuner.pkl"
"""Ray's Tuner of an experiment, written once at launch; ``Tuner.restore`` reads it first.
Ray uploads it again with every snapshot (in place), so a full disk can truncate it too: a
copy (:data:`KEPT`) is kept from the launch on."""


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


def newest_snapshot(fs: Any, experiment: str, prefix: str) -> str | None:
    """Path of the newest ``PREFIX<session>SUFFIX`` file (one of :data:`SNAPSHOT_FILES`) of an
    experiment folder; None if there is none."""
    paths = [f[prefix] for f in snapshot_sessions(fs, experiment).values() if prefix in f]
    return paths[-1] if paths else None


@dataclass(frozen=True)
class SavedTrial:
    """One trial as a snapshot holds it."""

    trial_id: str
    status: str
    """Ray's: PENDING, RUNNING, PAUSED, TERMINATED or ERROR."""
    config: dict[str, Any] = field(default_factory=dict)
    last_result: dict[str, Any] = field(default_factory=dict)
    """Its last report (empty before the first)."""
    start_time: float | None = None
    last_result_time: float | None = None


def parse_trials(data: bytes | str) -> list[SavedTrial]:
    """The trials of an ``experiment_state-*.json`` file's contents, in Ray's order. Raises
    ValueError, KeyError or TypeError on a file that is not whole."""
    out = []
    for trial_json, runtime_json in json.loads(data)["trial_data"]:
        t, rt = json.loads(trial_json), json.loads(runtime_json)
        out.append(
            SavedTrial(
                trial_id=str(t["trial_id"]),
                status=str(t.get("status", "")),
                config=t.get("config") or {},
                last_result=rt.get("last_result") or {},
                start_time=rt.get("start_time"),
                last_result_time=rt.get("last_result_time"),
            )
        )
    return out


def trial_statuses(data: bytes | str) -> dict[str, str]:
    """trial id -> Ray's status, of an ``experiment_state-*.json`` file's contents: what
    :func:`parse_trials` gives without reading each trial's runtime JSON (its last result,
    metric statistics and checkpoints: four fifths of the file), for the checks of a whole
    snapshot. Raises what :func:`parse_trials` raises."""
    out = {}
    for trial_json, _ in json.loads(data)["trial_data"]:
        t = json.loads(trial_json)
        out[str(t["trial_id"])] = str(t.get("status", ""))
    return out


def newest_trials(fs: Any, experiment: str) -> list[SavedTrial] | None:
    """The trials of the experiment's newest whole snapshot (:func:`newest_whole`); None when
    it has no snapshot yet."""
    found = newest_whole(fs, experiment)
    return None if found is None else found[1]


def newest_whole(fs: Any, experiment: str) -> tuple[str, list[SavedTrial]] | None:
    """The newest whole snapshot's path and trials; None when there is no snapshot yet.

    A driver killed while Ray writes its snapshot leaves that file empty or torn (seen: killed
    as a study ended, its last snapshot 0 bytes, study.json already done, so nothing resumes
    to rewrite it). The newest whole state is then the checked copy the driver kept of it
    (``FILE.whole``), else the next older session's. Raises what :func:`parse_trials` raises,
    and OSError, for the newest file when none is whole."""
    paths = [
        f["experiment_state-"]
        for f in snapshot_sessions(fs, experiment).values()
        if "experiment_state-" in f
    ]
    first: Exception | None = None
    for path in reversed(paths):
        for candidate in (path, path + KEPT):
            try:
                with fs.open_input_stream(candidate) as f:
                    return candidate, parse_trials(f.read())
            except (OSError, ValueError, KeyError, TypeError) as e:
                first = first or e
    if first is not None:
        raise first
    return None
