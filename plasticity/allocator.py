"""Keep freed tensor memory in the process (glibc malloc settings, applied at run start).

A training step on CPU allocates and frees the same large buffers (activations, gradients)
every batch. glibc serves blocks above its mmap threshold (at most 32 MiB) with ``mmap`` and
gives them back with ``munmap`` when freed, and trims the heap's top above its trim threshold:
so every step maps fresh pages and the kernel zero-fills them again. For the paper's CNN on
mnist-5k (batch 8192) that is ~90,000 page faults and ~0.3 s of system time per epoch, about
as much as the arithmetic. With mmap off and trimming off, freed blocks stay in the heap and
the next step reuses them (measured: system time 3 s → 0.01 s over 10 CNN epochs; see
``benchmarks/loop_speed.py``). The cost: the process keeps its peak heap until it exits,
which a training process reaches in its first step anyway.

A thread gets its own malloc arena at its first allocation, and such an arena can only serve
blocks over 64 MiB by ``mmap``; so one arena is used for the whole process. That reaches only
threads that allocate for the first time after the settings: :func:`plasticity.loop.prepare`
applies them (``plasticity run`` trains in the main thread), once per process. A Ray worker's
own threads hold arenas before any of our code runs there, and the trial's thread may reuse
one of them: a study's driver therefore hands its workers the same settings as glibc's
environment variables (:func:`worker_env`, through ``ray.init``'s runtime environment),
which glibc applies at process start. Not applied when the platform is not glibc, when the
user has set glibc's own ``MALLOC_MMAP_MAX_``/``MALLOC_TRIM_THRESHOLD_``/
``MALLOC_MMAP_THRESHOLD_`` (their choice wins), or when ``PLASTICITY_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NO_TRIM = 2**31 - 1  # mallopt takes an int
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")

_state: dict[str, str] = {}


def keep_freed_memory() -> str:
    """Apply the settings once; returns what happened: ``"applied"``, or why not."""
    if "result" not in _state:
        _state["result"] = _apply()
        log.debug("malloc settings: %s", _state["result"])
    return _state["result"]


def worker_env() -> dict[str, str]:
    """The same settings as glibc's environment variables, for processes started for us (a
    study's Ray workers: ``ray.init(runtime_env={"env_vars": ...})``), where glibc reads them
    at process start, before any thread exists. In a Ray worker, :func:`keep_freed_memory`
    comes too late: Ray's own threads already have their arenas, the trial's thread reuses
    one of them, and the settings miss it (measured: a CNN trial 11.6 s with two workers
    sharing 2 cores, 6.6 s with these variables). Empty where the settings do not apply
    (``PLASTICITY_MALLOC=system``, the user's own ``MALLOC_*``), so the workers inherit
    whatever the user chose."""
    if os.environ.get("PLASTICITY_MALLOC", "").lower() == "system":
        return {}
    if any(name in os.environ for name in USER_SETTINGS):
        return {}
    return {
        "MALLOC_ARENA_MAX": "1",
        "MALLOC_MMAP_MAX_": "0",
        "MALLOC_TRIM_THRESHOLD_": str(NO_TRIM),
    }


def _apply() -> str:
    if os.environ.get("PLASTICITY_MALLOC", "").lower() == "system":
        return "off (PLASTICITY_MALLOC=system)"
    if any(name in os.environ for name in USER_SETTINGS):
        return "off (the user's MALLOC_* settings)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "off (not glibc)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NO_TRIM))
    if not all(mallopt(option, value) == 1 for option, value in settings):
        return "off (mallopt refused)"
    return "applied"
