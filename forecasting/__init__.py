"""Load forecasting: request-rate history in, quantile forecasts out. Pure: no I/O, no clock."""

from forecasting.backtest import BacktestResult, LeadScore, backtest
from forecasting.forecast import Forecast
from forecasting.model import FittedForecaster, Forecaster
from forecasting.registry import DEFAULT_MODEL, MODELS
from forecasting.scores import pinball_loss, trailing_relative_error
from forecasting.selection import SelectBest
from forecasting.series import LoadSeries

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "BacktestResult",
    "FittedForecaster",
    "Forecast",
    "Forecaster",
    "LeadScore",
    "LoadSeries",
    "SelectBest",
    "backtest",
    "pinball_loss",
    "trailing_relative_error",
]
