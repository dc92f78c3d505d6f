"""The MQTT activation notice: what is published and what a node accepts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from municipality_map.sync import (
    activation_topic,
    broker_address,
    decode_activation,
    encode_activation,
    node_topic,
)


@dataclass(frozen=True)
class Act:
    version_id: int
    effective_at: datetime


@dataclass(frozen=True)
class Ver:
    sha256: str


def test_notice_round_trip_keeps_the_instant_and_zone() -> None:
    at = datetime(2020, 1, 7, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    notice = decode_activation(encode_activation(Act(7, at), Ver("ab" * 32)))
    assert (notice.version_id, notice.sha256) == (7, "ab" * 32)
    assert notice.effective_at == at and notice.effective_at.astimezone(UTC).hour == 7


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b'{"version_id": 1}',
    b'{"version_id": 1, "sha256": "x", "effective_at": "2020-01-07T08:00:00"}',
    b'{"version_id": "one", "sha256": "x", "effective_at": "2020-01-07T08:00:00+01:00"}',
])
def test_malformed_notices_are_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_activation(payload)


def test_broker_urls_and_topics() -> None:
    assert broker_address("mqtt://127.0.0.1:18830") == ("127.0.0.1", 18830)
    assert broker_address("127.0.0.1") == ("127.0.0.1", 1883)
    with pytest.raises(ValueError):
        broker_address("http://127.0.0.1:80")
    assert activation_topic("nodrute") == "nodrute/tables/activation"
    assert node_topic("nodrute", "n1") == "nodrute/nodes/n1/active"
