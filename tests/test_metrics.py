"""The objectives are defined once (plasticity.metrics) and every consumer gets the same numbers,
also for an interrupted run."""

import dataclasses
import random

import pandas as pd
import pytest

from plasticity.loop import Record
from plasticity.metrics import OBJECTIVES, objectives, per_run, per_task, running_objectives

# (task, epoch, test_acc, train_acc): task 2 was interrupted after its first epoch; task 1's
# test accuracy falls at its last epoch (so "final" is the last value, not the best).
ROWS = [
    (0, 0, 0.5, 0.4),
    (0, 1, 0.7, 0.6),
    (1, 0, 0.6, 0.1),
    (1, 1, 0.2, 0.5),
    (2, 0, 0.3, 0.2),
]


def _records(rows=ROWS, strategy="reset"):
    return [
        {"strategy": strategy, "seed": 0, "task": t, "epoch": e, "test_acc": a, "train_acc": b}
        for t, e, a, b in rows
    ]


def test_per_task_by_hand():
    tasks = per_task(pd.DataFrame(_records()), ["strategy"]).set_index("task")
    assert tasks.loc[1, "auc_test_acc"] == pytest.approx(0.4)  # (0.6 + 0.2) / 2
    assert tasks.loc[1, "final_test_acc"] == pytest.approx(0.2)
    assert tasks.loc[2, "auc_train_acc"] == pytest.approx(0.2)  # the one epoch it recorded
    assert tasks.epochs_seen.tolist() == [2, 2, 1]


def test_per_run_averages_restarts_only_and_counts_a_partial_task():
    out = objectives(_records())
    assert out["auc_test_acc"] == pytest.approx((0.4 + 0.3) / 2)
    assert out["final_test_acc"] == pytest.approx((0.2 + 0.3) / 2)
    assert out["auc_train_acc"] == pytest.approx((0.3 + 0.2) / 2)
    assert out["final_train_acc"] == pytest.approx((0.5 + 0.2) / 2)
    # before the first restart: task 0's numbers
    assert objectives(_records(ROWS[:2]))["auc_test_acc"] == pytest.approx(0.6)
    assert objectives([]) == {}


def test_epoch_order_does_not_matter():
    shuffled = _records([ROWS[i] for i in (4, 3, 0, 2, 1)])
    assert objectives(shuffled) == pytest.approx(objectives(_records()))


@pytest.mark.parametrize("seed", range(40))
def test_running_objectives_are_the_objectives(seed):
    """The trainable's fast running_objectives() against objectives() (per_run) on random
    runs: any number of tasks, interrupted ones, epochs out of order and repeated, missing
    accuracies; equal up to float rounding (pandas sums in its own order)."""
    rng = random.Random(seed)
    rows = []
    for task in range(rng.randint(1, 4)):
        for epoch in range(rng.randint(1, 5)):
            for _ in range(rng.choice([1, 1, 1, 2])):  # a replayed epoch, as after a retry
                acc = [round(rng.random(), 3) for _ in range(2)]
                if rng.random() < 0.15:
                    acc[rng.randrange(2)] = float("nan")
                rows.append((task, epoch, *acc))
    rng.shuffle(rows)
    records = _records(rows)
    expected = objectives(records)
    got = running_objectives(records)
    assert got.keys() == expected.keys()
    for k in OBJECTIVES:
        assert got[k] == pytest.approx(expected[k], rel=1e-12, nan_ok=True), k


def test_running_objectives_skip_a_missing_accuracy_as_pandas_does():
    rows = [(0, 0, 0.5, 0.5), (1, 0, 0.6, 0.2), (1, 1, float("nan"), 0.4), (2, 0, None, None)]
    records = _records(rows)
    out = running_objectives(records)
    assert out["final_test_acc"] == pytest.approx(0.6)  # task 1's latest value present
    assert out["auc_train_acc"] == pytest.approx(0.3)  # task 2 has none: task 1 alone
    assert out == pytest.approx(objectives(records))
    assert running_objectives([]) == {}


def test_the_last_report_carries_objectives_to_the_bit_and_earlier_ones_the_running_ones():
    """What Optuna records (the last report) equals the analysis' per_run exactly: [0.63,
    0.70, 0.29] averages to 0.54 in pandas and 0.5399999999999999 summed exactly."""
    from study.trainable import epoch_metrics

    rows = [(0, 0, 0.1, 0.1), (1, 0, 0.63, 0.63), (1, 1, 0.70, 0.70), (1, 2, 0.29, 0.29)]
    records = _records(rows)
    assert running_objectives(records) != objectives(records)  # the case is a real one
    last = epoch_metrics(records, epochs=3, total=4, context={})
    assert {k: last[k] for k in OBJECTIVES} == objectives(records)
    earlier = epoch_metrics(records, epochs=3, total=7, context={})
    assert {k: earlier[k] for k in OBJECTIVES} == running_objectives(records)


def test_every_consumer_gives_the_same_numbers_for_an_interrupted_run():
    from analysis.stats import per_restart, per_seed_objectives
    from plasticity.cli import summary_table

    frame = pd.DataFrame(_records() + _records(ROWS[:4], strategy="continuous"))
    for col in ("dataset", "model", "objective", "trial", "phase", "source"):
        frame[col] = frame["strategy"] if col == "trial" else "x"
    expected = {s: objectives(g.to_dict("records")) for s, g in frame.groupby("strategy")}
    analysed = per_seed_objectives(frame).set_index("strategy")
    by_run = per_run(frame, ["strategy"]).set_index("strategy")
    table = summary_table(frame)
    for s, values in expected.items():
        for m in OBJECTIVES:
            assert analysed.loc[s, m] == pytest.approx(values[m])
            assert by_run.loc[s, m] == pytest.approx(values[m])
            assert f"{round(values[m], 4):g}"[:5] in table
    assert len(per_restart(frame)) == 3 + 2


def test_record_and_report_keys_never_collide_with_ray_result_keys():
    import ray.tune.result as ray_result

    from study.trials import EXTRA_KEYS

    reserved = {v for k, v in vars(ray_result).items() if k.isupper() and isinstance(v, str)}
    reserved |= {"date", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name"}
    ours = {f.name for f in dataclasses.fields(Record)} | set(OBJECTIVES) | set(EXTRA_KEYS)
    assert "done" in reserved and not ours & reserved
