"""Alembic environment for the table store.

``TableStore.open`` passes its own connection in ``config.attributes["connection"]``; run by
hand, the database URL comes from ``-x url=...`` (an async URL such as
``sqlite+aiosqlite:///var/nodrute.db`` or ``postgresql+asyncpg://...``).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit(
            "give the database URL: alembic -x url=sqlite+aiosqlite:///... upgrade head"
        )
    asyncio.run(_run_with_url(url))


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported")
main()
