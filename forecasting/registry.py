"""MODELS: every forecaster by name, each constructor taking no arguments.

The models built on LightGBM and statsmodels are imported by their constructors, not here: the
two libraries take seconds to import, and every command (`--help` included) and every module that
only needs the types imports `forecasting`. A broken install of either fails the constructor of
the models that use it, naming the library, and no other.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from forecasting import point_paths
from forecasting.clock_quantiles import ClockQuantiles
from forecasting.model import Forecaster
from forecasting.point_models import PointModel, PointPaths
from forecasting.recent_distribution import RecentQuantiles
from forecasting.selection import Candidate, ChooseByObjective, SelectBest
from forecasting.series import LoadSeries

if TYPE_CHECKING:
    from forecasting.gradient_boosting import GradientBoosting
    from forecasting.seasonal_shape import SeasonalShapeModel

DAY_SECONDS = 86400.0
# Half-life of 2 minutes: at 1-minute steps that damps single-minute noise but follows a ramp;
# at 10-minute steps it is 0.2 steps, i.e. almost the last value (a 10-minute mean is smooth already).
HALFLIFE_SECONDS = 120.0


def _steps(period_seconds: float, step_seconds: float) -> int:
    return max(1, round(period_seconds / step_seconds))


def last_value() -> PointModel:
    return PointModel("last_value", lambda _visible: point_paths.last_value)


def ewma() -> PointModel:
    def paths_for(visible: LoadSeries) -> PointPaths:
        return partial(point_paths.ewma, halflife_steps=HALFLIFE_SECONDS / visible.step_seconds)

    return PointModel("ewma", paths_for)


def _seasonal_naive(name: str, period_seconds: float) -> PointModel:
    def paths_for(visible: LoadSeries) -> PointPaths:
        return partial(point_paths.seasonal_naive, period_steps=_steps(period_seconds, visible.step_seconds))

    return PointModel(name, paths_for, period_seconds)


def seasonal_naive_daily() -> PointModel:
    return _seasonal_naive("seasonal_naive_daily", DAY_SECONDS)


def seasonal_naive_weekly() -> PointModel:
    return _seasonal_naive("seasonal_naive_weekly", 7 * DAY_SECONDS)


def seasonal_change() -> PointModel:
    def paths_for(visible: LoadSeries) -> PointPaths:
        period = _steps(DAY_SECONDS, visible.step_seconds)
        halflife = HALFLIFE_SECONDS / visible.step_seconds
        return partial(point_paths.seasonal_change, period_steps=period, halflife_steps=halflife, periods=3)

    return PointModel("seasonal_change", paths_for, DAY_SECONDS)


def holt_winters() -> SeasonalShapeModel:
    """Not a candidate of `auto`: in bench/backtest_table.py its pinball loss at 5 and 10 minutes
    is within 2% of EWMA's on the NASA traces, worse than last value's on ServeGen m-large and
    m-mid (9.47 vs 8.90, 93.2 vs 89.9 rps) and 0.5% better on m-small (48.75 vs 48.98), while
    LightGBM beats it on every series but NASA August at 10 minutes: it would add fitting time
    and a chance of being picked on noise."""
    from forecasting.seasonal_shape import SeasonalShapeModel, holt_winters_seasonal

    return SeasonalShapeModel("holt_winters", holt_winters_seasonal)


def mstl() -> SeasonalShapeModel:
    """Not a candidate of `auto`, for the reason given for `holt_winters`: within 5% of EWMA on
    NASA, worse than last value on all three ServeGen series (9.91, 109, 73.3 vs 8.90, 89.9, 49.0 rps)."""
    from forecasting.seasonal_shape import SeasonalShapeModel, mstl_seasonal

    return SeasonalShapeModel("mstl", mstl_seasonal)


def candidates() -> list[Candidate]:
    """Last value first: the selector's fallback and tie-winner. LightGBM is in: it has the best
    pinball loss of all models at 5 and 10 minutes on 4 of the 5 backtest traces (NASA August at
    10 minutes: EWMA), and with it `auto` refits
    1,000 week-long series within the 60 s target (bench/forecast_fit.py)."""
    return [
        last_value(),
        ewma(),
        seasonal_naive_daily(),
        seasonal_naive_weekly(),
        seasonal_change(),
        lightgbm(),
    ]


def lightgbm() -> GradientBoosting:
    """Per series (no global model): 30 rounds, 1,200 rows, one thread, features shared by leads."""
    from forecasting.gradient_boosting import GradientBoosting

    return GradientBoosting()


def auto() -> SelectBest:
    return SelectBest(candidates())


def objective_choice() -> ChooseByObjective:
    """recent_quantiles first: the default, and what is kept without a goal or history to score."""
    return ChooseByObjective([RecentQuantiles(), ClockQuantiles()])


MODELS: dict[str, Callable[[], Forecaster]] = {
    "last_value": last_value,
    "ewma": ewma,
    "seasonal_naive_daily": seasonal_naive_daily,
    "seasonal_naive_weekly": seasonal_naive_weekly,
    "seasonal_change": seasonal_change,
    "holt_winters": holt_winters,
    "mstl": mstl,
    "lightgbm": lightgbm,
    "auto": auto,
    "recent_quantiles": RecentQuantiles,
    "clock_quantiles": ClockQuantiles,
    "objective_choice": objective_choice,
}

# What the sidecar and the replay forecast with unless told otherwise. Not `auto`: `auto` has the
# best pinball loss per step (bench/backtest_table.py), but replica counts need the spread of the
# load over the next minutes, and on the replay traces recent_quantiles sized them for fewer
# misses and fewer replica-hours than HPA where auto's paths did not (README, "Replay").
# objective_choice keeps recent_quantiles unless clock_quantiles needs clearly less capacity at
# the workload's objective (on the replay traces: Twitter's hourly bursts only); its fit costs
# about 35 ms on a week of 60 s history (bench/forecast_fit.py).
DEFAULT_MODEL = "objective_choice"
