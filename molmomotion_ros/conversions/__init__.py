"""ROS messages ⇄ numpy: the one place where messages become arrays and back.

Imports message packages (sensor_msgs, geometry_msgs, ...), so import it only where ROS is
installed; nodes call these functions instead of building arrays by hand. Every bad input raises
:class:`ConversionError` (a ValueError) naming the field and value. The forecast topic contract is
documented in :mod:`molmomotion_ros.conversions.forecasts`.
"""

from .diagnostics import diagnostic_array
from .errors import ConversionError
from .forecasts import (
    forecast_to_hypotheses,
    forecast_to_markers,
    forecast_to_trajectory,
    hypotheses_to_trajectory,
    msg_to_forecast_hypotheses,
    msg_to_forecast_tracks,
    msg_to_scores,
    scores_to_msg,
    tracks_to_trajectory,
)
from .ground_truth import ground_truth_to_msg, msg_to_ground_truth
from .images import (
    FrameError,
    camera_info_msg,
    camera_info_to_camera,
    camera_info_to_rectified,
    depth_to_msg,
    frame_inputs,
    msg_to_depth_m,
    msg_to_rgb,
    rgb_to_msg,
)
from .poses import (
    matrix_to_pose,
    matrix_to_transform,
    matrix_to_xyz_quat,
    pose_stamped,
    pose_to_matrix,
    transform_to_matrix,
    xyz_quat_to_matrix,
)

__all__ = [
    "ConversionError", "FrameError", "camera_info_msg", "camera_info_to_camera", "camera_info_to_rectified",
    "depth_to_msg", "diagnostic_array",
    "forecast_to_hypotheses", "forecast_to_markers", "frame_inputs", "forecast_to_trajectory", "ground_truth_to_msg",
    "hypotheses_to_trajectory", "msg_to_ground_truth",
    "matrix_to_pose", "matrix_to_transform", "matrix_to_xyz_quat", "msg_to_depth_m", "msg_to_forecast_hypotheses",
    "msg_to_forecast_tracks", "msg_to_rgb", "msg_to_scores", "pose_stamped", "pose_to_matrix", "rgb_to_msg",
    "scores_to_msg", "tracks_to_trajectory", "transform_to_matrix", "xyz_quat_to_matrix",
]
