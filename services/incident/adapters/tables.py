"""Incident tables, on the shared metadata so one Alembic history covers the store."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.tables import metadata

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("incident_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_incidents_model_version_status", "model", "version", "status"),
)

detector_feedback = sa.Table(
    "detector_feedback", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("alert_kinds", sa.JSON, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
)
