"""The searcher as Ray's newest snapshot saved it, read back without running anything."""

from __future__ import annotations

import logging
import pickle
from typing import Any

from study.search.study_search import StudySearch
from study.store.snapshot import KEPT, snapshot_sessions

log = logging.getLogger(__name__)

PREFIX = "searcher-state-"


def saved_search(fs: Any, experiment: str) -> StudySearch | None:
    """The :class:`StudySearch` of the newest whole searcher snapshot of a Ray Tune experiment
    (on the pyarrow filesystem ``fs``), as saved; None if it has none yet.

    A driver killed while Ray writes its snapshot leaves the searcher's file empty or torn
    (seen in the fault suite's kill-last-state row: killed as the study ended, the file 0 bytes
    and study.json already done, so the resume could not refresh its views and the study ended
    with optuna.db holding 1 of its 3 trials COMPLETE). The newest whole one is then the
    checked copy the driver kept (``FILE.whole``), else an older session's, as for the
    experiment's trials (:func:`study.store.snapshot.newest_whole`). Raises what reading the
    newest file raised when none is whole; a file passed over is one warning."""
    in_place = snapshot_sessions(fs, experiment)
    kept = snapshot_sessions(fs, experiment, KEPT)
    first: Exception | None = None
    torn = ""
    for session in sorted(set(in_place) | set(kept), reverse=True):
        candidates = [f[PREFIX] for f in (in_place.get(session, {}),) if PREFIX in f]
        candidates += [f[PREFIX] for f in (kept.get(session, {}),) if PREFIX in f]
        for path in candidates:
            try:
                with fs.open_input_stream(path) as f:
                    saved = pickle.loads(f.read())
            except Exception as e:  # pickle's errors on a torn file vary, as the filesystem's
                first = first or e
                torn = torn or f"{path.rsplit('/', 1)[-1]} is unreadable ({type(e).__name__})"
                continue
            if torn:
                log.warning("%s: the searcher is read from %s", torn, path.rsplit("/", 1)[-1])
            if not isinstance(saved, dict) or "searchers" not in saved:
                return None
            search = StudySearch.__new__(StudySearch)
            search.load_state(saved)
            return search
    if first is not None:
        raise first
    return None
