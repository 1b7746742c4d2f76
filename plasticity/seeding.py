"""Seeds derived from (run seed, keys), so every random draw is a pure function of its purpose.

Nothing in the loop reads the global RNG state: a run stopped at any epoch and restored continues
with identical numbers, and two strategies that ask for "the initial network of task 3" get the
same weights.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for ``keys`` under run seed ``seed`` (strings hashed with CRC32)."""
    ints = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    state = np.random.SeedSequence(int(seed), spawn_key=ints).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def generator(seed: int, *keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded with ``derive_seed(seed, *keys)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *keys))
    return g


@contextlib.contextmanager
def seeded(seed: int, *keys: int | str) -> Iterator[None]:
    """Run a block (e.g. ``nn.Module`` construction) under a derived CPU seed, restoring the
    global RNG afterwards. PyTorch's layer initialisers only read the global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *keys))
        yield


def set_deterministic(enabled: bool = True) -> None:
    """Deterministic kernels (CleanRL's default): same seed, same numbers, also on CUDA."""
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
