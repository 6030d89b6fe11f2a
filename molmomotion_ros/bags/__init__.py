"""rosbag2 bags with MCAP storage, written without ROS (no rclpy): the bag writer (schemas, channels, splits,
metadata.yaml), full message definitions from the installed ``.msg`` files, rosbag2's QoS records, and the
queue that feeds the writer from subscription callbacks. ``molmomotion record`` (nodes/recorder.py) is the
ROS front end."""

from .definitions import DefinitionSource, MessageDefinition
from .errors import BagError, BagFolderError, BagWriteError, DefinitionNotFoundError
from .qos import QosProfile, SubscriptionQos, subscription_qos
from .recording import QueuedWriter
from .writer import BagSummary, BagWriter, TopicMetadata, prepare_bag_folder

__all__ = ["BagError", "BagFolderError", "BagSummary", "BagWriteError", "BagWriter", "DefinitionNotFoundError",
           "DefinitionSource", "MessageDefinition", "QosProfile", "QueuedWriter", "SubscriptionQos", "TopicMetadata",
           "prepare_bag_folder", "subscription_qos"]
