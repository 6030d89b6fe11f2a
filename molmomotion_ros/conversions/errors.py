"""The one error type of the conversions: a message that cannot become a (meaningful) array."""


class ConversionError(ValueError):
    """A ROS message (or array) that cannot be converted; the message names the field and value."""
