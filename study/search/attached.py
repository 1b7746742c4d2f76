"""What the running driver attaches to its study's searcher, by study name: never pickled.

The searcher is saved with Ray's snapshot and must hold no path (a copied or moved study
resumes on its own data). On a resume Ray rebuilds it inside ``Tuner.restore``, out of the
driver's reach, so the driver's parts reach it here: where the study lives now, the rungs of
its budget ladder (``plasticity study extend`` adds one) and what to write as each trial ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attachment:
    folder: Any
    """The :class:`study.store.folder.StudyFolder` where the study is now."""
    rungs: dict[str, list[int]]
    """Per strategy, the rungs of its budget ladder (the study file's, and one more per
    ``plasticity study extend``: :func:`study.plan.rungs`)."""
    trial_ended: Callable[[Any, str, str, str], None]
    """``trial_ended(search, strategy, phase, trial_id)``: write the views (optuna.db,
    study.json) after the trial ``trial_id`` of ``strategy`` and ``phase`` ended, then delete
    its checkpoints if it ended without an error."""


ATTACHED: dict[str, Attachment] = {}
"""Study name -> the running driver's :class:`Attachment`, while it runs that study."""
