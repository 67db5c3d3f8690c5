"""Forecast.peak and LoadSeries.visible: read on every tick of every workload, so they take
shortcuts; these pin what the shortcuts must still answer."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.forecast import Forecast
from forecasting.series import LoadSeries

NAN = float("nan")


@pytest.mark.parametrize(
    ("path", "since", "until", "expected"),
    [
        pytest.param([1.0, 5.0, 3.0, 9.0], 0.0, 150.0, 5.0, id="the steps overlapping the window"),
        pytest.param([1.0, NAN, 3.0, 9.0], 0.0, 150.0, 3.0, id="a gap is skipped, not the peak"),
        pytest.param([NAN, NAN, 3.0, 9.0], 0.0, 119.0, None, id="only gaps: no peak, not 0"),
        pytest.param([1.0, 5.0, 3.0, 9.0], 300.0, 400.0, None, id="beyond the horizon"),
        pytest.param([1.0, 5.0, 3.0, 9.0], -100.0, 30.0, 1.0, id="a window starting before the forecast"),
    ],
)
def test_peak(path: list[float], since: float, until: float, expected: float | None) -> None:
    forecast = Forecast(start=0.0, step_seconds=60.0, quantiles={0.5: np.array(path)})
    assert forecast.peak(since, until, 0.5) == expected


@pytest.mark.parametrize("maturity", [-0.1, 1.5, NAN])
def test_a_maturity_outside_zero_to_one_is_refused(maturity: float) -> None:
    with pytest.raises(ValueError, match="maturity"):
        Forecast(start=0.0, step_seconds=60.0, quantiles={0.5: np.ones(3)}, maturity=maturity)


@pytest.mark.parametrize(
    ("cutoff", "expected"),
    [
        pytest.param(None, [1.0, 2.0, 3.0], id="no cutoff: everything"),
        pytest.param(1e12, [1.0, 2.0, 3.0], id="a cutoff past the end: everything"),
        pytest.param(150.0, [1.0, 2.0], id="a step ending after the cutoff is hidden"),
        pytest.param(-5.0, [], id="a cutoff before the start: nothing"),
    ],
)
def test_visible(cutoff: float | None, expected: list[float]) -> None:
    series = LoadSeries(0.0, 60.0, np.array([1.0, 2.0, 3.0]), cutoff)
    assert series.visible().values.tolist() == expected
