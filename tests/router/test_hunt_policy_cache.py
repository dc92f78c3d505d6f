"""The hunt policy is built once per settings object; a reload (a new object) takes effect."""

from __future__ import annotations

from municipality_map import Service
from router.call import _hunt_policy
from router.config import FailoverSettings, NodruteSettings


def test_policy_follows_the_settings_object() -> None:
    first = NodruteSettings()
    policy = _hunt_policy(first, Service.AMK)
    assert policy is _hunt_policy(first, Service.AMK)
    assert policy.first_response_s == first.failover.first_response_s
    assert policy.passes == first.failover.passes(Service.AMK)
    assert _hunt_policy(first, Service.LEGEVAKT).total_ring_s == first.routing.ring_timeout_s(
        Service.LEGEVAKT)
    reloaded = first.model_copy(update={"failover": FailoverSettings(
        first_response_s=first.failover.first_response_s + 1.5, final_codes=[486])})
    changed = _hunt_policy(reloaded, Service.AMK)
    assert changed.first_response_s == first.failover.first_response_s + 1.5
    assert changed.final_codes == frozenset({486})
    assert _hunt_policy(first, Service.AMK).first_response_s == policy.first_response_s
