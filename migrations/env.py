"""Alembic environment: metadata from rewards.db, batch mode on SQLite."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from rewards.db.engine import make_engine
from rewards.db.tables import metadata
from rewards.settings import get_settings

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url if url else get_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
