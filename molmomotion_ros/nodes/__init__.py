"""ROS 2 nodes: thin rclpy adapters over the core library. The only package that imports rclpy.

One module per executable (forecaster_node, speech_node, sim_node, manipulation_node, policy_node,
episode_runner), each ``main()`` running its node through :func:`.runtime.run_node`; :mod:`.arm_interface`
holds what the two nodes that move the arm share, :mod:`.params` the parameter declaration from
:mod:`molmomotion_ros.node_specs`.
"""
