"""Destination plans: the ordered URIs a call for a centre is offered to.

A plan is the centre's own URIs, then its backup centre's, then the backup's backup's and so on
(``backup_centre_id`` in ``centres.csv``), then the service's national overflow centre's
(``[overflow]`` in ``version.toml``). A centre is in a plan at most once, and so is a URI. The
backup chain is followed for at most :data:`MAX_BACKUP_HOPS` centres and stops at a centre
already in the plan (a cycle), at an unknown centre and at a centre of another service: the
validator reports those as errors, but plans are also built for tables being validated, so
building never fails.

Plans are built once per table, for every centre, when the routing snapshot is built; the call
path only reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from municipality_map.model import Centre, Destination, DestinationPlan, DestinationRole, Service

MAX_BACKUP_HOPS = 8
"""Backup centres followed at most, after the primary. Each centre costs a caller up to a ring
time, so a longer chain is cut here (and the validator warns about it)."""


@dataclass(frozen=True, slots=True)
class BackupChain:
    """The backups of one centre as a plan follows them."""

    centre_ids: tuple[str, ...]
    """The backups followed, in order (the centre itself not included)."""
    truncated: bool
    """True if the chain goes on past ``MAX_BACKUP_HOPS`` backups."""
    cycle: bool
    """True if the chain comes back to a centre already on it."""


def backup_chain(
    centre_id: str, centres: Mapping[str, Centre], max_hops: int = MAX_BACKUP_HOPS
) -> BackupChain:
    """Follow ``centre_id``'s backups while they exist, answer the same service and are new."""
    start = centres[centre_id]
    seen = {centre_id}
    chain: list[str] = []
    backup_id = start.backup_centre_id
    while backup_id is not None:
        backup = centres.get(backup_id)
        if backup is None or backup.service is not start.service:
            break  # validation error; the chain ends where the table stops making sense
        if backup_id in seen:
            return BackupChain(tuple(chain), truncated=False, cycle=True)
        if len(chain) == max_hops:
            return BackupChain(tuple(chain), truncated=True, cycle=False)
        seen.add(backup_id)
        chain.append(backup_id)
        backup_id = backup.backup_centre_id
    return BackupChain(tuple(chain), truncated=False, cycle=False)


def build_plan(
    centre_id: str,
    centres: Mapping[str, Centre],
    overflow: Mapping[Service, str],
    max_hops: int = MAX_BACKUP_HOPS,
) -> DestinationPlan:
    """The plan of ``centre_id`` (which must be in ``centres``)."""
    centre = centres[centre_id]
    steps: list[tuple[Centre, DestinationRole]] = [(centre, DestinationRole.PRIMARY)]
    chain = backup_chain(centre_id, centres, max_hops)
    steps.extend((centres[b], DestinationRole.BACKUP) for b in chain.centre_ids)
    overflow_centre = centres.get(overflow.get(centre.service, ""))
    if (
        overflow_centre is not None
        and overflow_centre.service is centre.service
        and all(overflow_centre is not step for step, _ in steps)
    ):
        steps.append((overflow_centre, DestinationRole.OVERFLOW))
    destinations: list[Destination] = []
    uris: set[str] = set()
    for hop, (step, role) in enumerate(steps):
        for uri in step.uris:
            if uri not in uris:  # two centres behind one URI: trying it again is no use
                uris.add(uri)
                destinations.append(Destination(step.centre_id, uri, role, hop))
    return DestinationPlan(centre_id, centre.service, tuple(destinations))


def build_plans(
    centres: Mapping[str, Centre],
    overflow: Mapping[Service, str] | Iterable[tuple[Service, str]],
    max_hops: int = MAX_BACKUP_HOPS,
) -> dict[str, DestinationPlan]:
    """The plan of every centre, by centre id."""
    by_service = dict(overflow.items() if isinstance(overflow, Mapping) else overflow)
    return {cid: build_plan(cid, centres, by_service, max_hops) for cid in centres}
