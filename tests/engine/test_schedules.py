import pytest

from geoharmony.config import load_config
from geoharmony.engine.schedules import learning_rate, two_stage_cosine, warmup_cosine


def test_warmup_cosine_endpoints() -> None:
    assert warmup_cosine(0, 100, 0.5, 10, 1e-6) == 0.0
    assert warmup_cosine(5, 100, 0.5, 10, 1e-6) == pytest.approx(0.25)
    assert warmup_cosine(10, 100, 0.5, 10, 1e-6) == pytest.approx(0.5)
    assert warmup_cosine(55, 100, 0.5, 10, 1e-6) == pytest.approx((0.5 + 1e-6) / 2)
    assert warmup_cosine(100, 100, 0.5, 10, 1e-6) == pytest.approx(1e-6)


def test_two_stage_cosine_restarts_at_stage_lr() -> None:
    assert two_stage_cosine(0, 1000, 0.5, 500, 0.3, 1e-6) == pytest.approx(0.5)
    assert two_stage_cosine(250, 1000, 0.5, 500, 0.3, 1e-6) == pytest.approx(0.4)
    assert two_stage_cosine(499.999, 1000, 0.5, 500, 0.3, 1e-6) == pytest.approx(0.3, abs=1e-6)
    assert two_stage_cosine(500, 1000, 0.5, 500, 0.3, 1e-6) == pytest.approx(0.3)
    assert two_stage_cosine(750, 1000, 0.5, 500, 0.3, 1e-6) == pytest.approx((0.3 + 1e-6) / 2)
    assert two_stage_cosine(1000, 1000, 0.5, 500, 0.3, 1e-6) == pytest.approx(1e-6)


def test_baseline_and_gh_share_the_two_stage_schedule() -> None:
    over = ["optim.schedule=two_stage_cosine", "optim.epochs=100", "gh.warmup_epochs=50"]
    base = load_config(None, over)
    gh = load_config(None, [*over, "gh.enabled=true"])
    for epoch in (0.0, 25.0, 49.5, 50.0, 80.0):
        assert learning_rate(base, epoch) == learning_rate(gh, epoch)
    assert learning_rate(base, 25.0) == pytest.approx(0.4)  # the stage split is gh.warmup_epochs
