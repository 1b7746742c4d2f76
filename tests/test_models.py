import json
from pathlib import Path

import pytest
import torch
from pin_records import weights_digest

from plasticity.data import DATASETS
from plasticity.errors import UserError
from plasticity.models import (
    architecture,
    build,
    count_parameters,
    crelu_spec,
    network_factory,
    parameter_count,
    with_factors,
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


# -- width, depth and norm factors ---------------------------------------------------------------
def _kinds(net):
    return [type(m).__name__ for m in net]


def test_layer_norm_sits_after_each_hidden_layer_before_its_activation():
    mlp = build(with_factors(architecture("mlp", "mnist"), [100, 100], "layer"), (1, 28, 28))
    assert _kinds(mlp) == [
        "Flatten",
        "Linear", "LayerNorm", "ReLU",
        "Linear", "LayerNorm", "ReLU",
        "Linear",
    ]  # fmt: skip
    assert [m.normalized_shape for m in mlp if isinstance(m, torch.nn.LayerNorm)] == [(100,)] * 2
    cnn = build(with_factors(architecture("cnn", "mnist"), norm="layer"), (1, 28, 28))
    assert _kinds(cnn) == [
        "Conv2d", "GroupNorm", "ReLU", "MaxPool2d",
        "Conv2d", "GroupNorm", "ReLU", "MaxPool2d",
        "Flatten",
        "Linear", "LayerNorm", "ReLU",
        "Linear", "LayerNorm", "ReLU",
        "Linear",
    ]  # fmt: skip
    groups = [(m.num_groups, m.num_channels) for m in cnn if isinstance(m, torch.nn.GroupNorm)]
    assert groups == [(1, 2), (1, 4)]  # one group: the whole feature map of a sample
    spec = with_factors(architecture("mlp", "mnist"), [8], "layer")
    crelu = build(spec, (1, 28, 28), 10, "crelu")
    assert _kinds(crelu) == ["Flatten", "Linear", "LayerNorm", "CReLU", "Linear"]


def test_group_norm_after_a_conv_is_the_layer_norm_of_each_feature_map():
    """GroupNorm(1, C) normalises a sample over channels and positions together."""
    x = torch.randn(3, 4, 5, 5)
    expected = torch.nn.functional.layer_norm(x, (4, 5, 5))
    assert torch.allclose(torch.nn.GroupNorm(1, 4)(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    "model,dataset,hidden,norm,expected",
    [
        ("mlp", "mnist", (100, 100), "none", 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10),
        # + a scale and a shift per hidden unit
        ("mlp", "mnist", (100, 100), "layer", 89_610 + 2 * (100 + 100)),
        ("mlp-small", "mnist", (100,), "none", 784 * 100 + 100 + 100 * 10 + 10),
        (
            "mlp",
            "cifar10",
            (50, 40, 30),
            "none",
            3072 * 50 + 50 + 50 * 40 + 40 + 40 * 30 + 30 + 30 * 10 + 10,
        ),
        # the paper's CNN/MNIST, + scale and shift per channel (2, 4) and per unit (98, 98)
        ("cnn", "mnist", None, "layer", 30_094 + 2 * (2 + 4) + 2 * (98 + 98)),
        # the CNN's fully connected layers replaced: 196-64-10
        ("cnn", "mnist", (64,), "none", (1 * 9 + 1) * 2 + (2 * 9 + 1) * 4 + 196 * 64 + 64 + 650),
    ],
)
def test_width_depth_and_norm_reach_the_parameter_count(model, dataset, hidden, norm, expected):
    assert parameter_count(model, dataset, hidden=hidden, norm=norm) == expected
    net = network_factory(model, dataset, 0, hidden=hidden, norm=norm)(0)
    assert count_parameters(net) == expected
    shape = DATASETS[dataset].shape
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_norm_layers_leave_the_weighted_layers_initial_weights_unchanged():
    """Norm layers draw nothing from the seeded generator: the same seed gives the same Linear
    and Conv2d weights with and without them (a fair comparison of the norm factor)."""
    for model in ("mlp-small", "cnn"):
        plain = network_factory(model, "mnist", 3)(0)
        normed = network_factory(model, "mnist", 3, norm="layer")(0)
        weighted = (torch.nn.Linear, torch.nn.Conv2d)
        a = [m for m in plain if isinstance(m, weighted)]
        b = [m for m in normed if isinstance(m, weighted)]
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert torch.equal(x.weight, y.weight) and torch.equal(x.bias, y.bias)


def test_the_models_own_widths_given_explicitly_build_the_default_network():
    default = network_factory("mlp-small", "mnist", 0)(0)
    explicit = network_factory("mlp-small", "mnist", 0, hidden=(256, 256), norm="none")(0)
    assert weights_digest(default) == weights_digest(explicit)


def test_crelu_spec_keeps_the_factors_and_the_count_within_one_percent():
    spec = with_factors(architecture("mlp", "mnist"), [100, 100], "layer")
    narrowed = crelu_spec(spec, (1, 28, 28))
    assert narrowed.norm == "layer" and len(narrowed.hidden) == 2
    relu = parameter_count("mlp", "mnist", hidden=[100, 100], norm="layer")
    crelu = parameter_count("mlp", "mnist", "crelu", hidden=[100, 100], norm="layer")
    assert abs(crelu - relu) / relu < 0.01


@pytest.mark.parametrize(
    "hidden,norm,message",
    [
        ("100,0", "none", "hidden must be positive integer widths"),
        ("a,b", "none", "hidden must be positive integer widths"),
        ([], "none", "hidden must be positive integer widths"),
        ([True], "none", "hidden must be positive integer widths"),
        (None, "batch", "unknown norm 'batch'; choose from none, layer"),
    ],
)
def test_bad_factors_are_user_errors(hidden, norm, message):
    with pytest.raises(UserError, match=message):
        with_factors(architecture("mlp", "mnist"), hidden, norm)
