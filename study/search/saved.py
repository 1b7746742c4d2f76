"""The searcher as Ray's newest snapshot saved it, read back without running anything."""

from __future__ import annotations

import pickle
from typing import Any

from study.search.study_search import StudySearch
from study.store.snapshot import newest_snapshot


def saved_search(fs: Any, experiment: str) -> StudySearch | None:
    """The :class:`StudySearch` of the newest searcher snapshot of a Ray Tune experiment (on
    the pyarrow filesystem ``fs``), as saved; None if it has none yet. Raises whatever
    unpickling a truncated file raises."""
    newest = newest_snapshot(fs, experiment, "searcher-state-")
    if newest is None:
        return None
    with fs.open_input_stream(newest) as f:
        saved = pickle.loads(f.read())
    if not isinstance(saved, dict) or "searchers" not in saved:
        return None
    search = StudySearch.__new__(StudySearch)
    search.load_state(saved)
    return search
