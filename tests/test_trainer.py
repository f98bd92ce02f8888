import pytest

from genforge.trainer import TrainConfig, lr_multiplier


def test_warmup_then_cosine_to_floor():
    cfg = TrainConfig(max_iters=100, warmup_iters=10, lr=1e-3, min_lr=1e-4)
    assert lr_multiplier(0, cfg) == pytest.approx(1 / 11)
    assert lr_multiplier(9, cfg) == pytest.approx(10 / 11)
    assert lr_multiplier(10, cfg) == pytest.approx(1.0)
    assert lr_multiplier(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(100, cfg) == pytest.approx(0.1)
    mults = [lr_multiplier(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(mults, mults[1:]))


def test_linear_constant_and_time_schedules():
    lin = TrainConfig(max_iters=100, warmup_iters=0, lr=1.0, min_lr=0.0, schedule="linear")
    assert lr_multiplier(50, lin) == pytest.approx(0.5)
    const = TrainConfig(max_iters=100, warmup_iters=0, schedule="constant")
    assert lr_multiplier(99, const) == 1.0
    timed = TrainConfig(max_iters=10**6, warmup_iters=0, lr=1.0, min_lr=0.0, max_seconds=10, time_schedule=True)
    assert lr_multiplier(5, timed, elapsed=5.0) == pytest.approx(0.5)
    assert lr_multiplier(5, timed, elapsed=20.0) == pytest.approx(0.0)


@pytest.mark.parametrize("field,value", [("max_iters", 0), ("batch_size", -1), ("lr", -1.0), ("patience", -2)])
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"train.{field}"):
        TrainConfig(**{field: value}).validate()


def test_time_schedule_needs_budget():
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(time_schedule=True).validate()
