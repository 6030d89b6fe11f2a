"""The forecaster alone, for a real RGB-D camera.

    ros2 launch molmomotion_ros forecaster.launch.py camera:=/camera
    (pip route: molmomotion launch forecaster)

The camera topics are remapped to <camera>/color/image_raw, <camera>/depth/image_raw (aligned to
colour), <camera>/color/camera_info; set forecaster_node's extrinsics in config/forecaster_node.yaml
(T_world_camera) or extrinsics_source: tf2.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from molmomotion_ros.launch_support import camera_remappings, launch_description


def generate_launch_description():
    graph = launch_description("forecaster", {"forecaster_node": camera_remappings()})
    return LaunchDescription([DeclareLaunchArgument("camera", default_value="camera",
                                                    description="namespace of the RGB-D camera's topics"),
                              *graph.entities])
