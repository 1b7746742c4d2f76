"""plasticity.allocator: freed tensor memory is reused instead of being mapped afresh."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from plasticity import loop
from plasticity.config import RunConfig

PROBE = """
import resource, torch
from plasticity.allocator import keep_freed_memory
print(keep_freed_memory())
for _ in range(10):  # 64 MiB, above any mmap threshold; the heap settles in a few steps
    torch.empty(16 << 20).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(16 << 20).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    clean.pop("PLASTICITY_MALLOC", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] if len(out) == 2 else " ".join(out[:-1]), int(out[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_a_freed_large_tensor_is_reused_not_mapped_again():
    state, faults = _probe()
    assert state == "applied"
    _, system_faults = _probe(PLASTICITY_MALLOC="system")
    # 20 x 64 MiB = 327,680 fresh 4-KiB pages under glibc's defaults; reused memory faults none
    assert system_faults > 100_000
    assert faults < system_faults / 20


def test_the_users_own_malloc_settings_win():
    state, _ = _probe(MALLOC_MMAP_THRESHOLD_="1048576")
    assert state.startswith("off (the user's")
    state, _ = _probe(PLASTICITY_MALLOC="system")
    assert state.startswith("off (PLASTICITY_MALLOC")


def test_every_training_process_applies_it(monkeypatch):
    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1))
    loop.prepare(RunConfig(dataset="mnist-5k"))
    assert calls == [1]


THREADED = """
import resource, threading, torch
import study.trainable  # what a Ray worker imports before it starts a trial's thread
def trial():
    for _ in range(10):
        torch.empty(16 << 20).fill_(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(16 << 20).fill_(1)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
t = threading.Thread(target=trial)
t.start()
t.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_a_study_trials_thread_reuses_freed_memory_too():
    """Ray runs a function trainable in a thread it starts after importing the module."""
    out = subprocess.run(
        [sys.executable, "-c", THREADED], capture_output=True, text=True, check=True
    )
    assert int(out.stdout.split()[-1]) < 20_000
