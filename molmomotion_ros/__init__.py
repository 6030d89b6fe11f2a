"""molmomotion_ros: forecast-driven manipulation for ROS 2.

The core library (everything outside ``molmomotion_ros.nodes``) imports without rclpy.
"""

__version__ = "0.1.0"
