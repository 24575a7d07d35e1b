"""How messages get in and out: one module per medium, and the port they share (`channels.base`)."""

from channels.base import ChannelName, DeliveryFailed, InboundMessage, OutboundMessage, Sender

__all__ = ["ChannelName", "DeliveryFailed", "InboundMessage", "OutboundMessage", "Sender"]
