"""estimate_cold_start: a high quantile of plausible create->Ready durations, or the default."""

from __future__ import annotations

import math

import pytest

from autoscaler.cold_start import MAX_PLAUSIBLE_SECONDS, estimate_cold_start, start_durations


def _pairs(durations: list[float], created_at: float = 1_000.0) -> list[tuple[float, float]]:
    return [(created_at + 10 * i, created_at + 10 * i + d) for i, d in enumerate(durations)]


@pytest.mark.parametrize(
    ("durations", "quantile", "expected"),
    [
        # index 0.9 * 4 = 3.6: 70 + 0.6 * (180 - 70) = 136
        pytest.param([60, 62, 65, 70, 180], 0.9, 136.0, id="p90 interpolates between 70 and 180"),
        pytest.param([180, 60, 70, 65, 62], 0.9, 136.0, id="order of pairs does not matter"),
        # index 0.5 * 4 = 2: the middle sample
        pytest.param([60, 62, 65, 70, 180], 0.5, 65.0, id="median is the middle start"),
        pytest.param([30, 30, 30], 0.9, 30.0, id="three equal starts give that start"),
    ],
)
def test_quantile_of_starts(durations: list[float], quantile: float, expected: float) -> None:
    assert estimate_cold_start(_pairs(durations), quantile=quantile) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param([], 120.0, id="no pairs give the default"),
        pytest.param(_pairs([60, 70]), 120.0, id="two samples are too few for the default minimum of three"),
        pytest.param(
            [*_pairs([60, 70]), (500.0, 400.0)], 120.0, id="a negative duration is dropped, leaving too few"
        ),
        pytest.param(
            [*_pairs([60, 70]), (0.0, math.nan)], 120.0, id="a NaN duration is dropped, leaving too few"
        ),
        pytest.param(
            [*_pairs([60, 70]), (0.0, MAX_PLAUSIBLE_SECONDS + 1)],
            120.0,
            id="a pod stuck over an hour is dropped, leaving too few",
        ),
        pytest.param(
            [*_pairs([60, 70, 80]), (0.0, 5_000.0), (10.0, -5.0), (0.0, math.inf)],
            78.0,
            id="implausible pairs do not move the quantile of the plausible ones",
        ),
    ],
)
def test_too_few_or_implausible_samples(pairs: list[tuple[float, float]], expected: float) -> None:
    assert estimate_cold_start(pairs, default_seconds=120.0) == pytest.approx(expected)


def test_default_is_none_when_not_given() -> None:
    assert estimate_cold_start(_pairs([60])) is None


def test_min_samples_is_honoured() -> None:
    assert estimate_cold_start(_pairs([60]), default_seconds=99.0, min_samples=1) == pytest.approx(60.0)
    assert estimate_cold_start(_pairs([60, 70, 80]), default_seconds=99.0, min_samples=4) == 99.0


def test_hour_long_start_is_still_plausible() -> None:
    assert start_durations([(0.0, MAX_PLAUSIBLE_SECONDS), (0.0, 0.0)]) == [MAX_PLAUSIBLE_SECONDS, 0.0]


@pytest.mark.parametrize(
    "quantile",
    [
        pytest.param(0.0, id="quantile 0 is rejected"),
        pytest.param(1.0, id="quantile 1 is rejected"),
        pytest.param(1.5, id="quantile above 1 is rejected"),
        pytest.param(math.nan, id="NaN quantile is rejected"),
    ],
)
def test_bad_quantile_raises(quantile: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        estimate_cold_start(_pairs([60, 70, 80]), quantile=quantile)
