"""How messages get in and out: one module per medium, a tiny Channel port, a fake for tests."""

from channels.base import ChannelName, DeliveryFailed, InboundMessage, OutboundMessage, Sender

__all__ = ["ChannelName", "DeliveryFailed", "InboundMessage", "OutboundMessage", "Sender"]
