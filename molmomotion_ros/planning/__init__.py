"""Motion planning core (no rclpy): joint limits, Panda kinematics (pinocchio), collision checking
(PyBullet scene or perceived point cloud), OMPL planning, TOPP-RA time parameterisation, rigid fits of
forecast tracks."""
