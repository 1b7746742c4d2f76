import json
from pathlib import Path

import pytest
import torch

from plasticity.data import DATASETS
from plasticity.errors import UserError
from plasticity.models import (
    architecture,
    build,
    count_parameters,
    network_factory,
    parameter_count,
)


@pytest.mark.parametrize(
    "model,dataset,expected",
    [
        ("mlp", "mnist", 3_706_762),
        ("mlp", "cifar10", 132_206_602),
        ("cnn", "mnist", 30_094),
        ("cnn", "cifar10", 447_814),
        ("mlp", "mnist-5k", 3_706_762),
    ],
)
def test_paper_parameter_counts(model, dataset, expected):
    assert parameter_count(model, dataset) == expected


@pytest.mark.parametrize("model,dataset", [("cnn", "mnist"), ("cnn", "cifar10"), ("mlp", "mnist")])
def test_built_network_matches_count_and_maps_images_to_10_logits(model, dataset):
    shape = DATASETS[dataset].shape
    net = build(architecture(model, dataset), shape)
    assert count_parameters(net) == parameter_count(model, dataset)
    assert net(torch.zeros(3, *shape)).shape == (3, 10)


def test_factory_same_key_same_weights_different_key_different_weights():
    fresh = network_factory("mlp-small", "mnist", seed=7)
    a, b, c = fresh(0), fresh(0), fresh(1)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    other_seed = network_factory("mlp-small", "mnist", seed=8)(0)
    assert not torch.equal(next(a.parameters()), next(other_seed.parameters()))


def test_factory_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    network_factory("mlp-small", "mnist", seed=0)(0)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'resnet'"):
        architecture("resnet", "mnist")


# -- defaults leave every existing network and run as it was -------------------------------------
PINNED = json.loads((Path(__file__).parent / "data" / "pinned_records.json").read_text())


@pytest.mark.parametrize("key", sorted(PINNED["initial_weights_sha256"]))
def test_default_networks_have_the_pinned_initial_weights(key):
    """Bit for bit the weights the commit named in the file built (tests/pin_records.py)."""
    from pin_records import weights_digest

    model, dataset = key.split("/")
    digest = weights_digest(network_factory(model, dataset, 0)(0))
    assert digest == PINNED["initial_weights_sha256"][key]


@pytest.mark.parametrize("model", sorted(PINNED["records"]))
def test_default_runs_give_the_pinned_records(model, tiny):
    """The records of the strategies that walk hidden units, diagnostics on, as the pinning
    commit produced them. Equal to the last bit on the machine that pinned them; the tolerance
    only allows for other CPUs' kernels (a changed draw or layer moves them by far more)."""
    from pin_records import records

    pinned = PINNED["records"][model]
    now = records(model, tuple(pinned), tiny)
    for strategy, rows in pinned.items():
        assert len(now[strategy]) == len(rows)
        for new, old in zip(now[strategy], rows):
            for key, value in old.items():
                assert new[key] == pytest.approx(value, rel=1e-6, nan_ok=True), (strategy, key)
