"""Suite-wide settings.

Hypothesis: this machine is shared and noisy, so example generation time is not a failure
(the properties are what is tested, not speed; speed has its own benchmark).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "nodrute", deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("nodrute")
