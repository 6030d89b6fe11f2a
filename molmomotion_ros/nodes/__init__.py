"""ROS 2 nodes: thin rclpy adapters over the core library. The only package that imports rclpy.

One module per executable (forecaster_node, speech_node, sim_node, manipulation_node, policy_node,
episode_runner), each ``main()`` running its node through :func:`.runtime.run_node`; :mod:`.lifecycle` holds
the base of the managed (lifecycle) nodes, the ones that load a model or move the arm, and
:mod:`.lifecycle_manager` the client side that brings them to 'active' (``molmomotion launch``) or waits for
it (the episode runner); :mod:`.arm_interface` holds what the two nodes that move the arm share, :mod:`.params`
the parameter declaration from :mod:`molmomotion_ros.node_specs`.
"""
