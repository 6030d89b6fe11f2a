"""ROS 2 nodes: thin rclpy adapters over the core library. The only package that imports rclpy."""
