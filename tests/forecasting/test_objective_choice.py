"""objective_choice: per workload, the sample-path model that meets the objective with the least
capacity on that workload's own recent history."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecasting import MODELS, LoadSeries
from forecasting.clock_quantiles import ClockQuantiles
from forecasting.model import ScalingGoal
from forecasting.recent_distribution import RecentQuantiles, nan_quantiles
from forecasting.selection import cheapest, shortfall_curve

DAY = 1440
GRID = (0.5, 0.8, 0.9, 0.95, 0.99)
GOAL = ScalingGoal(unserved_share=0.01, headroom=1 / 0.7, lead_seconds=150.0, quantiles=GRID)


def _choose(values: np.ndarray, goal: ScalingGoal | None = GOAL, cutoff: float | None = None) -> str:
    history = LoadSeries(0.0, 60.0, values, cutoff=cutoff)
    return MODELS["objective_choice"]().fit(history, goal).predict(history, 5, GRID).model


def _hourly_bursts(days: int, seed: int = 0) -> np.ndarray:
    """A noisy 50 rps with a 4x burst at minutes 31-36 of every hour, every day: what the last
    hour cannot foresee and the same clock time on past days does."""
    values = 50.0 + np.random.default_rng(seed).normal(0, 3, days * DAY)
    minute = np.arange(days * DAY) % 60
    values[(minute >= 31) & (minute < 37)] *= 4
    return values


def test_shortfall_curve_holds_headroom_times_the_larger_of_peak_and_reading() -> None:
    actual = np.array([[100.0, 120.0]])
    paths = np.array([[[70.0, 60.0], [84.0, 80.0]]])  # q 0.5 and 0.9 peak at 70 and 84
    curve = shortfall_curve(actual, paths, np.array([60.0]), headroom=1.25)
    np.testing.assert_allclose(curve, [[87.5, 45.0 / 220], [105.0, 15.0 / 220]])
    # A reading above the forecast is what the reactive ask holds, whatever the model says.
    curve = shortfall_curve(actual, paths, np.array([96.0]), headroom=1.25)
    np.testing.assert_allclose(curve[0], [120.0, 0.0])


def _curve(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points)


@pytest.mark.parametrize(
    ("curves", "objective", "expected"),
    [
        pytest.param(
            [_curve((100, 0.02), (120, 0.008)), _curve((100, 0.03), (110, 0.009))],
            0.01,
            1,
            id="both reach the objective: the cheaper at its own quantile",
        ),
        pytest.param(
            [_curve((100, 0.02), (110, 0.009)), _curve((100, 0.03), (110, 0.005))],
            0.01,
            0,
            id="equal capacity: the first (the default model) wins the tie",
        ),
        pytest.param(
            [_curve((100, 0.05), (115, 0.03)), _curve((90, 0.06), (100, 0.03), (130, 0.02))],
            0.001,
            1,
            id="out of reach for one: compared at the least share it reaches",
        ),
        pytest.param(
            [_curve((100, 0.05), (110, 0.01)), _curve((90, 0.06), (120, 0.04))],
            0.001,
            0,
            id="out of reach for both: compared at the larger of their least shares",
        ),
    ],
)
def test_cheapest(curves: list[np.ndarray], objective: float, expected: int) -> None:
    assert cheapest(curves, objective) == expected


@pytest.mark.parametrize(
    ("curves", "margin", "expected"),
    [
        pytest.param(
            [_curve((100, 0.02), (120, 0.008)), _curve((100, 0.03), (110, 0.009))],
            0.1,
            0,
            id="110 is 8 % under 120: the default keeps its place",
        ),
        pytest.param(
            [_curve((100, 0.02), (120, 0.008)), _curve((100, 0.009), (110, 0.005))],
            0.1,
            1,
            id="100 is 17 % under 120: the other displaces it",
        ),
        pytest.param(
            [_curve((100, 0.02), (120, 0.008)), _curve((108, 0.009))],
            0.1,
            1,
            id="exactly 10 % under: displaces it",
        ),
        pytest.param(
            [_curve((100, 0.02), (120, 0.008)), _curve((100, 0.03), (110, 0.009))],
            0.0,
            1,
            id="no margin: the cheaper, however slightly",
        ),
    ],
)
def test_another_model_must_be_clearly_cheaper_to_displace_the_default(
    curves: list[np.ndarray], margin: float, expected: int
) -> None:
    assert cheapest(curves, 0.01, margin) == expected


def test_bursts_at_a_clock_time_choose_clock_quantiles() -> None:
    assert _choose(_hourly_bursts(days=4)) == "objective_choice:clock_quantiles"


@pytest.mark.parametrize(
    ("values", "goal", "expected"),
    [
        pytest.param(_hourly_bursts(days=4), None, "recent_quantiles", id="no goal: the default model"),
        pytest.param(_hourly_bursts(days=4)[:90], GOAL, "recent_quantiles", id="too short to score"),
        pytest.param(_hourly_bursts(days=4)[:2], GOAL, "recent_quantiles", id="shorter than one lead"),
        pytest.param(np.full(4 * DAY, 40.0), GOAL, "recent_quantiles", id="a flat load: a tie, the default"),
        pytest.param(np.full(4 * DAY, np.nan), GOAL, "recent_quantiles", id="nothing known"),
    ],
)
def test_the_default_model_is_kept_without_evidence(
    values: np.ndarray, goal: ScalingGoal | None, expected: str
) -> None:
    assert _choose(values, goal) == f"objective_choice:{expected}"


def test_the_choice_reads_nothing_after_the_cutoff() -> None:
    """Bursts only after the cutoff: a choice that read them would pick clock_quantiles."""
    values = np.concatenate((np.full(4 * DAY, 50.0), _hourly_bursts(days=4)))
    assert _choose(values, cutoff=4 * DAY * 60.0) == "objective_choice:recent_quantiles"
    assert _choose(values) == "objective_choice:clock_quantiles"


@pytest.mark.parametrize("model", [RecentQuantiles(), ClockQuantiles()], ids=lambda m: m.name)
def test_paths_at_many_origins_are_what_predict_gives_at_each(
    model: RecentQuantiles | ClockQuantiles,
) -> None:
    values = _hourly_bursts(days=3, seed=1)
    values[np.random.default_rng(2).random(len(values)) < 0.05] = np.nan
    values[DAY : DAY + 90] = np.nan  # an hour with nothing known
    origins = np.array([1, 30, 61, DAY + 80, DAY + 200, 2 * DAY + 5, 3 * DAY])
    paths = model.paths_at(values, 60.0, origins, 4, GRID)
    assert model.paths_at(values, 60.0, origins[:0], 4, GRID).shape == (0, len(GRID), 4)
    for row, origin in enumerate(origins):
        forecast = model.predict(LoadSeries(0.0, 60.0, values[:origin]), 4, GRID)
        for column, q in enumerate(GRID):
            np.testing.assert_array_equal(paths[row, column], forecast.quantiles[q])


@pytest.mark.parametrize(
    "gaps",
    [
        pytest.param(lambda s: s.__setitem__((0, 1, 3), np.nan), id="one gap"),
        pytest.param(lambda s: s.__setitem__((2, 2), np.nan), id="a row with nothing known"),
        pytest.param(lambda s: s.__setitem__((1, 0, slice(1, None)), np.nan), id="one value known"),
        pytest.param(
            lambda s: s.__setitem__(np.random.default_rng(5).random(s.shape) < 0.4, np.nan),
            id="gaps everywhere, every count",
        ),
    ],
)
def test_nan_quantiles_are_numpys_numbers_to_the_last_bit(gaps) -> None:
    samples = np.random.default_rng(3).gamma(2.0, 50.0, size=(6, 4, 9))
    gaps(samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row
        expected = np.nanquantile(samples, GRID, axis=-1)
    np.testing.assert_array_equal(nan_quantiles(samples, GRID), expected)


@pytest.mark.parametrize(
    ("unserved_share", "headroom", "lead_seconds", "quantiles", "wrong"),
    [
        (0.0, 1.4, 150.0, GRID, "unserved_share"),
        (1.0, 1.4, 150.0, GRID, "unserved_share"),
        (0.001, 0.0, 150.0, GRID, "headroom"),
        (0.001, 1.4, -1.0, GRID, "lead_seconds"),
        (0.001, 1.4, 150.0, (), "quantiles"),
    ],
)
def test_a_goal_out_of_range_names_the_field(
    unserved_share: float, headroom: float, lead_seconds: float, quantiles: tuple[float, ...], wrong: str
) -> None:
    with pytest.raises(ValueError, match=wrong):
        ScalingGoal(unserved_share, headroom, lead_seconds, quantiles)
