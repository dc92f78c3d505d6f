"""Worst-case parse time of router.location for bodies at the 16 KiB PIDF-LO cap.

Each case is a hostile or degenerate document as large as the caps let through (the most
expensive work the parser will do); two over a cap show that refusing costs nothing.
Prints JSON: per case the body size, the wall-clock median and p99 and the thread CPU median
and max of one parse_location() call in microseconds (on a shared machine the wall p99 shows
preemption, the CPU time does not), and the first problem reported.

    .venv/bin/python loadtests/location_parse_bench.py [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from router.location import DEFAULT_LIMITS, parse_location
from router.pidf_lo import MAX_POSITIONS, MAX_SHAPES, MAX_XML_ATTRIBUTES, MAX_XML_TAGS

CAP = DEFAULT_LIMITS.max_xml_bytes
HEAD = (
    '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml" '
    'xmlns:gs="http://www.opengis.net/pidflo/1.0"><tuple id="t"><status><gp:geopriv>'
    "<gp:location-info>"
)
TAIL = "</gp:location-info></gp:geopriv></status></tuple></presence>"
SRS = 'srsName="urn:ogc:def:crs:EPSG::4326"'


def fill(unit: str, head: str = HEAD, tail: str = TAIL, size: int = CAP,
         most: int = 1 << 30) -> bytes:
    """``head`` + as many ``unit`` as fit under ``size`` bytes (at most ``most``) + ``tail``."""
    count = min(most, (size - len(head) - len(tail)) // len(unit))
    return (head + unit * count + tail).encode()


def polygons() -> bytes:
    """As many polygons as the shape cap, each with the most positions: the most numbers."""
    ring = " ".join(f"6{i % 10} 1{i % 7}" for i in range(MAX_POSITIONS - 1)) + " 60 10"
    unit = (f"<gml:Polygon {SRS}><gml:exterior><gml:LinearRing><gml:posList>{ring}"
            "</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>")
    return fill(unit, most=MAX_SHAPES)


def arc_bands() -> bytes:
    metre, degree = 'uom="urn:ogc:def:uom:EPSG::9001"', 'uom="urn:ogc:def:uom:EPSG::9102"'
    unit = (f'<gs:ArcBand {SRS}><gml:pos>60 10</gml:pos>'
            f"<gs:innerRadius {metre}>3594</gs:innerRadius>"
            f"<gs:outerRadius {metre}>4148</gs:outerRadius>"
            f"<gs:startAngle {degree}>20</gs:startAngle>"
            f"<gs:openingAngle {degree}>20</gs:openingAngle></gs:ArcBand>")
    return fill(unit, most=MAX_SHAPES)


def civic() -> bytes:
    fields = "".join(f"<ca:A{i % 6 + 1}>Navn {i}</ca:A{i % 6 + 1}>" for i in range(60))
    unit = f"<ca:civicAddress>{fields}<ca:PC>0150</ca:PC></ca:civicAddress>"
    head = HEAD.replace("<presence ", '<presence xmlns:ca="urn:ietf:params:xml:ns:pidf:'
                        'geopriv10:civicAddr" ')
    return fill(unit, head, most=4)


def deep_nesting() -> bytes:
    count = 250  # the tag cap (512 "<") allows about 255 levels
    return (HEAD + "<a>" * count + "</a>" * count + TAIL).encode()


CASES: dict[str, Callable[[], bytes]] = {
    "typical: one Point (uac_pidf_lo.xml)": lambda: fill(
        f"<gml:Point {SRS}><gml:pos>59.9133 10.7389</gml:pos></gml:Point>", most=1),
    # the most expensive documents that pass every cap and are parsed in full
    f"{MAX_SHAPES} polygons x {MAX_POSITIONS} positions": polygons,
    f"{MAX_SHAPES} arc bands": arc_bands,
    "4 civic addresses x 61 fields": civic,
    "tags at the cap (tiny elements)": lambda: fill("<b/>", most=MAX_XML_TAGS - 12),
    "attributes at the cap": lambda: fill(" ", HEAD.replace('id="t"', 'id="t" ' + " ".join(
        f'a{i}="{i}"' for i in range(MAX_XML_ATTRIBUTES - 8))), TAIL),
    "deep nesting": deep_nesting,
    "one long text node": lambda: fill("x"),
    f"{MAX_SHAPES} polygons, malformed at the end": lambda: polygons()[:-10],
    # refused before parsing
    "tags over the cap": lambda: fill("<b/>"),
    "bytes over the cap": lambda: fill("x", size=CAP + 64),
}


def two_in_multipart() -> tuple[str, bytes]:
    """The worst request: as many worst-case documents as are parsed, in one multipart body."""
    document = polygons()
    parts = b"".join(b"--b\r\nContent-Type: application/pidf+xml\r\n\r\n" + document + b"\r\n"
                     for _ in range(DEFAULT_LIMITS.max_pidf_documents))
    return "multipart/mixed;boundary=b", parts + b"--b--\r\n"


def measure(document: bytes, runs: int,
            content_type: str = "application/pidf+xml") -> dict[str, object]:
    wall: list[float] = []
    cpu: list[float] = []
    problems: tuple[str, ...] = ()
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.thread_time()
        found = parse_location(geolocation=(), routing=None,
                               content_type=content_type, content_id=None,
                               body=document)
        cpu.append((time.thread_time() - start_cpu) * 1e6)
        wall.append((time.perf_counter() - start) * 1e6)
        problems = found.problems
    wall.sort()
    cpu.sort()
    return {
        "bytes": len(document),
        "wall_median_us": round(statistics.median(wall), 1),
        "wall_p99_us": round(wall[min(len(wall) - 1, int(len(wall) * 0.99))], 1),
        "cpu_median_us": round(statistics.median(cpu), 1),
        "cpu_max_us": round(cpu[-1], 1),
        "first_problem": problems[0] if problems else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    report = {name: measure(build(), args.runs) for name, build in CASES.items()}
    content_type, body = two_in_multipart()
    report[f"whole request: {DEFAULT_LIMITS.max_pidf_documents} x the polygons case, "
           "multipart"] = measure(body, args.runs, content_type)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
