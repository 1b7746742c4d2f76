import torch

from plasticity.objectives import make_task


def test_task_zero_is_the_original_objective(tiny):
    for objective in ("class_shuffle", "full_shuffle", "random_labels", "permute_inputs"):
        t = make_task(objective, tiny, seed=0, index=0)
        assert torch.equal(t.y_train, tiny.train.y) and t.pixel_perm is None


def test_class_shuffle_is_a_permutation_of_classes(tiny):
    t = make_task("class_shuffle", tiny, seed=0, index=1)
    mapping = {}
    for old, new in zip(
        tiny.train.y.tolist() + tiny.test.y.tolist(), t.y_train.tolist() + t.y_test.tolist()
    ):
        assert mapping.setdefault(old, new) == new  # a function of the class, train and test
    assert sorted(mapping) == list(range(10))
    assert sorted(mapping.values()) == list(range(10))  # a bijection


def test_full_shuffle_fixed_within_task_different_between_tasks(tiny):
    a = make_task("full_shuffle", tiny, seed=0, index=1)
    again = make_task("full_shuffle", tiny, seed=0, index=1)  # e.g. another epoch, or a restore
    b = make_task("full_shuffle", tiny, seed=0, index=2)
    assert torch.equal(a.y_train, again.y_train) and torch.equal(a.y_test, again.y_test)
    assert (a.y_train != b.y_train).float().mean() > 0.5
    # not the class labels in disguise, and not one class for everything
    assert (a.y_train != tiny.train.y).float().mean() > 0.5
    assert a.majority_rate < 0.4 and len(a.y_train.unique()) >= 5


def test_full_shuffle_labels_are_a_function_of_the_image(tiny):
    """The same image gets the same label wherever it sits in the set (no per-batch teacher)."""
    from plasticity.data import Dataset, Split

    twice = Dataset(
        tiny.info,
        Split(torch.cat([tiny.train.x, tiny.train.x]), torch.cat([tiny.train.y, tiny.train.y])),
        tiny.test,
    )
    t = make_task("full_shuffle", twice, seed=3, index=1)
    n = len(tiny.train)
    assert torch.equal(t.y_train[:n], t.y_train[n:])


def test_same_seed_same_labels_other_seed_other_labels(tiny):
    for objective in ("class_shuffle", "full_shuffle", "random_labels"):
        a = make_task(objective, tiny, seed=5, index=3)
        b = make_task(objective, tiny, seed=5, index=3)
        c = make_task(objective, tiny, seed=6, index=3)
        assert torch.equal(a.y_train, b.y_train)
        assert not torch.equal(a.y_train, c.y_train)


def test_random_labels_uniform_and_marked_meaningless_on_test(tiny):
    t = make_task("random_labels", tiny, seed=0, index=1)
    assert not t.meaningful_test
    assert 0.06 < (t.y_train == tiny.train.y).float().mean() < 0.16  # chance agreement ~ 0.1
    counts = torch.bincount(t.y_train, minlength=10)
    assert counts.min() > 20


def test_permute_inputs_permutes_pixels_keeps_labels(tiny):
    t = make_task("permute_inputs", tiny, seed=0, index=1)
    assert torch.equal(t.y_train, tiny.train.y)
    assert sorted(t.pixel_perm.tolist()) == list(range(28 * 28))
    x = tiny.train.x[:4]
    permuted = tiny.prepare(x, t.pixel_perm).flatten(1)
    plain = tiny.prepare(x).flatten(1)
    assert torch.equal(permuted, plain[:, t.pixel_perm])


def test_none_keeps_labels_for_every_task(tiny):
    assert torch.equal(make_task("none", tiny, 0, 4).y_train, tiny.train.y)
