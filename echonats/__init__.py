"""echonats: real-time chat backend over NATS JetStream."""

__version__ = "0.1.0"
