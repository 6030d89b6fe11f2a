"""Motion forecasting: MolmoMotion-style 3D point-trajectory forecasts behind one interface (no rclpy)."""

from .grounding import GroundingError, QueryPoints, select_query_points
from .interface import BACKENDS, Forecaster, make_forecaster, validate_request
from .types import BackendUnavailableError, Forecast, ForecastInputError, ForecastRequest

__all__ = [
    "BACKENDS", "BackendUnavailableError", "Forecast", "ForecastInputError", "ForecastRequest", "Forecaster",
    "GroundingError", "QueryPoints", "make_forecaster", "select_query_points", "validate_request",
]
