"""Destination plans: the centre's URIs, its backup chain, the overflow centre; in the snapshot."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from municipality_map import (
    Centre,
    Destination,
    DestinationRole,
    RoutingSnapshot,
    Service,
    load_snapshot,
)
from municipality_map.crosswalk import Crosswalk
from municipality_map.model import MunicipalityRow, TableVersion
from municipality_map.plan import MAX_BACKUP_HOPS, backup_chain, build_plan, build_plans

Rows = Callable[[Path], list[dict[str, str]]]
P, B, OV = DestinationRole.PRIMARY, DestinationRole.BACKUP, DestinationRole.OVERFLOW


def amk(centre_id: str, backup: str | None = None, *uris: str) -> Centre:
    return Centre(
        centre_id,
        centre_id.title(),
        Service.AMK,
        uris or (f"sip:{centre_id.lower()}@127.0.0.1:5060",),
        backup,
    )


def directory(*centres: Centre) -> dict[str, Centre]:
    return {c.centre_id: c for c in centres}


def steps(plan: object) -> list[tuple[str, str, DestinationRole, int]]:
    return [(d.centre_id, d.uri, d.role, d.hop) for d in plan]  # type: ignore[attr-defined]


def test_plan_order_own_uris_then_backup_chain_then_overflow():
    centres = directory(
        amk("A", "B", "sip:a1@127.0.0.1:5061", "sip:a2@127.0.0.1:5062"),
        amk("B", "C", "sip:b@127.0.0.1:5063"),
        amk("C", None, "sip:c1@127.0.0.1:5064", "sip:c2@127.0.0.1:5065"),
        amk("X", None, "sip:x@127.0.0.1:5066"),
    )
    plan = build_plan("A", centres, {Service.AMK: "X"})
    assert steps(plan) == [
        ("A", "sip:a1@127.0.0.1:5061", P, 0),
        ("A", "sip:a2@127.0.0.1:5062", P, 0),
        ("B", "sip:b@127.0.0.1:5063", B, 1),
        ("C", "sip:c1@127.0.0.1:5064", B, 2),
        ("C", "sip:c2@127.0.0.1:5065", B, 2),
        ("X", "sip:x@127.0.0.1:5066", OV, 3),
    ]
    assert (plan.centre_id, plan.service) == ("A", Service.AMK)
    assert plan.centre_ids == ("A", "B", "C", "X")
    assert plan.uris == tuple(d.uri for d in plan.destinations)
    assert len(plan) == 6 and plan[0] is plan.destinations[0]
    # A centre further down the chain has the tail of the chain as its plan.
    assert build_plan("B", centres, {Service.AMK: "X"}).centre_ids == ("B", "C", "X")


def test_overflow_is_never_repeated():
    centres = directory(amk("A", "B"), amk("B", "X"), amk("X"))
    overflow = {Service.AMK: "X"}
    # X is already on A's chain (as a backup): it is not offered again as the overflow.
    assert [(d.centre_id, d.role) for d in build_plan("A", centres, overflow)] == [
        ("A", P), ("B", B), ("X", B)
    ]
    # The overflow centre's own plan does not end with itself.
    assert steps(build_plan("X", centres, overflow)) == [
        ("X", "sip:x@127.0.0.1:5060", P, 0)
    ]


def test_overflow_of_another_service_or_unknown_is_not_used_by_the_builder():
    lvs = Centre("LVS-1", "L", Service.LEGEVAKT, ("sip:l@127.0.0.1:5070",), None)
    centres = directory(amk("A"), lvs)
    for overflow in ({Service.AMK: "LVS-1"}, {Service.AMK: "NOPE"}, {Service.LEGEVAKT: "LVS-1"}):
        assert build_plan("A", centres, overflow).centre_ids == ("A",)
    assert build_plan("LVS-1", centres, {Service.LEGEVAKT: "LVS-1"}).centre_ids == ("LVS-1",)


def test_backup_cycle_ends_the_chain_without_repeating_a_centre():
    centres = directory(amk("A", "B"), amk("B", "C"), amk("C", "A"), amk("X"))
    chain = backup_chain("B", centres)
    assert (chain.centre_ids, chain.cycle, chain.truncated) == (("C", "A"), True, False)
    plan = build_plan("B", centres, {Service.AMK: "X"})
    assert plan.centre_ids == ("B", "C", "A", "X")
    # Own backup (a cycle of one) and a chain into a cycle it is not on.
    assert build_plan("S", directory(amk("S", "S")), {}).centre_ids == ("S",)
    tail = directory(amk("T", "A"), amk("A", "B"), amk("B", "A"))
    assert build_plan("T", tail, {}).centre_ids == ("T", "A", "B")
    assert backup_chain("T", tail).cycle


def test_chain_is_cut_after_the_hop_limit_and_overflow_still_follows():
    ids = [f"C{i:02d}" for i in range(MAX_BACKUP_HOPS + 4)]
    centres = directory(*(amk(c, n) for c, n in zip(ids, [*ids[1:], None], strict=True)), amk("X"))
    plan = build_plan(ids[0], centres, {Service.AMK: "X"})
    assert plan.centre_ids == (*ids[: MAX_BACKUP_HOPS + 1], "X")
    assert plan[-1].hop == MAX_BACKUP_HOPS + 1 and plan[-1].role is OV
    assert backup_chain(ids[0], centres).truncated
    # A chain exactly at the limit is whole.
    assert not backup_chain(ids[3], centres).truncated
    assert build_plan(ids[0], centres, {}, max_hops=2).centre_ids == tuple(ids[:3])


def test_a_uri_is_offered_once():
    shared = "sip:shared@127.0.0.1:5080"
    centres = directory(
        amk("A", "B", "sip:a@127.0.0.1:5081", shared, "sip:a@127.0.0.1:5081"),
        amk("B", None, shared, "sip:b@127.0.0.1:5082"),
    )
    assert [(d.centre_id, d.uri) for d in build_plan("A", centres, {})] == [
        ("A", "sip:a@127.0.0.1:5081"),
        ("A", shared),
        ("B", "sip:b@127.0.0.1:5082"),
    ]


def test_broken_references_end_the_chain_in_the_builder_but_not_in_a_snapshot():
    lvs = Centre("LVS-1", "L", Service.LEGEVAKT, ("sip:l@127.0.0.1:5070",), None)
    centres = directory(amk("A", "LVS-1"), amk("B", "GONE"), lvs)
    plans = build_plans(centres, ())
    assert plans["A"].centre_ids == ("A",) and plans["B"].centre_ids == ("B",)
    version = TableVersion("t", datetime(2024, 1, 1, tzinfo=UTC), "test", "", "2024")
    for broken in (amk("A", "LVS-1"), amk("A", "GONE"), amk("A", "A")):
        with pytest.raises(ValueError, match="backup"):
            RoutingSnapshot(version, [broken, lvs], [], Crosswalk.bundled())
    for overflow in ((Service.AMK, "LVS-1"), (Service.LEGEVAKT, "GONE")):
        bad = dataclasses.replace(version, overflow=(overflow,))
        with pytest.raises(ValueError, match="overflow"):
            RoutingSnapshot(bad, [amk("A"), lvs], [], Crosswalk.bundled())


def test_snapshot_lookup_carries_the_shared_plan():
    centres = [amk("AMK-A", "AMK-B"), amk("AMK-B"), amk("AMK-X")]
    lvs = Centre("LVS-A", "LA", Service.LEGEVAKT, ("sip:la@127.0.0.1:5090",), None)
    rows = [
        MunicipalityRow("3103", "Moss", "AMK-A", "LVS-A", ""),
        MunicipalityRow("0301", "Oslo", "AMK-X", "LVS-A", ""),
    ]
    version = TableVersion(
        "t", datetime(2024, 1, 1, tzinfo=UTC), "test", "", "2024",
        overflow=((Service.AMK, "AMK-X"),),
    )
    snapshot = RoutingSnapshot(version, [*centres, lvs], rows, Crosswalk.bundled())
    moss, old_moss = snapshot.lookup("3103", Service.AMK), snapshot.lookup("3002", Service.AMK)
    assert moss is not None and old_moss is not None
    assert moss.plan.centre_ids == ("AMK-A", "AMK-B", "AMK-X")
    assert moss.plan is old_moss.plan is snapshot.plan_for("AMK-A")
    assert snapshot.plan_for("AMK-X") is not None
    assert snapshot.plan_for("AMK-X").centre_ids == ("AMK-X",)  # type: ignore[union-attr]
    assert snapshot.plan_for("NOPE") is None
    assert snapshot.overflow_centre(Service.AMK) is snapshot.centre("AMK-X")
    assert snapshot.overflow_centre(Service.LEGEVAKT) is None  # no overflow named for 116117
    lvs_lookup = snapshot.lookup("3103", Service.LEGEVAKT)
    assert lvs_lookup is not None and lvs_lookup.plan.centre_ids == ("LVS-A",)
    with pytest.raises(TypeError):
        snapshot.plans["AMK-A"] = moss.plan  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        moss.plan[0].uri = "sip:evil@127.0.0.1"  # type: ignore[misc]


def _expected_plan(
    centre_id: str, rows: dict[str, dict[str, str]], overflow: dict[str, str]
) -> list[tuple[str, str, str, int]]:
    """The plan worked out from the raw CSV rows, independently of the package."""
    order: list[tuple[str, str]] = [(centre_id, "primary")]
    backup = rows[centre_id]["backup_centre_id"]
    while backup and backup not in [c for c, _ in order] and len(order) <= MAX_BACKUP_HOPS:
        order.append((backup, "backup"))
        backup = rows[backup]["backup_centre_id"]
    spare = overflow.get(rows[centre_id]["service"])
    if spare and spare not in [c for c, _ in order]:
        order.append((spare, "overflow"))
    seen: set[str] = set()
    expected = []
    for hop, (cid, role) in enumerate(order):
        for uri in rows[cid]["uris"].split():
            if uri not in seen:
                seen.add(uri)
                expected.append((cid, uri, role, hop))
    return expected


def test_every_sample_plan_matches_the_files(
    snapshot: RoutingSnapshot, sample_dir: Path, read_rows: Rows
):
    rows = {r["centre_id"]: r for r in read_rows(sample_dir / "centres.csv")}
    with (sample_dir / "version.toml").open("rb") as fh:
        overflow = tomllib.load(fh)["overflow"]
    assert overflow == {"113": "AMK-OSLO", "116117": "LVS-0301"}  # SAMPLE choice, documented
    assert set(snapshot.plans) == set(rows)
    for centre_id in rows:
        plan = snapshot.plan_for(centre_id)
        assert plan is not None
        got = [(d.centre_id, d.uri, d.role.value, d.hop) for d in plan]
        assert got == _expected_plan(centre_id, rows, overflow), centre_id
        assert all(isinstance(d, Destination) for d in plan)
        # Every plan of the sample offers somewhere else when the centre does not answer.
        assert len(plan.centre_ids) >= 2, centre_id
    for code in ("0301", "3002", "1504", "2100"):
        for service in Service:
            found = snapshot.lookup(code, service)
            assert found is not None
            assert found.plan is snapshot.plan_for(found.centre.centre_id)
            assert found.plan[0].centre_id == found.centre.centre_id


def test_table_without_overflow_still_loads(table_copy: Path):
    path = table_copy / "version.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("[overflow]")], encoding="utf-8")
    snapshot = load_snapshot(table_copy)
    assert snapshot.version.overflow == ()
    assert snapshot.overflow_centre(Service.AMK) is None
    roles = {d.role for plan in snapshot.plans.values() for d in plan}
    assert roles == {P, B}
    # AMK-STAVANGER has no backup: without an overflow its plan is itself alone.
    assert snapshot.plan_for("AMK-STAVANGER").centre_ids == ("AMK-STAVANGER",)  # type: ignore[union-attr]


def test_plan_is_a_read_only_hashable_sequence(snapshot: RoutingSnapshot, sample_dir: Path):
    plan = snapshot.plan_for("AMK-FONNA")
    assert isinstance(plan, Sequence)
    assert plan[1:3] == plan.destinations[1:3] and isinstance(plan[1:3], tuple)
    assert list(reversed(plan)) == list(reversed(plan.destinations))
    assert plan.index(plan[-1]) == len(plan) - 1 and plan[0] in plan
    # Equal plans from two loads of the same table are equal and hash alike (usable as keys).
    again = load_snapshot(sample_dir).plan_for("AMK-FONNA")
    assert again is not plan and {plan: "x"}[again] == "x"
