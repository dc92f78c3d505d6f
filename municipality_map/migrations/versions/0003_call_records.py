"""Call records: one row per call and one per attempt (router/records.py writes them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Instants are fixed-width ISO 8601 UTC text, "2027-01-15T08:00:00.000000+00:00": text order is
# time order in every database, and the writer stores them without a conversion per value.
_INSTANT = sa.String(32)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # record_id is a UUID made by the node when the call ends: a row replayed from the spill
    # file twice is recognised and not stored again.
    op.create_table(
        "call_records",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("trunk", sa.String(100), nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("requested_municipality", sa.String(16), nullable=True),
        sa.Column("municipality", sa.String(16), nullable=True),
        sa.Column("location_source", sa.String(16), nullable=False),
        sa.Column("location_evidence", sa.Text, nullable=False),
        sa.Column("location_ambiguous", sa.Boolean, nullable=False),
        sa.Column("location_disagreement", sa.Boolean, nullable=False),
        sa.Column("table_version", sa.String(200), nullable=False),
        sa.Column("centre_id", sa.String(100), nullable=True),
        sa.Column("centre_uri", sa.Text, nullable=True),
        sa.Column("final_status", sa.Integer, nullable=True),
        sa.Column("centre_status", sa.Integer, nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("hunt_exhausted", sa.Boolean, nullable=False),
        sa.Column("attempt_count", sa.Integer, nullable=False),
        sa.Column("started_at", _INSTANT, nullable=False),
        sa.Column("hunt_started_at", _INSTANT, nullable=True),
        sa.Column("first_provisional_at", _INSTANT, nullable=True),
        sa.Column("ringing_at", _INSTANT, nullable=True),
        sa.Column("answered_at", _INSTANT, nullable=True),
        sa.Column("ended_at", _INSTANT, nullable=True),
        sa.Column("ivr_s", sa.Float, nullable=True),
        sa.Column("ring_s", sa.Float, nullable=True),
        sa.Column("answer_s", sa.Float, nullable=True),
        sa.Column("talk_s", sa.Float, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("notes", sa.Text, nullable=False),
    )
    op.create_index("ix_call_records_started_at", "call_records", ["started_at"])
    op.create_index("ix_call_records_service_centre", "call_records", ["service", "centre_id"])
    op.create_table(
        "call_attempts",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("centre_id", sa.String(100), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("pass_number", sa.Integer, nullable=False),
        sa.Column("skipped_down", sa.Boolean, nullable=False),
        sa.Column("started_at", _INSTANT, nullable=False),
        sa.Column("provisional_at", _INSTANT, nullable=True),
        sa.Column("ended_at", _INSTANT, nullable=True),
        sa.Column("end", sa.String(32), nullable=True),
        sa.Column("status", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("call_attempts")
    op.drop_index("ix_call_records_service_centre", "call_records")
    op.drop_index("ix_call_records_started_at", "call_records")
    op.drop_table("call_records")
