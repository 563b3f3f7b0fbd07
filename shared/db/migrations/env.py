"""Alembic environment: target metadata is the shared tables; URL comes from the Config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

# service-owned tables live on the same metadata (one migration history for the shared store)
import services.incident.adapters.tables  # noqa: F401
from shared.db.tables import metadata

config = context.config


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section) or {},
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
