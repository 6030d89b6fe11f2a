"""rosbag2 bags with MCAP storage, written and read without ROS (no rclpy): the bag writer (schemas, channels,
splits, metadata.yaml), full message definitions from the installed ``.msg`` files, rosbag2's QoS records, the queue
that feeds the writer from subscription callbacks, the bag reader (indexed files, and truncated ones up to their last
complete chunk), playback planning and timing, and recovery of a truncated bag. ``molmomotion record``
(nodes/recorder.py) and ``molmomotion play`` (nodes/player.py) are the ROS front ends."""

from .definitions import DefinitionSource, MessageDefinition
from .errors import BagError, BagFolderError, BagReadError, BagWriteError, DefinitionNotFoundError
from .playback import Plan, PlannedTopic, Playback, PlaybackOptions, PlaybackStats, plan_topics
from .qos import QosProfile, SubscriptionQos, playback_qos, subscription_qos
from .reader import BagFile, BagMessage, BagReader, BagTopic
from .recording import QueuedWriter
from .recovery import RecoveryReport, default_output, recover
from .writer import BagSummary, BagWriter, TopicMetadata, prepare_bag_folder

__all__ = ["BagError", "BagFile", "BagFolderError", "BagMessage", "BagReadError", "BagReader", "BagSummary",
           "BagTopic", "BagWriteError", "BagWriter", "DefinitionNotFoundError", "DefinitionSource",
           "MessageDefinition", "Plan", "PlannedTopic", "Playback", "PlaybackOptions", "PlaybackStats", "QosProfile",
           "QueuedWriter", "RecoveryReport", "SubscriptionQos", "TopicMetadata", "default_output", "plan_topics",
           "playback_qos", "prepare_bag_folder", "recover", "subscription_qos"]
