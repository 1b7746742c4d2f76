"""Trial checkpoints in a study folder: which are kept, and the running trials' leases. No Ray.

**Checkpoints.** A trial's checkpoints (``trials/PHASE-STRATEGY_ID/checkpoint_NNNNNN``, Ray
keeps the newest two) serve one purpose: a retry or a resume continues the trial from them. A
trial the search has recorded as ended without an error is never run again from them, so the
driver deletes them as it ends (:func:`drop_checkpoints`), right after study.json is written,
and sweeps every such trial again when the study stops (:func:`sweep_checkpoints`; this also
takes what an orphaned worker wrote late, see below). An errored trial keeps its checkpoints:
a resume runs it again from them. Each emptied folder keeps a tombstone of a few bytes.

Why deleting before Ray's snapshot records the trial as ended is safe: a driver killed in
between is resumed from that snapshot, in which the trial still runs; Ray hands the trial its
newest checkpoint, a tombstone, so the trial runs from the start (``restored_from: start``)
and, the loop being deterministic, reports the same records again. It costs one trial's time,
once; the fault suite's ``kill-last-state`` row strikes exactly there.

**Leases.** A running trial writes ``running/TRIAL_ID.json`` (host, pid, node, its last
epoch's seconds, when) at every report and deletes it as it ends. When a head dies with its
worker nodes alive, Ray keeps those nodes and their trials running for
``RAY_gcs_rpc_server_reconnect_timeout_s`` (60 s by default): such orphans may still write a
checkpoint into the study folder. Only the trials themselves know that they run, so each says
so; ``study status`` and ``study resume`` read the leases (:func:`live_leases`) and name the
trials that may still be running elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from pyarrow import fs as pafs

KEEP = 2
"""Checkpoints Ray keeps per trial (``CheckpointConfig.num_to_keep``): the newest, and the one
before for a retry when the newest cannot be read."""
CHECKPOINT = re.compile(r"checkpoint_\d+")
"""Ray's checkpoint folders in a trial folder."""
TOMBSTONE = "ENDED"
"""The one file left in a finished trial's checkpoint folder (see :func:`drop_checkpoints`)."""
LEASES = "running"
"""The study folder's folder of running trials' leases."""
GCS_RECONNECT = "RAY_gcs_rpc_server_reconnect_timeout_s"
"""How long Ray keeps a worker node (and its trials) alive after the head's GCS is gone."""


def checkpoint_folders(fs: Any, trial: str) -> list[str]:
    """Paths of the checkpoint folders of the trial folder ``trial`` (none if it is gone)."""
    infos = fs.get_file_info(pafs.FileSelector(trial, allow_not_found=True))
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.Directory and CHECKPOINT.fullmatch(i.base_name)
    )


def ended(fs: Any, checkpoint: str) -> bool:
    """The checkpoint folder ``checkpoint`` is a tombstone (:func:`drop_checkpoints`)."""
    return fs.get_file_info(f"{checkpoint}/{TOMBSTONE}").type != pafs.FileType.NotFound


def drop_checkpoints(fs: Any, trial: str) -> int:
    """Empty every checkpoint folder of the trial folder ``trial`` but for a tombstone
    (:data:`TOMBSTONE`); returns how many held more than that. The folders stay: Ray 2.60's
    ``Trainable.restore`` refuses a checkpoint whose path does not exist ("Could not recover
    from checkpoint as it does not exist on storage anymore"), and a resume from a snapshot
    taken before the trial ended hands it its newest one; finding the tombstone there, the
    trial runs again from the start instead of failing (seen in the fault suite's ``orphan``
    row before the tombstones)."""
    emptied = 0
    for path in checkpoint_folders(fs, trial):
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        if [i.base_name for i in infos] == [TOMBSTONE]:
            continue
        fs.delete_dir_contents(path, missing_dir_ok=True)
        with fs.open_output_stream(f"{path}/{TOMBSTONE}") as f:
            f.write(b"this trial ended: its checkpoint was deleted (plasticity study)\n")
        emptied += 1
    return emptied


def sweep_checkpoints(fs: Any, experiment: str, finished: list[str]) -> int:
    """Empty the checkpoints of the trials ``finished`` (folder names in the experiment folder
    ``experiment``); returns how many held more than a tombstone."""
    return sum(drop_checkpoints(fs, f"{experiment}/{name}") for name in finished)


# -- leases ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    """A running trial's word that it runs: who, where, and when it last reported."""

    trial: str
    host: str
    pid: int
    node: str
    at: float
    """When it last reported (seconds since the epoch, the trial's clock)."""
    epoch_s: float
    """Its last epoch's seconds: a trial is silent that long between two reports."""

    def may_run(self, now: float, grace: float) -> bool:
        """The trial may still be running at ``now``: it reported less than two epochs and
        ``grace`` seconds ago."""
        return now - self.at < 2 * self.epoch_s + grace


def lease_path(study: str, trial_id: str) -> str:
    return f"{study}/{LEASES}/{trial_id}.json"


def write_lease(fs: Any, study: str, lease: Lease) -> None:
    """Write ``lease`` under the study folder ``study`` (through a temporary name)."""
    fs.create_dir(f"{study}/{LEASES}", recursive=True)
    path = lease_path(study, lease.trial)
    with fs.open_output_stream(f"{path}.tmp") as f:
        f.write(json.dumps(lease.__dict__).encode())
    fs.move(f"{path}.tmp", path)


def end_lease(fs: Any, study: str, trial_id: str) -> None:
    """The trial has ended: its lease goes (already gone: nothing to do)."""
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(lease_path(study, trial_id))


def live_leases(fs: Any, study: str, now: float | None = None) -> list[Lease]:
    """The leases under the study folder ``study`` of trials that may still be running
    (:meth:`Lease.may_run`, with the GCS reconnect timeout as grace), oldest report first. A
    lease being written or unreadable is skipped."""
    now = time.time() if now is None else now
    grace = float(os.environ.get(GCS_RECONNECT, "60"))
    infos = fs.get_file_info(pafs.FileSelector(f"{study}/{LEASES}", allow_not_found=True))
    out = []
    for info in infos:
        if not info.base_name.endswith(".json"):
            continue
        try:
            with fs.open_input_stream(info.path) as f:
                lease = Lease(**json.loads(f.read()))
        except (OSError, ValueError, TypeError):
            continue
        if lease.may_run(now, grace) and not _dead_here(lease):
            out.append(lease)
    return sorted(out, key=lambda lease: lease.at)


def _dead_here(lease: Lease) -> bool:
    """The lease's process ran on this host and is gone (a pid taken again within the lease's
    short life is not told apart)."""
    if lease.host != socket.gethostname():
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process of that pid: alive
        return False
    return False


def leases_text(leases: list[Lease], now: float | None = None) -> str:
    """One line naming the trials that may still be running, e.g. ``2 trial(s) may still be
    running elsewhere (abc12_00001 on host-a pid 4242, last report 5 s ago; ...)``."""
    now = time.time() if now is None else now
    shown = "; ".join(
        f"{x.trial} on {x.host} pid {x.pid}, last report {now - x.at:.0f} s ago" for x in leases[:3]
    )
    more = f"; and {len(leases) - 3} more" if len(leases) > 3 else ""
    return f"{len(leases)} trial(s) may still be running elsewhere ({shown}{more})"
