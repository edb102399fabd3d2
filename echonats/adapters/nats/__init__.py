"""NATS and JetStream: subjects, stored records, streams, the message log and event publication."""
