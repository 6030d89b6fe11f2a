"""Motion forecasting: MolmoMotion-style 3D point-trajectory forecasts behind one interface (no rclpy)."""

from .interface import BACKENDS, Forecaster, make_forecaster, validate_request
from .types import BackendUnavailableError, Forecast, ForecastInputError, ForecastRequest

__all__ = [
    "BACKENDS", "BackendUnavailableError", "Forecast", "ForecastInputError", "ForecastRequest", "Forecaster",
    "make_forecaster", "validate_request",
]
