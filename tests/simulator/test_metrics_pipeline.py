"""The simulated metrics pipeline: windowed rates with delay, None where nothing was measured."""

import numpy as np
import pytest

from simulator.metrics_pipeline import TraceMetrics

START = 1000.0
# 60 s at 1 rps, 60 s unknown (gap), 60 s at 4 rps.
DEMAND = np.concatenate((np.full(60, 1.0), np.full(60, np.nan), np.full(60, 4.0)))


@pytest.mark.parametrize(
    ("now", "window", "delay", "expected"),
    [
        pytest.param(START + 60, 60, 0, 1.0, id="first minute"),
        pytest.param(START + 75, 60, 15, 1.0, id="delay shifts the window back"),
        pytest.param(START + 90, 60, 0, 1.0, id="half in gap uses the known half only"),
        pytest.param(START + 120, 60, 0, None, id="window entirely inside the gap is missing"),
        pytest.param(START + 10, 60, 15, None, id="window before the trace starts is missing"),
        pytest.param(START + 180, 60, 0, 4.0, id="after the gap"),
        pytest.param(START + 150, 60, 0, 4.0, id="half gap half 4 rps"),
        pytest.param(START + 30.5, 1, 0, 1.0, id="fractional seconds interpolate"),
        pytest.param(START + 400, 60, 0, None, id="after the trace ends"),
    ],
)
def test_rate(now, window, delay, expected):
    rate = TraceMetrics(DEMAND, START).rate(now, window, delay)
    if expected is None:
        assert rate is None
    else:
        assert rate == pytest.approx(expected)


def test_history_only_whole_steps_before_now_minus_delay():
    metrics = TraceMetrics(DEMAND, START)
    history = metrics.history(START + 179, 60, 15)  # visible until 164: two whole steps
    assert history.start == START and history.step_seconds == 60
    np.testing.assert_array_equal(history.values, [1.0, np.nan])
    full = metrics.history(START + 195, 60, 15)
    np.testing.assert_array_equal(full.values, [1.0, np.nan, 4.0])


def test_history_is_empty_before_a_step_completes():
    assert len(TraceMetrics(DEMAND, START).history(START + 30, 60, 15).values) == 0


def test_history_span_keeps_the_grid_and_the_last_steps():
    metrics = TraceMetrics(DEMAND, START)
    recent = metrics.history(START + 195, 60, 15, span_seconds=120)
    assert recent.start == START + 60
    np.testing.assert_array_equal(recent.values, [np.nan, 4.0])
