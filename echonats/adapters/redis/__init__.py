"""Redis (Valkey): rate limits, presence and typing throttles."""
