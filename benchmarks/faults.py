"""The fault suite, in full: tiny studies disturbed in the ways long sweeps on spot machines
die, each resumed until done and compared with the same study undisturbed.

    PYTHONPATH=. python benchmarks/faults.py [--faults kill-search,copy,...] [--kills 5]

Prints one row per fault: times injected, trials planned, trials complete, rows lost, rows
duplicated, and trials whose records differ from the undisturbed study's (same config, seed,
thread count and CPU, so they must be bit-identical). A study is one strategy (expanded), 3
search trials of 3 tasks x 3 epochs, then 1 evaluation seed, one trial at a time (so the
search's order, and so its suggestions, do not depend on timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

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
FIELDS = ("task", "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "alpha")


def trial_rows(experiment: Path) -> dict[str, list[tuple]]:
    """Per trial (keyed by its whole run config): its epoch rows, de-duplicated on
    training_iteration as the analysis does (orphans of a restore left out)."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    known = set()
    if states:
        for trial, _ in json.loads(states[-1].read_text())["trial_data"]:
            known.add(json.loads(trial)["trial_id"])
    out = {}
    for result in sorted(experiment.glob("*/result.json")):
        if result.parent.name.rsplit("_", 1)[-1] not in known:
            continue
        rows = {}
        config = None
        for line in result.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["training_iteration"]] = tuple(row[f] for f in FIELDS)
                run = row["config"].get("trial", row["config"])["run"]
                config = json.dumps(run, sort_keys=True)
        out[config] = [rows[k] for k in sorted(rows)]
    return out


def study_rows(root: Path) -> dict[str, list[tuple]]:
    rows = {}
    for experiment in sorted(p for p in root.iterdir() if p.is_dir()):
        rows.update({f"{experiment.name}:{k}": v for k, v in trial_rows(experiment).items()})
    return rows


def launch(spec_file: Path, env: dict, kill_after: float | None = None) -> int:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plasticity.cli",
            "study",
            "launch",
            str(spec_file),
            "--no-analysis",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _wait(proc, kill_after)


def resume(root: Path, env: dict, kill_after: float | None = None) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "plasticity.cli", "study", "resume", str(root), "--no-analysis"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _wait(proc, kill_after)


def _wait(proc: subprocess.Popen, kill_after: float | None) -> int:
    try:
        return proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
        time.sleep(3)  # Ray's workers notice their owner died
        return -9


def finished(root: Path) -> bool:
    state = json.loads((root / "study.json").read_text())
    return all(v == "done" for v in state["phases"].values())


def compare(root: Path, expected: dict) -> dict:
    got = study_rows(root)
    planned = SPEC["budget"]["trials_per_strategy"] + SPEC["budget"]["eval_seeds"]
    complete = sum(1 for rows in got.values() if len(rows) == 9)
    lost = sum(max(0, len(v) - len(got.get(k, []))) for k, v in expected.items())
    dup = sum(len(v) - len(set(v)) for v in got.values())
    differ = sum(1 for k, v in expected.items() if got.get(k) != v)
    return {"planned": planned, "complete": complete, "lost": lost, "dup": dup, "differ": differ}


def kill_and_resume(fault, spec_file, root, env, undisturbed_s, kills) -> tuple[int, dict]:
    """SIGKILL the driver at spread moments of the undisturbed run's length (search and
    evaluation), resuming in between; ``kill-new-head`` resumes each time from a new home."""
    moments = [undisturbed_s * (i + 1) / (kills + 1) for i in range(kills)]
    injected, first = 0, True
    for m in moments:
        code = launch(spec_file, env, m) if first else resume(root, env, m)
        first = False
        injected += code == -9
        if code == 0:
            break
        if fault == "kill-new-head":  # a new head node: another home, no local files
            env = {**env, "HOME": tempfile.mkdtemp(prefix="head-")}
    return injected, env


def interrupt_and_relocate(fault, spec_file, root, env, undisturbed_s) -> tuple[int, Path]:
    """Kill once (a third of the way in, for copy and move) then copy or move the folder."""
    code = launch(spec_file, env, undisturbed_s / 3 if fault in ("copy", "move") else None)
    if fault == "copy":
        copy = root.parent.parent / "copy" / SPEC["name"]
        shutil.copytree(root, copy)
        root = copy
    elif fault == "move":
        moved = root.parent.parent / "moved" / SPEC["name"]
        moved.parent.mkdir(parents=True)
        root.rename(moved)
        root = moved
    return int(code != 0), root


def print_table(table: list[dict]) -> None:
    header = "| fault | injected | planned | complete | rows lost | rows dup | differ |"
    print(header + "\n|" + "---|" * 7)
    for r in table:
        print(
            f"| {r['fault']} | {r['injected']} | {r['planned']} | {r['complete']} | "
            f"{r['lost']} | {r['dup']} | {r['differ']} |"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kills", type=int, default=5, help="driver kills at spread moments")
    p.add_argument("--faults", default="kill,kill-new-head,view-written,copy,move")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.time()

    def fresh(name: str) -> tuple[Path, Path]:
        spec = {**SPEC, "storage": str(work / name)}
        (work / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        return work / f"{name}.yaml", work / name / SPEC["name"]

    spec_file, root = fresh("undisturbed")
    t0 = time.time()
    assert launch(spec_file, env) == 0, "the undisturbed study failed"
    undisturbed_s = time.time() - t0
    expected = study_rows(root)
    print(f"undisturbed study: {len(expected)} trials in {undisturbed_s:.0f} s")

    table = []
    for fault in args.faults.split(","):
        spec_file, root = fresh(fault)
        run_env = dict(env)
        if fault == "view-written":
            run_env["PLASTICITY_FAULT"] = "view-written"
        if fault in ("kill", "kill-new-head"):
            injected, run_env = kill_and_resume(
                fault, spec_file, root, run_env, undisturbed_s, args.kills
            )
        else:
            injected, root = interrupt_and_relocate(fault, spec_file, root, run_env, undisturbed_s)
        tries = 0
        run_env.pop("PLASTICITY_FAULT", None)
        while not finished(root) and tries < 5:
            resume(root, run_env)
            tries += 1
        table.append({"fault": fault, "injected": injected, **compare(root, expected)})
    print_table(table)
    print(f"wall time {time.time() - started:.0f} s; studies under {work}")


if __name__ == "__main__":
    main()
