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
def probe():
    out = []
    def trial():
        for _ in range(10):
            torch.empty(16 << 20).fill_(1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            torch.empty(16 << 20).fill_(1)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    t = threading.Thread(target=trial)
    t.start()
    t.join()
    return out[0]
"""
"""Minor page faults of 20 allocations of 64 MiB, once the heap has settled, in a thread
started after the trainable's import (as Ray runs a function trainable): ``probe()``."""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_a_study_trials_thread_reuses_freed_memory_too():
    """Ray runs a function trainable in a thread it starts after importing the module."""
    out = subprocess.run(
        [sys.executable, "-c", THREADED + "print(probe())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout.split()[-1]) < 20_000


@pytest.mark.ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_a_study_reaches_the_trials_thread_in_a_real_ray_worker(monkeypatch):
    """Inside a Ray worker, Ray's own threads already hold malloc arenas when the trainable's
    module is imported, so mallopt there misses the trial's thread (a CNN trial ran 1.75x
    slower): the driver gives its workers the settings as environment variables instead."""
    ray = pytest.importorskip("ray")
    from study.driver.ray_setup import ray_init_env

    def faults_in_a_new_thread(code: str) -> int:  # shipped by value: this module is not
        scope: dict = {}  # importable in a Ray worker
        exec(code, scope)
        return scope["probe"]()

    for name in ("PLASTICITY_MALLOC", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    env = ray_init_env()
    assert env["runtime_env"]["env_vars"]["MALLOC_MMAP_MAX_"] == "0"
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        probe = ray.remote(num_cpus=1, max_calls=1)(faults_in_a_new_thread)
        # the study's workers (the runtime environment its driver gives ray.init, here per task)
        faults = ray.get(probe.options(**env).remote(THREADED))
        # 20 x 64 MiB = 327,680 fresh pages when each allocation is mapped afresh
        assert faults < 20_000
        without = ray.get(probe.remote(THREADED))  # mallopt at the import alone
        assert without > 100_000  # the case the environment variables are for
    finally:
        ray.shutdown()
    monkeypatch.setenv("PLASTICITY_MALLOC", "system")
    assert ray_init_env() == {}


def test_the_drivers_ray_gets_the_workers_environment(monkeypatch):
    """A local Ray is started with the settings in its environment (its raylet passes them to
    every worker, prestarted ones too), and the driver's own environment is left as it was; a
    cluster's job gets them as its runtime environment."""
    ray = pytest.importorskip("ray")
    import study.driver.ray_setup as driver

    seen = []

    def init(**kwargs):
        seen.append((kwargs, os.environ.get("MALLOC_MMAP_MAX_")))
        raise RuntimeError("stop here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    for name in ("PLASTICITY_MALLOC", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    for address in (None, "ray://head:10001"):
        with pytest.raises(RuntimeError, match="stop here"), driver.connected(address):
            pass
    (local, local_env), (cluster, cluster_env) = seen
    assert local["address"] == "local" and "runtime_env" not in local and local_env == "0"
    assert cluster["runtime_env"] == driver.ray_init_env()["runtime_env"] and cluster_env is None
    assert "MALLOC_MMAP_MAX_" not in os.environ
