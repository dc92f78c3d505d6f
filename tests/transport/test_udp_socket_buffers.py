"""The UDP listener asks for socket buffers big enough to ride out a pause of the loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from sip.transaction import TransactionLayer
from sip.transport import SipEndpoint

pytestmark = pytest.mark.asyncio

RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")


async def _receive_buffer(udp_buffer_bytes: int | None) -> int:
    endpoint = SipEndpoint(TransactionLayer(), udp_buffer_bytes=udp_buffer_bytes)
    await endpoint.start("127.0.0.1", 0, ["udp"])
    try:
        size = endpoint.udp_receive_buffer_bytes
    finally:
        await endpoint.close()
    assert size is not None
    return size


@pytest.mark.skipif(not RMEM_MAX.exists(), reason="Linux socket limits not readable")
async def test_udp_receive_buffer_grown_up_to_the_system_cap() -> None:
    cap = int(RMEM_MAX.read_text())
    default = int(RMEM_DEFAULT.read_text())
    wanted = 2 * 1024 * 1024
    if min(wanted, cap) <= default:
        pytest.skip("this system caps UDP buffers at its default size")
    grown = await _receive_buffer(wanted)
    plain = await _receive_buffer(None)
    # Linux reports twice what was set (bookkeeping overhead), capped at 2 * rmem_max
    assert grown >= min(wanted, cap)
    assert grown > plain
