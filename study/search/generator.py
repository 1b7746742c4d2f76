"""Ray's SearchGenerator around the study's searcher, made to restore where the study is now."""

from __future__ import annotations

import copy

from ray.tune.search import SearchGenerator

from study.search.attached import ATTACHED
from study.search.study_search import StudySearch


class RootedSearchGenerator(SearchGenerator):
    """Ray's SearchGenerator restores the Experiment of its snapshot, storage path and all
    (ray 2.60, ``SearchGenerator.set_state``): a copied or moved study would create its new
    trials in the original's folder. Here a restored generator puts them where the study is
    now (the running driver's :class:`~study.search.attached.Attachment`), and asks the
    searcher again even if it had said it was finished: a restore runs errored trials again,
    after which the searcher may have more to suggest (their strategies' evaluations), and an
    extended study's searcher gets its new rung.

    The searcher alone says when the study is finished (``Searcher.FINISHED``): Ray's count
    of samples (``num_samples``) cannot know ahead how many evaluation trials an extension
    adds, so it only sizes the progress table."""

    def is_finished(self) -> bool:
        return self._finished

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False  # the searcher says FINISHED again if it is
        searcher = self.searcher
        if not isinstance(searcher, StudySearch):
            return
        attached = ATTACHED.get(searcher.name)
        if attached is not None:
            searcher.set_rungs(attached.rungs)
        # what the progress table shows: at most this many (a rung not decided yet counts
        # an evaluation, which it will not run if its best is the rung before's)
        self._total_samples = searcher.planned_trials()
        if attached is None or self._experiment is None:
            return
        storage = copy.copy(self._experiment.storage)
        folder = attached.folder
        storage.storage_path, storage.storage_filesystem = folder.root, folder.fs
        storage.storage_fs_path = folder.path
        self._experiment.storage = self._experiment.spec["storage"] = storage
