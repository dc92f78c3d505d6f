"""Table store: immutable table versions with their files, activations, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IMMUTABLE = ("table_versions", "table_files")


def upgrade() -> None:
    op.create_table(
        "table_versions",
        sa.Column("version_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(200), nullable=False, index=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("imported_by", sa.String(200), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "table_files",
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("table_versions.version_id"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "activations",
        sa.Column("activation_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "version_id", sa.Integer, sa.ForeignKey("table_versions.version_id"), nullable=False
        ),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "audit_log",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    _forbid_changes()


def _forbid_changes() -> None:
    """An imported version is evidence of what was routed: the database refuses to change it."""
    dialect = op.get_bind().dialect.name
    for table in _IMMUTABLE:
        if dialect == "sqlite":
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
                )
        elif dialect == "postgresql":
            op.execute(
                "CREATE OR REPLACE FUNCTION nodrute_immutable() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME; END $$ "
                "LANGUAGE plpgsql"
            )
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION nodrute_immutable()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _IMMUTABLE:
        if dialect == "sqlite":
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS nodrute_immutable()")
    op.drop_table("audit_log")
    op.drop_table("activations")
    op.drop_table("table_files")
    op.drop_table("table_versions")
