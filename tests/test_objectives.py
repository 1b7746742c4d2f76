import pytest
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


# -- warm_start (Ash & Adams 2020): growing nested subsets of the training set, true labels -----


def test_warm_start_sizes_by_hand():
    from plasticity.objectives import warm_start_size

    # m_k = ceil(n (k+1) / (R+1))
    assert [warm_start_size(10, k, 1) for k in range(2)] == [5, 10]  # the paper's 50% then 100%
    assert [warm_start_size(10, k, 2) for k in range(3)] == [4, 7, 10]  # 3.33, 6.67, 10
    assert [warm_start_size(10, k, 3) for k in range(4)] == [3, 5, 8, 10]  # 2.5, 5, 7.5, 10
    assert [warm_start_size(7, k, 6) for k in range(7)] == [1, 2, 3, 4, 5, 6, 7]


def test_warm_start_tasks_have_those_sizes(tiny):
    sizes = [len(make_task("warm_start", tiny, 0, k, restarts=2).y_train) for k in range(3)]
    assert sizes == [171, 342, 512]  # ceil(512/3), ceil(1024/3), 512


def test_warm_start_subsets_are_nested_and_end_with_the_whole_set(tiny):
    tasks = [make_task("warm_start", tiny, seed=4, index=k, restarts=3) for k in range(4)]
    for small, big in zip(tasks, tasks[1:]):
        assert torch.equal(big.train_index[: len(small.train_index)], small.train_index)
    for t in tasks:
        assert len(t.train_index.unique()) == len(t.train_index)  # no image twice
        assert torch.equal(t.x_train, tiny.train.x[t.train_index])  # the images of the index
    assert torch.equal(tasks[-1].train_index.sort().values, torch.arange(len(tiny.train)))
    # a random subset, not the first images of the set
    assert not torch.equal(tasks[0].train_index, torch.arange(len(tasks[0].train_index)))


def test_warm_start_keeps_true_labels_and_the_full_test_set(tiny):
    for k in range(3):
        t = make_task("warm_start", tiny, seed=1, index=k, restarts=2)
        assert torch.equal(t.y_train, tiny.train.y[t.train_index])
        assert torch.equal(t.y_test, tiny.test.y)
        assert t.meaningful_test and t.pixel_perm is None
    sub = tiny.train.y[t.train_index]
    assert t.majority_rate == torch.bincount(sub).max().item() / len(sub)


def test_warm_start_subsets_depend_on_the_seed_only(tiny):
    a = make_task("warm_start", tiny, seed=5, index=1, restarts=2)
    b = make_task("warm_start", tiny, seed=5, index=1, restarts=2)  # another strategy, a restore
    c = make_task("warm_start", tiny, seed=6, index=1, restarts=2)
    assert torch.equal(a.train_index, b.train_index) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.train_index, c.train_index)


def test_warm_start_needs_restarts_and_other_objectives_ignore_them(tiny):
    with pytest.raises(ValueError, match="warm_start"):
        make_task("warm_start", tiny, seed=0, index=1)
    with pytest.raises(ValueError, match="warm_start"):
        make_task("warm_start", tiny, seed=0, index=3, restarts=2)
    for objective in ("class_shuffle", "random_labels", "permute_inputs"):
        a = make_task(objective, tiny, seed=0, index=2, restarts=2)
        b = make_task(objective, tiny, seed=0, index=2, restarts=5)
        assert torch.equal(a.y_train, b.y_train) and a.x_train is None


def _images_trained_on(run, epochs):
    """Per epoch of ``run``: the training-set indices of the images it stepped on, in order, and
    the fractional epochs ``t`` its strategy was given before each step."""
    prepared = run.data.prepare(run.data.train.x)
    where = {prepared[i].numpy().tobytes(): i for i in range(len(prepared))}
    seen, times = [], []
    after, before = run.strategy.after_step, run.strategy.before_step
    run.strategy.after_step = lambda x: (
        seen.extend(where[r.numpy().tobytes()] for r in x),
        after(x),
    )
    run.strategy.before_step = lambda t: (times.append(t), before(t))
    out = []
    for _ in range(epochs):
        task = run.tasks[run.task]
        seen.clear(), times.clear()
        rec = run.run_epoch()
        out.append((rec, task, list(seen), list(times)))
    return out


def test_loop_trains_each_epoch_on_exactly_the_task_subset(tiny, tiny_config):
    from plasticity.loop import StrategyRun

    cfg = tiny_config.replace(objective="warm_start")  # 3 tasks: 171, 342, 512 images; B = 128
    run = StrategyRun(cfg, "expanded", tiny)
    steps = 0
    for rec, task, seen, times in _images_trained_on(run, run.total_epochs):
        m = len(task.train_index)
        k = -(-m // cfg.batch_size)  # 2, 3, 4 steps
        assert seen == task.train_index.tolist()  # every subset image once, in its fixed order
        assert times == [rec.epoch + b / k for b in range(k)]
        steps += k
        assert rec.step == steps
        assert rec.majority_rate == torch.bincount(task.y_train).max().item() / m
        # a mean over the subset: correct / m (and learning: not 0, which is also x / 512)
        assert rec.train_acc > 0 and rec.train_acc * m == pytest.approx(round(rec.train_acc * m))
    assert [len(t.train_index) for t in (run.tasks[1], run.tasks[2])] == [342, 512]


def test_loop_subsets_same_for_every_strategy_and_a_restored_run(tiny, tiny_config, tmp_path):
    from plasticity.loop import StrategyRun, load_state, save_state

    cfg = tiny_config.replace(objective="warm_start", shuffle=True)
    runs = {s: StrategyRun(cfg, s, tiny) for s in ("reset", "continuous")}
    seen = {s: [sorted(x[2]) for x in _images_trained_on(r, 9)] for s, r in runs.items()}
    assert seen["reset"] == seen["continuous"]
    for (_, task, images, _), sorted_images in zip(
        _images_trained_on(StrategyRun(cfg, "reset", tiny), 9), seen["reset"]
    ):
        assert images != task.train_index.tolist()  # shuffled
        assert sorted(images) == sorted(task.train_index.tolist()) == sorted_images
    first = StrategyRun(cfg, "continuous", tiny)
    for _ in range(4):  # stop inside task 1
        first.run_epoch()
    save_state(tmp_path / "s.pt", first.state_dict())
    resumed = StrategyRun(cfg, "continuous", tiny)
    resumed.load_state_dict(load_state(tmp_path / "s.pt"))
    assert [sorted(x[2]) for x in _images_trained_on(resumed, 5)] == seen["continuous"][4:]
    other = StrategyRun(cfg.replace(seed=1), "continuous", tiny)
    assert [sorted(x[2]) for x in _images_trained_on(other, 1)] != seen["continuous"][:1]
