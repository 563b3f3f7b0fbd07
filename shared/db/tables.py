"""SQLAlchemy Core tables of the shared store (ledger, audit trail, idempotency, outbox)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(100), primary_key=True),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("artifact_digest", sa.String(80), nullable=False),
    sa.Column("source_url", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)

production_aliases = sa.Table(
    "production_aliases", metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

audit_records = sa.Table(
    "audit_records", metadata,
    # seq is the primary key: two writers racing for the same seq cannot fork the chain
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False, index=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
)

processed_events = sa.Table(
    "processed_events", metadata,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("processed_at", sa.Float, nullable=False),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(200), nullable=False),
    # which service's relay publishes the row (services share the store, not their outboxes)
    sa.Column("producer", sa.String(100), nullable=False, server_default="bdguard", index=True),
    sa.Column("key", sa.String(300), nullable=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float, nullable=True, index=True),
)
