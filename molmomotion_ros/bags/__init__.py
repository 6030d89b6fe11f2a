"""rosbag2 bags with MCAP storage, written and read without ROS (no rclpy): the bag writer (schemas, channels,
splits, metadata.yaml), full message definitions from the installed ``.msg`` files, rosbag2's QoS records, the queue
that feeds the writer from subscription callbacks, the bag reader (indexed files, and truncated ones up to their last
complete chunk). ``molmomotion record`` (nodes/recorder.py) is the ROS front end."""

from .definitions import DefinitionSource, MessageDefinition
from .errors import BagError, BagFolderError, BagReadError, BagWriteError, DefinitionNotFoundError
from .qos import QosProfile, SubscriptionQos, playback_qos, subscription_qos
from .reader import BagFile, BagMessage, BagReader, BagTopic
from .recording import QueuedWriter
from .writer import BagSummary, BagWriter, TopicMetadata, prepare_bag_folder

__all__ = ["BagError", "BagFile", "BagFolderError", "BagMessage", "BagReadError", "BagReader", "BagSummary",
           "BagTopic", "BagWriteError", "BagWriter", "DefinitionNotFoundError", "DefinitionSource",
           "MessageDefinition", "QosProfile", "QueuedWriter", "SubscriptionQos", "TopicMetadata", "playback_qos",
           "prepare_bag_folder", "subscription_qos"]
