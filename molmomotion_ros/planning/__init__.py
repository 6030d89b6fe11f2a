"""Motion planning core (no rclpy): limits, rigid fits of forecasts, time parameterisation."""
