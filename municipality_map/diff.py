"""What changes between two routing tables, for the person about to put one in force.

For each service: which municipalities get a different centre (or gain/lose one), which
centres are added or removed, which keep their id but change URIs or backup, whether the
national overflow centre changes, and whose backup chain (the backups a call is offered to, in
order) changes as a result. Old numbers (2017-2023) are left out: they follow their successors,
except for ``old_codes.csv`` rows, which are compared too.
"""

from __future__ import annotations

from dataclasses import dataclass

from municipality_map.model import Centre, DestinationPlan, DestinationRole, Service
from municipality_map.snapshot import RoutingSnapshot


@dataclass(frozen=True, slots=True)
class CentreChange:
    """A municipality (or old number) whose centre changes for one service."""

    kommunenummer: str
    name: str
    old: str | None
    """Centre id before, or None if it had none."""
    new: str | None
    """Centre id after, or None if it has none."""


@dataclass(frozen=True, slots=True)
class CentreEdit:
    """A centre kept under the same id whose details change."""

    centre_id: str
    old: Centre
    new: Centre

    @property
    def uris_changed(self) -> bool:
        return self.old.uris != self.new.uris

    @property
    def backup_changed(self) -> bool:
        return self.old.backup_centre_id != self.new.backup_centre_id

    @property
    def name_changed(self) -> bool:
        return self.old.name != self.new.name


@dataclass(frozen=True, slots=True)
class ChainChange:
    """A centre kept in both tables whose backup chain changes (its own backup, or one further
    down the chain)."""

    centre_id: str
    old: tuple[str, ...]
    """Backup centres in plan order before (the centre itself and the overflow left out)."""
    new: tuple[str, ...]
    """Backup centres in plan order after."""


@dataclass(frozen=True, slots=True)
class ServiceDiff:
    """The changes for one service."""

    service: Service
    municipalities: tuple[CentreChange, ...]
    old_codes: tuple[CentreChange, ...]
    """Changes in ``old_codes.csv`` overrides."""
    added: tuple[Centre, ...]
    removed: tuple[Centre, ...]
    changed: tuple[CentreEdit, ...]
    overflow_before: str | None = None
    """The service's overflow centre (``[overflow]`` in version.toml) before, or None."""
    overflow_after: str | None = None
    """The service's overflow centre after, or None."""
    chains: tuple[ChainChange, ...] = ()
    """Centres in both tables whose backup chain changes."""

    @property
    def overflow_changed(self) -> bool:
        return self.overflow_before != self.overflow_after

    @property
    def empty(self) -> bool:
        return not (
            self.municipalities
            or self.old_codes
            or self.added
            or self.removed
            or self.changed
            or self.overflow_changed
            or self.chains
        )


@dataclass(frozen=True, slots=True)
class TableDiff:
    """Result of :func:`diff_snapshots`."""

    old_label: str
    new_label: str
    services: tuple[ServiceDiff, ...]

    @property
    def empty(self) -> bool:
        """True if routing would not change at all."""
        return all(s.empty for s in self.services)

    def service(self, service: Service) -> ServiceDiff:
        return next(s for s in self.services if s.service is service)

    def to_text(self) -> str:
        """A readable report, one line per change, grouped by service."""
        lines = [f"{self.old_label} \u2192 {self.new_label}"]
        if self.empty:
            lines.append("  no routing changes")
            return "\n".join(lines)
        for part in self.services:
            lines.append(f"{part.service.value} ({part.service.name}):")
            if part.empty:
                lines.append("  no changes")
                continue
            if part.municipalities:
                n = len(part.municipalities)
                lines.append(f"  {n} municipalit{'y' if n == 1 else 'ies'} change centre:")
                lines.extend(f"    {_change(c)}" for c in part.municipalities)
            if part.old_codes:
                lines.append("  old numbers (old_codes.csv):")
                lines.extend(f"    {_change(c)}" for c in part.old_codes)
            for centre in part.added:
                lines.append(
                    f"  + centre {centre.centre_id} ({centre.name}): {' '.join(centre.uris)}"
                )
            for centre in part.removed:
                lines.append(f"  - centre {centre.centre_id} ({centre.name})")
            for edit in part.changed:
                lines.extend(_edit(edit))
            if part.overflow_changed:
                old = part.overflow_before or "(none)"
                new = part.overflow_after or "(none)"
                lines.append(f"  ~ overflow centre: {old} \u2192 {new}")
            if part.chains:
                n = len(part.chains)
                lines.append(f"  {n} backup chain{'' if n == 1 else 's'} change:")
                lines.extend(f"    {_chain(c)}" for c in part.chains)
        return "\n".join(lines)


def _change(change: CentreChange) -> str:
    old = change.old or "(none)"
    new = change.new or "(none)"
    named = f"{change.kommunenummer} {change.name}" if change.name else change.kommunenummer
    return f"{named}: {old} \u2192 {new}"


def _chain(change: ChainChange) -> str:
    old = ", ".join(change.old) or "(none)"
    new = ", ".join(change.new) or "(none)"
    return f"{change.centre_id}: {old} \u2192 {new}"


def _backups(plan: DestinationPlan | None) -> tuple[str, ...]:
    if plan is None:
        return ()
    return tuple(dict.fromkeys(d.centre_id for d in plan if d.role is DestinationRole.BACKUP))


def _edit(edit: CentreEdit) -> list[str]:
    lines = []
    if edit.uris_changed:
        old, new = " ".join(edit.old.uris), " ".join(edit.new.uris)
        lines.append(f"  ~ centre {edit.centre_id} URIs: {old} \u2192 {new}")
    if edit.backup_changed:
        old_b = edit.old.backup_centre_id or "(none)"
        new_b = edit.new.backup_centre_id or "(none)"
        lines.append(f"  ~ centre {edit.centre_id} backup: {old_b} \u2192 {new_b}")
    if edit.name_changed:
        lines.append(f"  ~ centre {edit.centre_id} name: {edit.old.name} \u2192 {edit.new.name}")
    return lines


def diff_snapshots(old: RoutingSnapshot, new: RoutingSnapshot) -> TableDiff:
    """What changes in routing from ``old`` to ``new``."""
    return TableDiff(
        old_label=old.version.label,
        new_label=new.version.label,
        services=tuple(_service_diff(old, new, service) for service in Service),
    )


def _service_diff(old: RoutingSnapshot, new: RoutingSnapshot, service: Service) -> ServiceDiff:
    municipalities: list[CentreChange] = []
    for code in sorted(set(old.municipalities) | set(new.municipalities)):
        before = old.municipalities.get(code)
        after = new.municipalities.get(code)
        old_id = before.centre_id(service) if before else None
        new_id = after.centre_id(service) if after else None
        if old_id != new_id:
            row = after or before
            name = row.kommunenavn if row is not None else ""
            municipalities.append(CentreChange(code, name, old_id, new_id))
    old_codes: list[CentreChange] = []
    for code in sorted(set(old.old_codes) | set(new.old_codes)):
        before_o = old.old_codes.get(code)
        after_o = new.old_codes.get(code)
        old_id = before_o.centre_id(service) if before_o else None
        new_id = after_o.centre_id(service) if after_o else None
        if old_id != new_id:
            old_codes.append(CentreChange(code, "", old_id, new_id))
    old_centres = {i: c for i, c in old.centres.items() if c.service is service}
    new_centres = {i: c for i, c in new.centres.items() if c.service is service}
    added = tuple(new_centres[i] for i in sorted(set(new_centres) - set(old_centres)))
    removed = tuple(old_centres[i] for i in sorted(set(old_centres) - set(new_centres)))
    changed = tuple(
        CentreEdit(i, old_centres[i], new_centres[i])
        for i in sorted(set(old_centres) & set(new_centres))
        if old_centres[i] != new_centres[i]
    )
    chains = tuple(
        ChainChange(i, before_c, after_c)
        for i in sorted(set(old_centres) & set(new_centres))
        if (before_c := _backups(old.plan_for(i))) != (after_c := _backups(new.plan_for(i)))
    )
    return ServiceDiff(
        service,
        tuple(municipalities),
        tuple(old_codes),
        added,
        removed,
        changed,
        overflow_before=old.version.overflow_centre_id(service),
        overflow_after=new.version.overflow_centre_id(service),
        chains=chains,
    )
