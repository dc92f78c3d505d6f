"""Suite-wide settings.

``loadtests/`` is importable by module name (``bench``, ``bench_processes``, ``failover_bench``
…): e2e tests reuse the load-test kit's table writers and SIPp helpers.

Hypothesis: this machine is shared and noisy, so example generation time is not a failure
(the properties are what is tested, not speed; speed has its own benchmark).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

LOADTESTS = str(Path(__file__).resolve().parents[1] / "loadtests")
if LOADTESTS not in sys.path:
    sys.path.insert(0, LOADTESTS)

settings.register_profile(
    "nodrute", deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("nodrute")
