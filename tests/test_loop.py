"""Determinism and save/restore of the restart loop."""

import dataclasses

import pytest
import torch

from plasticity import conformance
from plasticity.config import RunConfig
from plasticity.errors import UserError
from plasticity.loop import StrategyRun, load_state, run_experiment, save_state


def _numbers(records):
    """Every field but wall time."""
    return [{k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"} for r in records]


def test_same_seed_same_records(tiny, tiny_config):
    a = run_experiment(tiny_config, tiny)
    b = run_experiment(tiny_config, tiny)
    assert len(a) == 3 * 3 * 3
    assert _numbers(a) == _numbers(b)
    c = run_experiment(tiny_config.replace(seed=1), tiny)
    assert _numbers(a) != _numbers(c)


def test_records_cover_every_strategy_task_and_epoch_in_order(tiny, tiny_config):
    recs = run_experiment(tiny_config, tiny)
    keys = [(r.task, r.strategy, r.epoch) for r in recs]
    assert keys == [(t, s, e) for t in range(3) for s in tiny_config.strategies for e in range(3)]
    assert [r.step for r in recs if r.strategy == "reset"] == [4 * i for i in range(1, 10)]


@pytest.mark.parametrize(
    "objective", ["class_shuffle", "full_shuffle", "permute_inputs", "warm_start"]
)
@pytest.mark.parametrize("strategy", ["reset", "continuous", "expanded"])
def test_stop_restore_continue_matches_uninterrupted(tiny, tiny_config, strategy, objective):
    """The conformance kit's resume rule (stop at every epoch boundary, save, rebuild from
    scratch, restore, continue) under each objective."""
    cfg = tiny_config.replace(
        strategies=[strategy],
        objective=objective,
        shuffle=objective in ("permute_inputs", "warm_start"),
    )
    outcome = conformance.run_rule("resume", cfg, tiny)
    assert outcome.ok, outcome.line()


def test_restore_refuses_other_config_or_strategy(tiny, tiny_config):
    run = StrategyRun(tiny_config, "reset", tiny)
    run.run_epoch()
    state = run.state_dict()
    with pytest.raises(UserError, match="different configuration .*lr"):
        StrategyRun(tiny_config.replace(lr=0.5), "reset", tiny).load_state_dict(state)
    with pytest.raises(UserError, match="not a 'expanded' run state"):
        StrategyRun(tiny_config, "expanded", tiny).load_state_dict(state)


def test_corrupt_or_missing_checkpoint_is_a_user_error(tiny, tiny_config, tmp_path):
    run = StrategyRun(tiny_config, "expanded", tiny)
    save_state(tmp_path / "ok.pt", run.state_dict())
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt checkpoint"):
        load_state(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="corrupt checkpoint"):
        load_state(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="no checkpoint"):
        load_state(tmp_path / "absent.pt")


def test_state_holds_no_global_rng_dependence(tiny, tiny_config):
    """Draws from the global RNG between epochs must not change the numbers."""
    a = StrategyRun(tiny_config, "expanded", tiny)
    b = StrategyRun(tiny_config, "expanded", tiny)
    ra, rb = [], []
    for _ in range(a.total_epochs):
        ra.append(a.run_epoch())
        torch.rand(1000)
        rb.append(b.run_epoch())
    assert _numbers(ra) == _numbers(rb)


def test_train_images_trains_on_the_first_n_images_only(mnist5k):
    """--train-images N: the first N training images (the dataset's fixed order, whatever the
    seed), the whole test split; more than the dataset holds is one line."""
    from plasticity.loop import first_images, prepare

    cfg = RunConfig(model="mlp-small", restarts=1, epochs=1, batch_size=16, train_images=1200,
                    objective="random_labels", device="cpu", strategies=["continuous"])  # fmt: skip
    data = prepare(cfg)
    assert len(data.train) == 1200 and len(data.test) == len(mnist5k.test)
    assert torch.equal(data.train.x, mnist5k.train.x[:1200])
    run = StrategyRun(cfg, "continuous", data)
    assert run.steps_per_epoch == 75
    rec = run.run_epoch()
    assert rec.step == 75
    assert first_images(mnist5k, 0) is mnist5k
    with pytest.raises(UserError, match="--train-images 5000 is more than mnist-5k's 4000"):
        first_images(mnist5k, 5000)
    with pytest.raises(UserError, match="train-images must be an integer >= 0"):
        RunConfig(train_images=-1)
