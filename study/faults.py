"""Fault injection, in one place: the faults of the fault suite, the driver's fault points and
the trial's failure hook. Off unless a test or ``benchmarks/faults.py`` asks; no Ray here.

A fault of the suite (:data:`SUITE`) strikes a tiny study at a moment of its own progress and
checks that, resumed, it ends with every trial exactly once and records bit-identical to the
undisturbed study's. Most strike from outside (kill the driver or a worker, fill the disk,
remove a node, copy the folder): ``benchmarks/faults.py`` does them by itself. The others need
a hook inside the code:

- a **driver point** (:data:`POINTS`): with ``PLASTICITY_FAULT=NAME`` in the driver's
  environment, the driver dies at that moment as by SIGKILL (:func:`at` is called there);
- a **trial fault** (:class:`TrialFault`, a trial config's ``fail_once_at``): the trainable
  crashes once after a given epoch, optionally garbling checkpoints first (:meth:`strike`).

A new fault: its name and one line here in :data:`SUITE`, its code in ``benchmarks/faults.py``
(``FAULTS``, which must cover :data:`SUITE` exactly), a hook here if it strikes from inside,
and it runs as a slow test (``tests/test_study_ray.py``) from this list.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SUITE = {
    "kill": "the driver and its local Ray SIGKILLed at 6 moments across search and evaluation, "
    "resumed on this machine after each",
    "kill-new-head": "the same on file:// storage, each resume from a new head node (another "
    "HOME and TMPDIR, a fresh copy of the storage, the old one deleted)",
    "view-written": "the driver dies right after optuna.db is written, before Ray's snapshot "
    "(the driver point view-written)",
    "copy": "the folder copied after a kill; the copy resumes, the original must not change",
    "move": "the folder moved after a kill, and resumed there",
    "worker": "the worker process running the trial SIGKILLed in the search and the evaluation",
    "corrupt": "the running trial's newest checkpoint garbled, then its worker killed: the "
    "retry must go on from the older one",
    "node": "a worker node of a 3-node local cluster removed while its trial runs",
    "disk-full": "the storage (a small tmpfs) filled and kept full during a resumed session: "
    "one clear line, then a resume after space is freed sets a torn snapshot aside",
    "disk-full-launch": "the same in the launch session: the resume goes on from the copy of "
    "the snapshot the running driver kept",
    "kill-last-state": "the driver dies right after the last trial's study.json write (its "
    "checkpoints deleted), before Ray's final snapshot (the driver point last-state-written)",
    "orphan": "a 2-node cluster (`ray start`): head and driver SIGKILLed while the worker node "
    "lives on; its trial, held, writes its next checkpoint while a new head resumes the study",
    "kill-ladder": "a budget-ladder study (rungs 1, 2, 3: one new best evaluated again, one "
    "reused) killed as each rung is decided, mid-trial, and as the study ends, resumed after each",
}
"""The fault suite: name -> what it does (``benchmarks/faults.py --faults NAME``)."""

ENV = "PLASTICITY_FAULT"
"""The environment variable that names the driver point at which the driver dies."""
VIEW_WRITTEN = "view-written"
LAST_STATE_WRITTEN = "last-state-written"
POINTS = {
    VIEW_WRITTEN: "right after an optuna.db view is written, before Ray's snapshot holds the "
    "trial that ended as ended",
    LAST_STATE_WRITTEN: "right after the study's last trial ended: study.json written and the "
    "trial's checkpoints deleted, before Ray's final snapshot",
}
"""The driver's fault points: name -> the moment."""


def at(point: str) -> None:
    """A driver fault point: with ``PLASTICITY_FAULT=point`` in the environment the driver
    dies here, as by SIGKILL (with its whole process group when it leads one, so the local Ray
    it started dies too)."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    if os.environ.get(ENV) != point:
        return
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


HOLD_ENV = "PLASTICITY_TRIAL_HOLD"
"""The environment variable (of a Ray node's workers) naming a file: while it exists, a trial
on that node waits before it writes a checkpoint. The ``orphan`` fault holds the trial that
the dead head leaves behind, so that its next checkpoint lands while a new head resumes; the
``node`` and ``corrupt`` faults hold a trial at one task's checkpoint, so that they strike it
there however fast the trial runs (read from the study folder, its progress lags behind)."""


def hold(task: int | None = None) -> None:
    """While the file that :data:`HOLD_ENV` names exists, wait (having written ``FILE.held``
    with this process's pid); no variable or no file: return at once. A file that holds a
    number holds only the checkpoint at the end of that task (``task``); an empty one, any."""
    path = os.environ.get(HOLD_ENV)
    try:
        only = Path(path).read_text().strip() if path else None
    except OSError:  # no file: nothing to hold
        return
    if only is None or (only and task is not None and int(only) != task):
        return
    Path(f"{path}.held").write_text(str(os.getpid()))
    while os.path.exists(path):
        time.sleep(0.05)


TRIAL_KEY = "fail_once_at"
"""The key of a trial config that holds its :class:`TrialFault` (as a dict)."""


@dataclass(frozen=True)
class TrialFault:
    """Crash a trial once, after epoch ``epoch`` of task ``task``."""

    task: int
    epoch: int
    marker: str
    """A file that records that the crash happened (so the retry does not crash again)."""
    how: Literal["raise", "sigkill"] = "raise"
    """raise an exception, or SIGKILL the worker process (as the OOM killer would)."""
    corrupt: str | None = None
    """A glob of checkpoint folders to garble before the crash."""
    which: Literal["newest", "all"] = "newest"
    """Garble the newest of ``corrupt``'s folders, or all of them."""

    @classmethod
    def of(cls, config: dict[str, Any]) -> TrialFault | None:
        """The fault a trial config asks for (its ``fail_once_at``), if any."""
        fault = config.get(TRIAL_KEY)
        return cls(**fault) if fault else None

    def as_config(self) -> dict[str, Any]:
        """``{fail_once_at: ...}``, to merge into a trial config."""
        return {TRIAL_KEY: {k: v for k, v in dataclasses.asdict(self).items() if v is not None}}

    def strike(self, record: dict[str, Any]) -> None:
        """Called after every epoch with its record: crash if this is the epoch, once."""
        if (record["task"], record["epoch"]) != (self.task, self.epoch):
            return
        marker = Path(self.marker)
        if marker.exists():
            return
        marker.write_text(str(os.getpid()))
        if self.corrupt is not None:
            folders = sorted(glob.glob(self.corrupt))
            for folder in folders[-1:] if self.which == "newest" else folders:
                garble(Path(folder))
        if self.how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected fault at task {self.task} epoch {self.epoch}")


def garble(checkpoint: Path) -> None:
    """Make a trial's checkpoint folder unreadable, as a torn write would."""
    (checkpoint / "state.pt").write_bytes(b"garbage, not a checkpoint")
