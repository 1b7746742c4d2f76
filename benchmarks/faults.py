"""The fault suite, in full: tiny studies disturbed in the ways long sweeps on spot machines
die, each resumed until done and compared with the same study undisturbed.

    PYTHONPATH=. python benchmarks/faults.py [--faults kill,worker,...]

Prints one row per fault: times injected, trials planned, trials complete (in Ray's snapshot,
and COMPLETE in optuna.db), rows lost, rows duplicated, and trials whose records differ from
the undisturbed study's (same config, seed, thread count and CPU, so they must be
bit-identical), then the total wall time. A study is one strategy (expanded), 3 search trials
of 3 tasks x 3 epochs, then 1 evaluation seed, one trial at a time (so the search's order, and
so its suggestions, do not depend on timing): 4 trials, 9 epoch rows each.

Every fault strikes at a moment of the study's own progress, read from the study folder (the
phase that runs, trials complete, epochs reported by the running trial), never at a fraction of
a wall-clock time: the CPU may be shared and slow.

The faults are :data:`study.faults.SUITE` (name and what it does), the one list the slow tests
also run; ``FAULTS`` below holds how each strikes, and must cover that list exactly.
``disk-full`` and ``disk-full-launch`` mount a tmpfs and need root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from study import faults

SPEC = {
    "name": "f",
    "setting": {
        "dataset": "mnist-5k",
        "model": "mlp-small",
        "restarts": 2,
        "epochs": 3,
        "batch_size": 1000,
    },
    "strategies": {
        "expanded": {
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "schedule": ["linear", "cosine", "step"],
            "alpha0": {"low": 0.0, "high": 0.8},
            "ramp": {"low": 1, "high": 3, "int": True},
        }
    },
    "budget": {"trials_per_strategy": 3, "eval_seeds": 1},
    "resources": {"cpu": 1},
    "concurrency": 1,
}
PHASES = ["search-expanded", "eval-expanded"]  # study.json's; trial folders trials/PHASE_ID
ROWS = 9  # epoch rows of a whole trial: (restarts + 1) x epochs
LADDER = {**SPEC, "budget": {"trials_per_strategy": [1, 2, 3], "eval_seeds": 1, "search_seed": 2}}
"""The ladder case's study: the best after 1, 2 and 3 search trials, each evaluated between
the search trials unless the best did not change. Search seed 2 makes it exercise both: its
second trial is a new best (evaluated again), its third is not (rung 2's evaluation reused),
so 3 search and 2 evaluation trials (seed 0 keeps trial 1 the best at every rung)."""
SPECS = {"kill-ladder": LADDER}
"""A fault's study where it is not :data:`SPEC`; it is compared with the same study
undisturbed."""
FIELDS = ("task", "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "alpha")
TIMEOUT = 900  # seconds one driver may take before the suite gives up on it


# -- reading a study folder ------------------------------------------------------------------------
def result_rows(result: Path) -> dict[int, dict]:
    """One trial's result.json, de-duplicated on training_iteration (a restored trial replays
    its checkpoint's epochs; the last row wins, as in the analysis)."""
    rows = {}
    with contextlib.suppress(OSError):
        for line in result.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                row = json.loads(line)
                rows[row["training_iteration"]] = row
    return rows


def known_trials(experiment: Path) -> set[str] | None:
    """Trial ids in the experiment's newest snapshot (None: no snapshot yet)."""
    from pyarrow import fs as pafs

    from study.store.snapshot import newest_trials

    trials = newest_trials(pafs.LocalFileSystem(), str(experiment))
    return None if trials is None else {t.trial_id for t in trials}


def phase_results(root: Path, phase: str) -> list[Path]:
    """result.json of every trial folder of ``phase`` in the study's one experiment."""
    return sorted((root / "trials").glob(f"{phase}_*/result.json"))


STAGING: list[Path] = []
"""The Ray temporary folder of the driver that runs now (its RAY_TMPDIR's ``ray``), if any.
Ray's driver writes each trial's result.json there first, and uploads it to the study folder
only with its next snapshot (every ~10 s, or when a checkpoint the last one names could be
lost): progress is read there."""


def fresh_rows(root: Path, phase: str) -> dict[str, dict[int, dict]]:
    """Trial folder name -> epoch rows of every trial of ``phase``: the study folder's, and
    the running driver's newer ones where it has them."""
    rows = {r.parent.name: result_rows(r) for r in phase_results(root, phase)}
    for staging in STAGING:
        glob = f"session_latest/artifacts/*/trials/driver_artifacts/{phase}_*/result.json"
        results = []
        with contextlib.suppress(OSError):  # Ray makes and removes these folders as we look
            results = list(staging.glob(glob))
        for result in results:
            rows[result.parent.name] = {**rows.get(result.parent.name, {}), **result_rows(result)}
    return rows


def trial_rows(root: Path, phase: str) -> list[tuple[str, list[tuple]]]:
    """(whole run config, epoch rows) of every trial of ``phase`` in the newest snapshot:
    orphans that a restore left behind do not count."""
    known = known_trials(root / "trials") or set()
    out = []
    for result in phase_results(root, phase):
        if not any(result.parent.name.endswith(f"_{t}") for t in known):  # STRATEGY_TRIALID
            continue
        rows = result_rows(result)
        if rows:
            run = rows[max(rows)]["config"]["run"]
            out.append((json.dumps(run, sort_keys=True), [rows[k] for k in sorted(rows)]))
    return out


def study_rows(root: Path) -> list[tuple[str, list[tuple]]]:
    """(phase:config, rows as FIELDS tuples) of every trial of the study."""
    return [
        (f"{phase}:{key}", [tuple(r[f] for f in FIELDS) for r in rows])
        for phase in PHASES
        for key, rows in trial_rows(root, phase)
    ]


def optuna_complete(root: Path) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = root / "optuna.db"
    if not db.exists():
        return 0
    study = optuna.load_study(study_name=f"{SPEC['name']}.expanded", storage=f"sqlite:///{db}")
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@dataclass(frozen=True)
class Where:
    """How far a study has got: the phase that runs (its index; len(PHASES) when finished),
    trials of it that ran every epoch, and the most epochs reported by one that has not."""

    phase: int
    complete: int
    partial: int

    def key(self) -> tuple[int, int, int]:
        return (self.phase, self.complete, self.partial)

    def __str__(self) -> str:
        """e.g. ``search-expanded 1+5``: one trial complete, the running one at 5 epochs."""
        if 0 <= self.phase < len(PHASES):
            return f"{PHASES[self.phase]} {self.complete}+{self.partial}"
        return "finished" if self.phase == len(PHASES) else "not started"


def where(root: Path) -> Where:
    try:
        state = json.loads((root / "study.json").read_text())["phases"]
    except (OSError, ValueError, KeyError):
        return Where(-1, 0, 0)
    running = [i for i, p in enumerate(PHASES) if state.get(p) != "done"]
    if not running:
        return Where(len(PHASES), 0, 0)
    complete, partial = 0, 0
    for rows in fresh_rows(root, PHASES[running[0]]).values():
        if rows and rows[max(rows)].get("run_complete"):
            complete += 1
        else:
            partial = max(partial, len(rows))
    return Where(running[0], complete, partial)


@dataclass(frozen=True)
class Moment:
    """A point of a study's progress: reached once ``where`` is at or past it."""

    name: str
    phase: int
    complete: int
    partial: int

    def reached(self, root: Path) -> bool:
        return where(root).key() >= (self.phase, self.complete, self.partial)


@dataclass(frozen=True)
class Held:
    """A trial held at a task's checkpoint (:func:`study.faults.hold`, its file ``hold``
    holding the task's number): reached once the trial waits there, however fast it ran."""

    name: str
    hold: Path

    def reached(self, root: Path) -> bool:
        return self.held.exists()

    @property
    def held(self) -> Path:
        return Path(f"{self.hold}.held")

    def pid(self) -> int:
        return int(self.held.read_text())

    def trial(self, root: Path, timeout: float = 60) -> tuple[Path, dict]:
        """The held trial's folder and lease (written at its last report, before the hold)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if found := held_lease(root, self.pid()):
                return found
            time.sleep(0.05)
        raise RuntimeError(f"no lease names the held worker {self.pid()}")


# Six distinct moments, three per phase kind: a trial mid-task 0, just after a trial completes
# (the window between Optuna's write and Ray's snapshot), a trial mid-task 1 after a restore,
# the search's last trial ending, and the evaluation trial early and late.
KILL_MOMENTS = [
    Moment("search: trial 1, task 0", 0, 0, 2),
    Moment("search: trial 1 just complete", 0, 1, 0),
    Moment("search: trial 2, task 1", 0, 1, 5),
    Moment("search: trial 3 just complete", 0, 3, 0),
    Moment("eval: task 0", 1, 0, 2),
    Moment("eval: task 2", 1, 0, 7),
]


# -- driving a study in a process of its own ------------------------------------------------------
@dataclass
class Driver:
    """``plasticity study ...`` in its own session (it leads its process group, and the local
    Ray it starts lives under it); stderr kept in ``log``."""

    argv: list[str]
    env: dict
    log: Path

    def start(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "plasticity.cli", "study", *self.argv, "--no-analysis"]
        with self.log.open("a") as err:
            return subprocess.Popen(
                cmd,
                env=self.env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return out


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its start time (read before a kill: an orphan loses
    its link to the driver)."""
    table = processes()
    out, frontier = {}, [pid]
    while frontier:
        p = frontier.pop()
        children = {c: start for c, (parent, start) in table.items() if parent == p}
        out.update(children)
        frontier += list(children)
    return out


def kill_all(tree: dict[int, str]) -> None:
    """SIGKILL each process of ``tree`` that still is the one recorded (same start time)."""
    now = processes()
    for pid, start in tree.items():
        if pid in now and now[pid][1] == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started: its process group, then any stray."""
    tree = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    kill_all(tree)
    proc.wait()
    time.sleep(1)


Action = Callable[[subprocess.Popen], bool]
"""What a fault does to a running driver; True when it ended the driver."""


def kill_driver(proc: subprocess.Popen) -> bool:
    kill_tree(proc)
    return True


def run(
    driver: Driver,
    root: Callable[[], Path],
    events: list[tuple[Moment, Action]],
    timeout: float = TIMEOUT,
    keep_staging: bool = False,
) -> int:
    """Run ``driver``; as the study (``root()``) reaches each of ``events``' moments, in order,
    do its action. Returns the driver's exit code, -9 if an action ended it. Whatever the
    driver started and left behind (it may kill itself: a fault hook) is killed after it."""
    proc = driver.start()
    if "RAY_TMPDIR" in driver.env:
        STAGING[:] = [Path(driver.env["RAY_TMPDIR"]) / "ray"]
    deadline, seen, looked = time.time() + timeout, {}, 0.0
    events = list(events)
    try:
        while proc.poll() is None:
            if time.time() > deadline:
                raise RuntimeError(f"{driver.argv} stalled for {timeout} s; see {driver.log}")
            if time.time() - looked > 2:
                seen.update(descendants(proc.pid))
                looked = time.time()
            if events and events[0][0].reached(root()) and events.pop(0)[1](proc):
                return -9
            time.sleep(0.1)
        return proc.returncode
    finally:
        if proc.poll() is None:
            kill_tree(proc)
        kill_all(seen)
        for staging in STAGING:  # a later driver must not read this one's progress
            if not keep_staging:
                shutil.rmtree(staging, ignore_errors=True)
        STAGING.clear()


def finished(root: Path) -> bool:
    return where(root).phase == len(PHASES)


# -- the faults ----------------------------------------------------------------------------------
@dataclass
class Case:
    """One fault's study: its work folder, storage (a path or URI), spec file, environment."""

    name: str
    work: Path
    env: dict
    storage: str = ""
    injected: int = 0
    note: str = ""
    spec: dict = field(default_factory=lambda: SPEC)

    def __post_init__(self) -> None:
        self.storage = self.storage or str(self.work / self.name)
        if "RAY_TMPDIR" not in self.env:  # its own, so its driver's progress can be read there
            tmp = tempfile.mkdtemp(prefix=f"r{self.name[:6]}-", dir="/tmp")  # short: sockets
            self.env = {**self.env, "RAY_TMPDIR": tmp}
        self.spec_file = self.work / f"{self.name}.yaml"
        self.spec_file.write_text(yaml.safe_dump({**self.spec, "storage": self.storage}))
        self.log = self.work / f"{self.name}.log"

    def retarget(self, storage: str) -> None:
        """A new storage for the study, before its launch."""
        self.storage = storage
        self.__post_init__()

    def root(self) -> Path:
        return Path(self.storage.removeprefix("file://")) / SPEC["name"]

    def launch(self, events=(), env: dict | None = None, timeout: float = TIMEOUT) -> int:
        argv = ["launch", str(self.spec_file)]
        return run(Driver(argv, env or self.env, self.log), self.root, list(events), timeout)

    def resume(self, events=(), timeout: float = TIMEOUT) -> int:
        argv = ["resume", f"{self.storage.rstrip('/')}/{SPEC['name']}"]
        return run(Driver(argv, self.env, self.log), self.root, list(events), timeout)

    def resume_until_done(self, tries: int = 4) -> None:
        for _ in range(tries):
            if finished(self.root()):
                return
            self.resume()


def driver_kills(case: Case, new_head: bool = False, moments: list[Moment] = KILL_MOMENTS) -> None:
    """SIGKILL the driver at each of ``moments`` (one that the previous run got past before
    its kill is skipped), resuming in between; ``new_head``: each resume as on a new head node
    (see :func:`new_head_node`)."""
    first = True
    for moment in moments:
        if moment.reached(case.root()):
            continue
        at = []

        def kill(proc: subprocess.Popen, at=at) -> bool:
            at.append(where(case.root()))  # read before the kill, with the driver's progress
            return kill_driver(proc)

        code = case.launch([(moment, kill)]) if first else case.resume([(moment, kill)])
        first = False
        if code != -9:
            break  # the study ended first
        case.injected += 1
        case.note += f"{'; ' if case.note else 'killed at '}{at[0]}"
        if new_head:
            new_head_node(case)
    case.resume_until_done()


def new_head_node(case: Case) -> None:
    """What a new head node has: its own HOME and temporary folder (no Ray session, no cache
    of the old head) and the storage, here a fresh copy of it (the old one deleted, so nothing
    can still be read or written there)."""
    fresh = Path(tempfile.mkdtemp(prefix="st-", dir=case.work))
    shutil.copytree(case.root(), fresh / SPEC["name"])
    shutil.rmtree(case.root())
    case.storage = f"file://{fresh}"
    home = tempfile.mkdtemp(prefix="h-", dir="/tmp")  # short: Ray's socket paths are limited
    case.env = {**case.env, "HOME": home, "TMPDIR": home, "RAY_TMPDIR": home}


def fault_kill(case: Case) -> None:
    driver_kills(case)


# A ladder study's worst moments: as a rung is decided (its evaluation about to start, between
# two search trials), mid-trial after a restore, and as its last rung is evaluated.
LADDER_MOMENTS = [
    Moment("ladder: trial 1 just complete, rung 1's evaluation next", 0, 1, 0),
    Moment("ladder: trial 2, task 1", 0, 1, 5),
    Moment("ladder: trial 2 just complete, a new best at rung 2, its evaluation next", 0, 2, 0),
    Moment("ladder: trial 3, task 2", 0, 2, 7),
    Moment("ladder: the last rung decided (reusing rung 2's evaluation): the study ends", 1, 0, 0),
]


def fault_kill_ladder(case: Case) -> None:
    driver_kills(case, moments=LADDER_MOMENTS)


def fault_kill_new_head(case: Case) -> None:
    case.retarget(f"file://{case.work / case.name}")
    driver_kills(case, new_head=True)


def fault_view_written(case: Case) -> None:
    """The driver dies right after an optuna.db write (a fault hook; the first comes as trial 1
    completes), before Ray's snapshot holds that trial as ended."""
    code = case.launch(env={**case.env, faults.ENV: faults.VIEW_WRITTEN})
    case.injected = int(code != 0)
    case.resume_until_done()


def fault_kill_last_state(case: Case) -> None:
    """The driver dies right after the last trial's study.json write, which follows the
    deletion of that trial's checkpoints, before Ray's final snapshot (the driver point
    last-state-written). study.json then says done and the snapshot does not: the resume must
    rebuild study.json from the snapshot and run the last trial again, from the start (its
    checkpoints are gone)."""
    code = case.launch(env={**case.env, faults.ENV: faults.LAST_STATE_WRITTEN})
    case.injected = int(code == -9)
    if not case.root().exists():
        case.note = f"the launch failed (exit {code}); see {case.log}"
        return
    said_done = finished(case.root())
    trials = newest_trials(case.root() / "trials")
    running = [t for t in trials if t.status != "TERMINATED"]
    left = {
        t.trial_id: len(real_checkpoints(trial_folder(case.root(), t.trial_id))) for t in running
    }
    case.resume()  # study.json says done: resume_until_done would not look
    case.resume_until_done()
    starts = {
        r.get("restored_from")
        for phase in PHASES
        for result in phase_results(case.root(), phase)
        if any(result.parent.name.endswith(t) for t in left)
        for r in result_rows(result).values()
    }
    case.note = (
        f"study.json said done: {said_done}; snapshot then: "
        f"{', '.join(f'{t.trial_id} {t.status}' for t in running) or 'every trial ended'}, "
        f"its real checkpoints then {sorted(left.values())}; the retry restored from "
        f"{sorted(s for s in starts if s) or 'nothing'}"
    )


def newest_trials(experiment: Path) -> list:
    from pyarrow import fs as pafs

    from study.store.snapshot import newest_trials as saved

    return saved(pafs.LocalFileSystem(), str(experiment)) or []


def trial_folder(root: Path, trial_id: str) -> Path:
    found = list((root / "trials").glob(f"*_{trial_id}"))
    return found[0] if found else root / "trials" / f"missing_{trial_id}"


# -- a head that dies while its worker node lives on -----------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(case: Case, env: dict, *args: str) -> subprocess.Popen:
    """``ray start --block ARGS`` in a session of its own (a node of a cluster on this
    machine; its processes live under it), output in the case's log."""
    ray = str(Path(sys.executable).with_name("ray"))
    with case.log.open("a") as log:
        return subprocess.Popen(
            [ray, "start", "--block", "--node-ip-address=127.0.0.1", *args],
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=log,
        )


def cluster(case: Case, env: dict, worker_env: dict) -> tuple[str, list[subprocess.Popen]]:
    """A head with no CPU for trials (as a real head is kept free) and one 1-CPU worker node,
    each ``ray start`` in its own session; returns the address and the two, once the worker
    node has joined."""
    port = free_port()
    temp = f"--temp-dir={Path(env['RAY_TMPDIR']) / 'ray'}"
    head = ray_node(
        case, env, "--head", f"--port={port}", "--num-cpus=0", temp, "--include-dashboard=false"
    )
    address = f"127.0.0.1:{port}"
    wait_for(address, env, "Node status", case.log)  # the head is up
    worker = ray_node(case, worker_env, f"--address={address}", "--num-cpus=1")
    wait_for(address, env, "/1.0 CPU", case.log)
    return address, [head, worker]


def wait_for(address: str, env: dict, text: str, log: Path) -> None:
    """Until ``ray status`` of the cluster at ``address`` says ``text`` (two minutes)."""
    ray = str(Path(sys.executable).with_name("ray"))
    deadline = time.time() + 120
    while True:
        out = subprocess.run([ray, "status", f"--address={address}"], env=env, capture_output=True)
        if out.returncode == 0 and text in out.stdout.decode():
            return
        if time.time() > deadline:
            raise RuntimeError(f"the cluster at {address} has no {text!r} after 120 s; see {log}")
        time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        kill_tree(proc)


ORPHAN_GRACE = 120
"""RAY_gcs_rpc_server_reconnect_timeout_s on the orphan's node: how long it outlives the head
(Ray's default is 60 s; longer here, so a loaded machine's slow restart still overlaps it)."""


def fault_orphan(case: Case) -> None:
    """A head dies while its worker node lives on. A cluster of ``ray start`` nodes on this
    machine: a head (no CPU) and a worker node A; the driver runs apart, connected by address.
    The running search trial is held (:func:`study.faults.hold`, armed on node A only) just
    before it writes its next checkpoint; then the driver and the head (their process groups
    and every process under them) are SIGKILLed. Node A's raylet and the trial's worker live on
    (Ray keeps a node for ``RAY_gcs_rpc_server_reconnect_timeout_s`` after its GCS is gone). A
    new head with a new worker node B resumes the study; once it has run that trial again to
    its end (and deleted its checkpoints), the orphan is let go and writes its checkpoint into
    the trial's folder, as an orphan on a real cluster would into shared storage. The resume
    must say that trials may still be running elsewhere, and the study must end exactly as
    undisturbed, with no checkpoint left. What is simulated: the hold (the orphan's timing,
    not its write) and one machine for all nodes (the storage is shared by being local)."""
    base = {**case.env, "RAY_AUTH_MODE": "disabled"}  # the drivers connect by address
    orphan = Orphan(case, case.work / f"{case.name}.hold")
    node_a = {**base, faults.HOLD_ENV: str(orphan.hold)}
    node_a["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(ORPHAN_GRACE)
    address, orphan.old = cluster(case, base, node_a)
    nodes = list(orphan.old)
    try:
        argv = ["launch", str(case.spec_file), "--address", address]
        moment = Moment("search: trial 2, task 1", 0, 1, 4)
        code = run(
            Driver(argv, base, case.log), case.root, [(moment, orphan.kill)], keep_staging=True
        )
        if code != -9:
            case.note = f"the study ended (exit {code}) before the fault"
            return
        start = case.log.stat().st_size
        second = {**base, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rorph2-", dir="/tmp")}
        address, new = cluster(case, second, second)
        nodes += new
        argv = ["resume", str(case.root()), "--address", address]
        moment = Moment("search: two trials complete", 0, 2, 0)
        run(Driver(argv, second, case.log), case.root, [(moment, orphan.let_go)], keep_staging=True)
        said = [line for line in case.log.read_text()[start:].splitlines() if "elsewhere" in line]
        case.note = f"{orphan}; resume said: " + (
            said[0].split("warning: ", 1)[-1][:160] if said else "nothing"
        )
    finally:
        orphan.hold.unlink(missing_ok=True)
        for node in nodes:
            stop(node)
    case.resume_until_done()


@dataclass
class Orphan:
    """The ``orphan`` fault's two actions and what it saw."""

    case: Case
    hold: Path
    old: list = field(default_factory=list)
    """The first cluster's head and worker node."""
    seen: dict = field(default_factory=dict)

    @property
    def held(self) -> Path:
        return Path(f"{self.hold}.held")

    def kill(self, proc: subprocess.Popen) -> bool:
        """Hold the running trial before its next checkpoint, then kill the driver and the
        head; note whether the held worker outlives them (5 s later)."""
        self.hold.write_text("")
        deadline = time.time() + 120
        while not self.held.exists() and time.time() < deadline:
            time.sleep(0.05)
        if not self.held.exists():
            raise RuntimeError("no trial was held before its checkpoint")
        self.seen["trial"] = held_trial(self.case.root(), int(self.held.read_text()))
        # the head first, as when its machine dies: a GCS that outlives the driver by a moment
        # kills the driver's actors ("the actor is dead because its owner has died"; seen)
        stop(self.old[0])
        kill_tree(proc)
        self.case.injected += 1
        time.sleep(5)
        self.seen["alive after 5 s"] = Path(f"/proc/{self.held.read_text()}").exists()
        return True

    def let_go(self, proc: subprocess.Popen) -> bool:
        """Once the resumed study has two search trials complete, let the orphan go; wait
        for the checkpoint it writes into the held trial's folder (the resume either ran that
        trial again, or suggested its config anew if Ray's snapshot did not have it yet)."""
        trial = self.seen.get("trial")
        if trial is None:
            return False
        self.seen["alive at release"] = Path(f"/proc/{self.held.read_text()}").exists()
        released = time.time()
        self.hold.unlink()
        deadline, late = time.time() + 30, []
        while not late and time.time() < deadline:
            late = [p for p in real_checkpoints(trial) if p.stat().st_mtime >= released]
            time.sleep(0.05)
        self.seen["wrote"] = [p.parent.name for p in late]
        return False

    def __str__(self) -> str:
        trial = self.seen.get("trial")
        return f"held {trial.name if trial else '?'}; " + "; ".join(
            f"{k}: {v}" for k, v in self.seen.items() if k != "trial"
        )


def held_trial(root: Path, pid: int) -> Path | None:
    """The folder of the trial whose lease names ``pid`` (its worker)."""
    found = held_lease(root, pid)
    return found[0] if found else None


def held_lease(root: Path, pid: int) -> tuple[Path, dict] | None:
    """The folder and lease of the trial whose lease names ``pid`` (its worker)."""
    for lease in (root / "running").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(lease.read_text())
            if data["pid"] == pid:
                return trial_folder(root, lease.stem), data
    return None


def real_checkpoints(trial: Path) -> list[Path]:
    """The state files of a trial folder's checkpoints (a tombstone has none)."""
    return sorted(trial.glob("checkpoint_*/state.pt"))


def relocate(case: Case, how: str) -> None:
    """Kill the driver while trial 2 runs, then copy the study folder (and resume the copy: the
    original must not change) or move it (and resume it there)."""
    case.injected = int(case.launch([(KILL_MOMENTS[2], kill_driver)]) == -9)
    old, other = case.root(), case.work / f"{case.name}-elsewhere"
    other.mkdir()
    before = tree_bytes(old)
    if how == "copy":
        shutil.copytree(old, other / SPEC["name"])
    else:
        old.rename(other / SPEC["name"])
    case.storage = str(other)
    case.resume_until_done()
    if how == "copy" and tree_bytes(old) != before:
        case.note = "resuming the copy changed the original"


def tree_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fault_copy(case: Case) -> None:
    relocate(case, "copy")


def fault_move(case: Case) -> None:
    relocate(case, "move")


def trial_workers(proc: subprocess.Popen) -> list[int]:
    """The driver's Ray workers that run a trainable (Ray titles them ray::ImplicitFunc...)."""
    out = []
    for pid in descendants(proc.pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                out.append(pid)
    return out


def running_trial(root: Path) -> Path | None:
    """The folder of the trial that runs now: the newest result.json without a complete row."""
    phase = PHASES[min(where(root).phase, len(PHASES) - 1)]
    rows = fresh_rows(root, phase)
    results = sorted(phase_results(root, phase), key=lambda p: p.stat().st_mtime)
    for result in reversed(results):
        mine = rows.get(result.parent.name)
        if mine and not mine[max(mine)].get("run_complete"):
            return result.parent
    return None


def kill_worker(case: Case, before: Callable[[Path], None] | None = None) -> Action:
    """An action: SIGKILL the worker running the trial (Ray retries the trial on a new one,
    from its checkpoint); ``before(trial folder)`` runs first."""

    def act(proc: subprocess.Popen) -> bool:
        trial = running_trial(case.root())
        if before is not None and trial is not None:
            before(trial)
        workers = trial_workers(proc)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        case.injected += bool(workers)
        return False

    return act


def fault_worker(case: Case) -> None:
    """The worker killed mid-task 1 of search trial 2 and mid-task 1 of the evaluation."""
    case.launch(
        [(KILL_MOMENTS[2], kill_worker(case)), (Moment("eval", 1, 0, 4), kill_worker(case))]
    )
    case.resume_until_done()


def garble_newest(trial: Path) -> None:
    checkpoints = sorted(trial.glob("checkpoint_*"))
    if len(checkpoints) < 2:
        raise RuntimeError(f"{trial}: the fault wants two checkpoints, found {len(checkpoints)}")
    faults.garble(checkpoints[-1])


def fault_corrupt(case: Case) -> None:
    """The first search trial held at the end of task 2, before that checkpoint (it has those
    after tasks 0 and 1): its newest checkpoint is garbled, then its worker killed. The retry
    must go on from the older one, and say so. Held, because a trial of this tiny study runs a
    task in a fraction of a second on idle cores: struck at a moment read from its progress,
    it had sometimes written its third checkpoint first (seen: restored from the second)."""
    held = Held("search: trial 1 held at the end of task 2", case.work / f"{case.name}.hold")
    held.hold.write_text("2")

    def strike(proc: subprocess.Popen) -> bool:
        trial, _ = held.trial(case.root())
        garble_newest(trial)
        with contextlib.suppress(ProcessLookupError):
            os.kill(held.pid(), signal.SIGKILL)
        held.hold.unlink()  # the retry passes
        case.injected += 1
        return False

    try:
        case.launch([(held, strike)], env={**case.env, faults.HOLD_ENV: str(held.hold)})
    finally:
        held.hold.unlink(missing_ok=True)
    case.resume_until_done()
    case.note = f"restored_from {restored_from(case)}"


def restored_from(case: Case) -> list[str]:
    """The checkpoints the search's trials were restored from (none: a trial ran once)."""
    starts = {
        r.get("restored_from")
        for result in phase_results(case.root(), PHASES[0])
        for r in result_rows(result).values()
    }
    return sorted(s for s in starts if s)


def fault_node(case: Case) -> None:
    """A local cluster: a head with no CPU for trials and two 1-CPU worker nodes. The first
    search trial is held at the end of task 1 (its checkpoint after task 0 written), and the
    node running it is removed (not gracefully): the trial must go on on the other node from
    that checkpoint. The driver runs here (nodes are added from this thread). Held, because
    the study folder, where this in-process driver's progress shows, follows Ray's snapshots:
    on idle cores every trial had ended before its progress showed there, and the row
    injected nothing."""
    import ray
    from ray.cluster_utils import Cluster

    from study.commands import launch
    from study.spec import load_spec

    held = Held("search: trial 1 held at the end of task 1", case.work / f"{case.name}.hold")
    held.hold.write_text("1")
    saved = {k: os.environ.get(k) for k in (faults.HOLD_ENV, "TUNE_GLOBAL_CHECKPOINT_S")}
    os.environ[faults.HOLD_ENV] = str(held.hold)  # the nodes, so their workers, inherit it
    # Ray's snapshot once a second: the resumed trial's progress reaches the study folder soon
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    remover = threading.Thread(
        target=remove_busy_node, args=(case, held, cluster, workers), daemon=True
    )
    try:
        cluster.wait_for_nodes()
        remover.start()
        with case.log.open("a") as log, contextlib.redirect_stdout(log):
            launch(load_spec(yaml.safe_load(case.spec_file.read_text())))
    except Exception as e:  # the fault's finding: reported in the table, not a crash here
        case.note = f"driver: {type(e).__name__}: {str(e)[:120]}"
    finally:
        held.hold.unlink(missing_ok=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remover.join(timeout=5)
        ray.shutdown()
        cluster.shutdown()
    if case.injected:
        case.note += f"; restored_from {restored_from(case)}"


def remove_busy_node(case: Case, held: Held, cluster, workers) -> None:
    deadline = time.time() + TIMEOUT
    while not held.reached(case.root()) and time.time() < deadline:
        time.sleep(0.05)
    if not held.reached(case.root()):
        case.note = "no trial was held"
        return
    trial, lease = held.trial(case.root())
    for node in workers:
        if node.node_id == lease["node"]:
            # the held worker first, as when its machine dies: removing the node kills its
            # raylet, and a worker that outlived it by a moment, released, wrote its next
            # checkpoint (seen: the retry restored from it)
            with contextlib.suppress(ProcessLookupError):
                os.kill(held.pid(), signal.SIGKILL)
            cluster.remove_node(node, allow_graceful=False)
            case.injected += 1
            case.note = f"removed the node of {trial.name}, held at the end of task 1"
    held.hold.unlink()  # the retry on the other node passes


def fill(folder: Path, hold: threading.Event) -> Action:
    """An action: fill the file system of ``folder`` (files of zeros until ENOSPC) and keep it
    full until ``hold`` is cleared: whatever a write frees (Ray rewrites its snapshot files in
    place, truncating them first) is taken back, so the next snapshot, which grows as trials
    start and end, cannot be written whole."""

    def hog() -> None:
        block, n = b"\0" * 2**12, 0
        while hold.is_set():
            with contextlib.suppress(OSError), (folder / f"filler-{n}").open("wb") as f:
                while hold.is_set():
                    f.write(block)
                    f.flush()
            n += 1
            time.sleep(0.01)

    def act(proc: subprocess.Popen) -> bool:
        hold.set()
        threading.Thread(target=hog, daemon=True).start()
        time.sleep(0.5)  # full before the driver's next write
        return False

    return act


def torn_snapshot(root: Path) -> str:
    """What :func:`study.driver.repair.repair_snapshots` will find in the study's newest
    snapshot."""
    from study.driver.repair import snapshot_fault
    from study.store.folder import StudyFolder
    from study.store.snapshot import snapshot_sessions

    folder = StudyFolder(str(root))
    sessions = snapshot_sessions(folder.fs, folder.experiment_path)
    if not sessions:
        return "no snapshot"
    newest = list(sessions)[-1]
    return snapshot_fault(folder.fs, sessions[newest]) or f"newest snapshot ({newest}) whole"


def fault_disk_full_launch(case: Case) -> None:
    """As ``disk-full``, but in the launch session: no kill first, so the study has one
    session whose snapshot files the full disk truncates in place; the resume must go on from
    the copy the running driver kept (:class:`study.driver.repair.SnapshotKeeper`)."""
    fault_disk_full(case, kill_first=False)


def fault_disk_full(case: Case, kill_first: bool = True) -> None:
    """The storage is a 48 MiB tmpfs (a whole study takes ~26 MiB). The driver is killed once
    in search trial 1 (so the study has an older snapshot, of that session), then the resume's
    storage is filled, and kept full, from search trial 2's task 1 on: its checkpoints and Ray's
    snapshots (experiment_state-*.json, searcher-state-*.pkl, rewritten in place) cannot be
    written whole. The driver must stop by itself with one clear last line; after the fillers
    are deleted, a resume must set a torn newest snapshot aside and complete the study. The
    study is then copied off the tmpfs for the comparison."""
    mount = case.work / f"tmpfs-{case.name}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    hold = threading.Event()
    try:
        case.retarget(str(mount))
        start = 0
        try:
            if kill_first:
                case.launch([(KILL_MOMENTS[0], kill_driver)])
                start = case.log.stat().st_size if case.log.exists() else 0
                code = case.resume([(KILL_MOMENTS[2], fill(mount, hold))], timeout=300)
            else:
                code = case.launch([(KILL_MOMENTS[2], fill(mount, hold))], timeout=300)
        except RuntimeError:
            code = "none (did not stop within 300 s; killed)"
        hold.clear()
        case.injected = int(any(mount.glob("filler-*")))
        err = case.log.read_text()[start:]
        last = err.strip().splitlines()[-1] if err.strip() else ""
        traceback = "Traceback" in err
        torn = torn_snapshot(case.root())
        time.sleep(0.5)
        for filler in mount.glob("filler-*"):
            filler.unlink()
        start = case.log.stat().st_size
        case.resume_until_done()
        aside = [
            line.split("trials: ", 1)[-1][:110]
            for line in case.log.read_text()[start:].splitlines()
            if "set aside" in line
        ]
        case.note = (
            f"exit {code}, traceback in stderr: {traceback}, last line: {last[:150]}; "
            f"snapshot then: {torn}; resume: {' / '.join(aside) or 'nothing set aside'}"
        )
        shutil.copytree(mount, case.work / f"{case.name}-copy", symlinks=True)
        case.storage = str(case.work / f"{case.name}-copy")
    finally:
        hold.clear()
        subprocess.run(["umount", str(mount)], check=False)


FAULTS = {
    "kill": fault_kill,
    "kill-new-head": fault_kill_new_head,
    "view-written": fault_view_written,
    "copy": fault_copy,
    "move": fault_move,
    "worker": fault_worker,
    "corrupt": fault_corrupt,
    "node": fault_node,
    "disk-full": fault_disk_full,
    "disk-full-launch": fault_disk_full_launch,
    "kill-ladder": fault_kill_ladder,
    "kill-last-state": fault_kill_last_state,
    "orphan": fault_orphan,
}
if set(FAULTS) != set(faults.SUITE):
    raise RuntimeError(f"FAULTS and study.faults.SUITE differ: {set(FAULTS) ^ set(faults.SUITE)}")
ALL = ",".join(faults.SUITE)


# -- comparing with the undisturbed study ---------------------------------------------------------
def compare(root: Path, expected: list[tuple[str, list[tuple]]]) -> dict:
    """Trials complete (every epoch, in the newest snapshots), optuna.db's COMPLETE trials,
    rows lost (expected rows no trial of the same config holds), rows duplicated (rows of a
    second trial of the same config), trials that differ (an expected trial whose rows are not
    bit-identical, or a trial of a config the undisturbed study did not run)."""
    got: dict[str, list[list[tuple]]] = {}
    for key, rows in study_rows(root):
        got.setdefault(key, []).append(rows)
    want = dict(expected)
    complete = sum(len(rows) == ROWS for runs in got.values() for rows in runs)
    lost = sum(
        max(0, len(v) - max((len(r) for r in got.get(k, [])), default=0)) for k, v in want.items()
    )
    dup = sum(sum(len(r) for r in runs) - max(len(r) for r in runs) for runs in got.values())
    differ = sum(want[k] not in got.get(k, []) for k in want) + sum(k not in want for k in got)
    return {
        "complete": complete,
        "optuna": optuna_complete(root),
        "lost": lost,
        "dup": dup,
        "differ": differ,
        "checkpoints": checkpoints_left(root),
    }


def checkpoints_left(root: Path) -> int:
    """Checkpoint folders left in the finished study's trial folders (its trials have all
    ended, so none should be; a trial folder a restore left behind is included)."""
    return len(list((root / "trials").glob("*/checkpoint_*/state.pt")))


def searched_trials(spec: dict) -> int:
    """The search trials a study of ``spec`` plans (its largest rung)."""
    trials = spec["budget"]["trials_per_strategy"]
    return trials[-1] if isinstance(trials, list) else trials


def print_table(table: list[dict]) -> None:
    """``planned``: the trials of the same study undisturbed (a ladder's evaluations depend
    on which rungs' bests changed); ``optuna COMPLETE``: of its planned search trials."""
    columns = (
        "fault injected planned complete optuna-COMPLETE rows-lost rows-dup differ "
        "checkpoints-left s note"
    )
    print("| " + " | ".join(c.replace("-", " ") for c in columns.split()) + " |")
    print("|" + "---|" * len(columns.split()))
    for r in table:
        print(
            f"| {r['fault']} | {r['injected']} | {r['planned']} | {r['complete']} | "
            f"{r['optuna']}/{r['searched']} | {r['lost']} | {r['dup']} | "
            f"{r['differ']} | {r['checkpoints']} | {r['s']:.0f} | {r['note']} |"
        )


def undisturbed(work: Path, env: dict, fault: str = "") -> list[tuple[str, list[tuple]]]:
    """The rows of ``fault``'s study (:data:`SPECS`, else :data:`SPEC`) undisturbed: run once
    per ``--work``, then kept."""
    name = f"undisturbed-{fault}" if fault in SPECS else "undisturbed"
    base = Case(name, work, env, spec=SPECS.get(fault, SPEC))
    if not finished(base.root()) and (base.launch() != 0 or not finished(base.root())):
        sys.exit(f"the undisturbed study failed; see {base.log}")
    return study_rows(base.root())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faults", default=ALL, help=f"comma-separated, of {ALL}")
    p.add_argument("--work", help="folder for the studies (default: a new temporary one)")
    args = p.parse_args()
    chosen = args.faults.split(",")
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s) {unknown}; choose from {ALL}")
    work = Path(args.work or tempfile.mkdtemp(prefix="faults-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = repo  # the drivers, and Ray's workers, import this checkout
    sys.path.insert(0, repo)
    # Ray adds 15 to its workers' niceness: under `nice -n 10` on a shared CPU they then starve
    # (a trial took minutes to start); 0 leaves them at the driver's
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}
    started = time.time()
    expected = undisturbed(work, env)
    print(f"undisturbed study: {len(expected)} trials in {time.time() - started:.0f} s", flush=True)

    table = []
    for name in chosen:
        spec = SPECS.get(name, SPEC)
        want = undisturbed(work, env, name) if name in SPECS else expected
        t0 = time.time()
        if (work / name).exists():
            sys.exit(f"{work / name} exists: give another --work")
        case = Case(name, work, env, spec=spec)
        FAULTS[name](case)
        row = {"fault": name, "injected": case.injected, **compare(case.root(), want)}
        row.update(planned=len(want), searched=searched_trials(spec))
        table.append({**row, "s": time.time() - t0, "note": case.note})
        print(f"{name}: {table[-1]}", flush=True)
    print()
    print_table(table)
    print(f"\nwall time {time.time() - started:.0f} s; studies and drivers' stderr under {work}")


if __name__ == "__main__":
    main()
