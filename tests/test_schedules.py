import math

import pytest

from sequela.engine.schedules import constant, cosine, sft_from_params, super_fine_tuning


def test_sft_peaks_and_troughs_at_the_right_steps():
    lr = super_fine_tuning(
        base_lr=3e-4, max_lr1=0.1, max_lr2=1e-3, total_steps=100, cycle_steps=10, phase1_fraction=0.4
    )
    for cycle_start in range(0, 100, 10):
        assert lr(cycle_start) == pytest.approx(3e-4)  # every cycle starts at base_lr
        peak = 0.1 if cycle_start < 40 else 1e-3  # phase 1 is the first 40 steps
        assert lr(cycle_start + 5) == pytest.approx(peak)
    values = [lr(s) for s in range(100)]
    assert max(values) == pytest.approx(0.1) and max(values[40:]) == pytest.approx(1e-3)


def test_sft_is_linear_within_a_half_cycle():
    lr = super_fine_tuning(0.0, 1.0, 0.5, total_steps=40, cycle_steps=8, phase1_fraction=0.5)
    assert [lr(s) for s in range(8)] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25])
    assert [lr(s) for s in range(24, 32)] == pytest.approx([0, 0.125, 0.25, 0.375, 0.5, 0.375, 0.25, 0.125])


@pytest.mark.parametrize("steps_per_epoch", [7, 20, 135])
def test_sft_cycle_is_in_steps_whatever_the_epoch_length(steps_per_epoch):
    p = {"base_lr": 3e-4, "max_lr1": 0.1, "max_lr2": 1e-3, "phase1_fraction": 0.4, "cycle_steps": 20}
    lr = sft_from_params(p, epochs=10, steps_per_epoch=steps_per_epoch)
    total = 10 * steps_per_epoch
    phase1 = round(0.4 * total)
    peaks = [s for s in range(total) if s % 20 == 10]
    assert all(lr(s) == pytest.approx(0.1 if s < phase1 else 1e-3) for s in peaks)
    assert all(lr(s) == pytest.approx(3e-4) for s in range(0, total, 20))


def test_constant_and_cosine():
    assert constant(0.01)(12345) == 0.01
    lr = cosine(0.1, 100)
    assert lr(0) == pytest.approx(0.1) and lr(50) == pytest.approx(0.05) and lr(100) == pytest.approx(0.0)
    assert math.isclose(lr(25), 0.05 * (1 + math.cos(math.pi / 4)))
