import math

import pytest

from plasticity.schedules import Schedule


def test_paper_staircase_for_ten_epochs():
    s = Schedule("paper")
    assert [s(t) for t in range(10)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 1])
    assert s(4) == 1.0


@pytest.mark.parametrize("alpha0,ramp", [(0.0, 4), (0.3, 6), (0.1, 2.5)])
def test_linear_ends_and_midpoint(alpha0, ramp):
    s = Schedule("linear", alpha0, ramp)
    assert s(0) == alpha0
    assert s(ramp / 2) == pytest.approx((1 + alpha0) / 2)
    assert s(ramp) == 1.0 and s(ramp + 3) == 1.0


@pytest.mark.parametrize("alpha0,ramp", [(0.0, 4), (0.3, 6)])
def test_cosine_ends_midpoint_and_flat_start(alpha0, ramp):
    s = Schedule("cosine", alpha0, ramp)
    assert s(0) == pytest.approx(alpha0)
    assert s(ramp / 2) == pytest.approx((1 + alpha0) / 2)
    assert s(ramp) == 1.0
    # half-cosine: a quarter of the way, (1 - cos(pi/4)) / 2 of the distance
    assert s(ramp / 4) == pytest.approx(alpha0 + (1 - alpha0) * (1 - math.cos(math.pi / 4)) / 2)


def test_step_holds_alpha0_then_jumps_to_one():
    s = Schedule("step", 0.1, 3)
    assert [s(t) for t in range(6)] == [0.1, 0.1, 0.1, 1.0, 1.0, 1.0]
    assert s(2.99) == 0.1


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_monotone_and_bounded(kind):
    s = Schedule(kind, 0.2, 5)
    values = [s(t / 10) for t in range(80)]
    assert all(0.2 <= v <= 1 for v in values)
    assert values == sorted(values)
