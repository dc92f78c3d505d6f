"""Fixtures for the SIP tests; the helpers behind them are in test_transaction_support.py."""

from __future__ import annotations

import pytest
from test_transaction_support import TIMERS, Harness

from sip.transaction import TransactionLayer


@pytest.fixture
def harness() -> Harness:
    return Harness(TransactionLayer(TIMERS))


@pytest.fixture
def harness_no_trying() -> Harness:
    return Harness(TransactionLayer(TIMERS, trying_delay=None))
