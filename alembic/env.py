"""Runs migrations against APP_DATABASE_URL, on PostgreSQL or SQLite (batch mode)."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from app.audit import models as audit_models  # noqa: F401
from app.core.engine import Base, pooler_connect_args
from app.core.log import configure_logging
from app.core.settings import Settings
from app.imports import models as import_models  # noqa: F401  (the import ledger)
from app.keys import models as key_models  # noqa: F401
from app.sales import models  # noqa: F401  (registers the tables on Base.metadata)
from app.stats import models as stats_models  # noqa: F401  (the statistics' rollup)

config = context.config


def _configure_logging() -> None:
    """The service's JSON lines when APP_LOG_FORMAT=json (its container), else alembic.ini's."""
    if os.environ.get("APP_LOG_FORMAT") == "json":
        # Only the format: migrating must not need the service's other settings (its token).
        configure_logging(Settings.model_construct(log_format="json", log_level="INFO"))
    elif config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)


if config.attributes.get("configure_logger", True):
    _configure_logging()

target_metadata = Base.metadata


def _database_url() -> str:
    # Only the URL: migrating must not need the service's other settings (its token, say).
    url = config.attributes.get("database_url") or os.environ.get("APP_DATABASE_URL")
    return str(url or Settings.model_fields["database_url"].default)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_database_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _database_pooler() -> str:
    """APP_DATABASE_POOLER: migrating through PgBouncer must name no prepared statement either."""
    pooler = config.attributes.get("database_pooler") or os.environ.get("APP_DATABASE_POOLER")
    return str(pooler or "none")


async def run_migrations_online() -> None:
    url = _database_url()
    connect_args = {} if url.startswith("sqlite") else pooler_connect_args(_database_pooler())
    engine = create_async_engine(url, connect_args=connect_args)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
