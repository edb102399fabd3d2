"""PostgreSQL: the store (repositories), migrations, and driver error translation."""
