"""Local services for development and tests: private NATS, PostgreSQL and Valkey, and the supervisor."""
