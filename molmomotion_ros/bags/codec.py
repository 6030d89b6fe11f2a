"""CDR ⇄ message objects without rclpy, from the definitions a bag stores (or the installed ``.msg`` files).

Decoding uses mcap-ros2-support's dynamic decoder (attribute access like rclpy's messages: ``msg.header.stamp``);
encoding uses its dynamic encoder, which reads any object's attributes, so the message classes of the installed
packages (what :mod:`molmomotion_ros.conversions` builds) serialize here as they would through rclpy. No CDR is
written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcap_ros2._dynamic import generate_dynamic, serialize_dynamic  # the library's own codec, also behind its Writer

from .definitions import DefinitionSource, MessageDefinition
from .errors import BagReadError, DefinitionNotFoundError
from .reader import BagTopic


class MessageCodec:
    """Decoders per bag topic and encoders per type, built once each."""

    def __init__(self, definitions: DefinitionSource | None = None):
        self._definitions = definitions
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        self._encoders: dict[str, Callable[[Any], bytes]] = {}
        self._schemas: dict[str, MessageDefinition] = {}

    def definition(self, type_name: str) -> MessageDefinition:
        """The installed definition of ``type_name`` (raises DefinitionNotFoundError)."""
        if type_name not in self._schemas:
            if self._definitions is None:
                self._definitions = DefinitionSource()
            self._schemas[type_name] = self._definitions.get(type_name)
        return self._schemas[type_name]

    def decode(self, topic: BagTopic, data: bytes) -> Any:
        """One message of ``topic`` (its stored schema, else the installed definition of its type)."""
        decoder = self._decoders.get(topic.name)
        if decoder is None:
            schema = topic.schema
            if schema is None or schema.encoding != "ros2msg":
                try:
                    schema = self.definition(topic.type)
                except DefinitionNotFoundError as err:
                    raise BagReadError(f"{topic.name}: no schema in the bag and {err}") from None
            try:
                decoder = generate_dynamic(schema.type_name, schema.text)[schema.type_name]
            except Exception as err:  # a definition the parser rejects
                raise BagReadError(f"{topic.name}: cannot build a decoder for {schema.type_name}: {err}") from None
            self._decoders[topic.name] = decoder
        try:
            return decoder(data)
        except Exception as err:  # truncated or foreign payload
            raise BagReadError(f"{topic.name}: a {topic.type} message does not decode: {err}") from None

    def encode(self, type_name: str, message: Any) -> bytes:
        """CDR of ``message`` (an rclpy-style message object or a decoded one) as ``type_name``."""
        encoder = self._encoders.get(type_name)
        if encoder is None:
            schema = self.definition(type_name)
            if schema.encoding != "ros2msg":
                raise DefinitionNotFoundError(type_name, "only .idl definitions are installed; the encoder reads .msg")
            encoder = serialize_dynamic(type_name, schema.text)[type_name]
            self._encoders[type_name] = encoder
        return encoder(message)
