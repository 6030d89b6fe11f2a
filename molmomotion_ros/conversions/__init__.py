"""ROS messages ⇄ numpy: the one place where messages become arrays and back.

Imports message packages (sensor_msgs, geometry_msgs, ...), so import it only where ROS is
installed; nodes call these functions instead of building arrays by hand. Every bad input raises
:class:`ConversionError` (a ValueError) naming the field and value.
"""

from .errors import ConversionError
from .images import camera_info_msg, camera_info_to_camera, depth_to_msg, msg_to_depth_m, msg_to_rgb, rgb_to_msg

__all__ = [
    "ConversionError", "camera_info_msg", "camera_info_to_camera", "depth_to_msg", "msg_to_depth_m", "msg_to_rgb",
    "rgb_to_msg",
]
