"""Entry points: the CLI (and later the Kafka agent)."""
