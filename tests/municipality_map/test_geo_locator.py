"""Point -> municipality (municipality_map/geo.py) on the bundled Kartverket boundaries.

Expected answers are computed here from the polygons themselves (shapely read straight from the
GeoJSON, haversine distances to densified boundaries), never typed in, except Oslo city hall.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from municipality_map.geo import GeoMatch, MunicipalityLocator
from municipality_map.reference import municipality_list

GEOJSON = (
    Path(__file__).resolve().parents[2] / "municipality_map" / "data" / "kommuner_2024_S.geojson"
)
EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class Boundaries:
    codes: list[str]
    geoms: list[BaseGeometry]
    tree: shapely.STRtree

    def covering(self, lat: float, lon: float) -> list[str]:
        point = shapely.Point(lon, lat)
        return sorted(self.codes[i] for i in self.tree.query(point) if self.geoms[i].covers(point))


@pytest.fixture(scope="module")
def boundaries() -> Boundaries:
    features = json.loads(GEOJSON.read_bytes())["features"]
    codes = [f["properties"]["kommunenummer"] for f in features]
    geoms = [shape(f["geometry"]) for f in features]
    return Boundaries(codes, geoms, shapely.STRtree(geoms))


@pytest.fixture(scope="module")
def locator() -> MunicipalityLocator:
    return MunicipalityLocator.bundled()


def haversine_m(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def boundary_distance_m(geom: BaseGeometry, lat: float, lon: float) -> float:
    """Great-circle metres to the nearest vertex of the boundary densified to ~20 m steps.

    An independent upper bound of the true distance, at most ~10 m too long.
    """
    part = shapely.clip_by_rect(geom, lon - 0.5, lat - 0.25, lon + 0.5, lat + 0.25)
    if part.is_empty:
        return math.inf
    coords = shapely.get_coordinates(shapely.segmentize(part.boundary, 0.0002))
    return float(haversine_m(lat, lon, coords[:, 1], coords[:, 0]).min())


# --- the data ------------------------------------------------------------------------------


def test_bundled_boundaries_are_the_357_municipalities_of_2024(locator: MunicipalityLocator):
    assert len(locator) == 357
    assert set(locator.kommunenummer) == set(municipality_list("2024"))


def test_representative_point_of_every_municipality(
    locator: MunicipalityLocator, boundaries: Boundaries
):
    wrong = {}
    for code, geom in zip(boundaries.codes, boundaries.geoms, strict=True):
        point = geom.representative_point()
        match = locator.locate(point.y, point.x)
        if match is None or (match.kommunenummer, match.method) != (code, "inside"):
            wrong[code] = match
    assert wrong == {}
    assert len(boundaries.codes) == 357


def test_every_island_and_exclave_is_found(locator: MunicipalityLocator, boundaries: Boundaries):
    """A point on every part of every MultiPolygon (1,100 parts): skerries with polygons too."""
    wrong, parts = {}, 0
    for code, geom in zip(boundaries.codes, boundaries.geoms, strict=True):
        for n, part in enumerate(getattr(geom, "geoms", [geom])):
            parts += 1
            point = part.representative_point()
            match = locator.locate(point.y, point.x)
            covering = boundaries.covering(point.y, point.x)
            ok = (
                match is not None
                and match.method == "inside"
                and match.kommunenummer == covering[0]
                and set(match.candidates) == set(covering)
                and match.ambiguous == (len(covering) > 1)
            )
            if not ok:
                wrong[f"{code}/{n}"] = (match, covering)
    assert wrong == {}
    assert parts > 1000


def test_oslo_city_hall_is_oslo(locator: MunicipalityLocator):
    assert locator.locate(59.9117, 10.7336) == GeoMatch("0301", "inside", 0.0, False, ("0301",))
    with_circle = locator.locate(59.9117, 10.7336, uncertainty_m=100)
    assert with_circle == GeoMatch("0301", "inside", 0.0, False, ("0301",))


# --- borders -------------------------------------------------------------------------------


def neighbour_border_points(boundaries: Boundaries) -> list[tuple[str, str, float, float]]:
    """(inside, neighbour, lat, lon): a point just inside one of two neighbours, for both
    sides of every shared border, within ~55 m of the border."""
    points = []
    for i, geom in enumerate(boundaries.geoms):
        for j in boundaries.tree.query(geom, predicate="intersects"):
            other = boundaries.geoms[j]
            if j <= i:
                continue
            shared = shapely.line_merge(geom.boundary.intersection(other.boundary))
            lines = [g for g in getattr(shared, "geoms", [shared]) if g.geom_type == "LineString"]
            if not lines:
                continue
            on_border = max(lines, key=lambda g: g.length).interpolate(0.5, normalized=True)
            near = on_border.buffer(0.0005)
            for a, b in ((i, j), (j, i)):
                side = near.intersection(boundaries.geoms[a]).difference(boundaries.geoms[b])
                if side.is_empty:
                    continue
                p = side.representative_point()
                points.append((boundaries.codes[a], boundaries.codes[b], p.y, p.x))
    return points


def test_points_just_inside_each_of_two_neighbours(
    locator: MunicipalityLocator, boundaries: Boundaries
):
    points = neighbour_border_points(boundaries)
    wrong = []
    for inside, neighbour, lat, lon in points:
        covering = boundaries.covering(lat, lon)
        assert neighbour not in covering
        expected = covering[0] if covering else None
        match = locator.locate(lat, lon)
        if match is None or (match.kommunenummer, match.method) != (expected, "inside"):
            wrong.append((inside, neighbour, lat, lon, match))
    assert wrong == []
    assert len(points) > 1400  # ~736 shared borders, both sides


def test_circle_spanning_a_border_is_ambiguous_with_both(
    locator: MunicipalityLocator, boundaries: Boundaries
):
    wrong = []
    for inside, neighbour, lat, lon in neighbour_border_points(boundaries)[::7]:
        if boundaries.covering(lat, lon) != [inside]:
            continue
        match = locator.locate(lat, lon, uncertainty_m=150)
        if (
            match is None
            or match.kommunenummer != inside
            or not match.ambiguous
            or match.candidates[0] != inside
            or neighbour not in match.candidates
        ):
            wrong.append((inside, neighbour, match))
    assert wrong == []


# --- at sea --------------------------------------------------------------------------------


def sea_points(boundaries: Boundaries, offset_deg: float) -> list[tuple[float, float]]:
    """Points a fixed step off coastline vertices, in none of the polygons (seeded, stable)."""
    rng = np.random.default_rng(7)
    points = []
    for geom in boundaries.geoms:
        ring = np.asarray(max(getattr(geom, "geoms", [geom]), key=lambda g: g.area).exterior.coords)
        lon, lat = ring[rng.integers(len(ring))]
        for dlat, dlon in ((1, 0), (-1, 0), (0, 2), (0, -2)):
            p = (lat + dlat * offset_deg, lon + dlon * offset_deg)
            if not boundaries.covering(*p):
                points.append(p)
    return points


def nearest_by_haversine(boundaries: Boundaries, lat: float, lon: float) -> list[tuple[float, str]]:
    window = box(lon - 0.5, lat - 0.25, lon + 0.5, lat + 0.25)
    return sorted(
        (boundary_distance_m(boundaries.geoms[i], lat, lon), boundaries.codes[i])
        for i in boundaries.tree.query(window)
    )


def test_sea_points_near_the_coast_go_to_the_nearest_municipality(
    locator: MunicipalityLocator, boundaries: Boundaries
):
    checked, wrong = 0, []
    for lat, lon in sea_points(boundaries, 0.02):
        ranked = nearest_by_haversine(boundaries, lat, lon)
        best_m, best = ranked[0]
        if best_m > 4_900 or (len(ranked) > 1 and ranked[1][0] - best_m < 40):
            continue  # too close to the limit, or a near tie: covered elsewhere
        checked += 1
        match = locator.locate(lat, lon)
        if (
            match is None
            or (match.kommunenummer, match.method) != (best, "nearest")
            or not best_m - 30 <= match.distance_m <= best_m * 1.005 + 1
        ):
            wrong.append((lat, lon, ranked[:2], match))
    assert wrong == []
    assert checked > 100


def test_far_out_at_sea_or_abroad_is_none(locator: MunicipalityLocator, boundaries: Boundaries):
    checked = 0
    for lat, lon in sea_points(boundaries, 0.15):
        ranked = nearest_by_haversine(boundaries, lat, lon)
        if ranked and ranked[0][0] < 5_100:
            continue
        checked += 1
        assert locator.locate(lat, lon) is None, (lat, lon)
    assert checked > 20
    for lat, lon in ((62.0, 2.0), (59.33, 18.07), (78.22, 15.65), (0.0, 0.0), (-89.9, 170.0)):
        assert locator.locate(lat, lon) is None  # North Sea, Stockholm, Svalbard, …


def test_the_nearest_limit_is_configurable(boundaries: Boundaries):
    for lat, lon in sea_points(boundaries, 0.02)[:40]:
        best_m = nearest_by_haversine(boundaries, lat, lon)[0][0]
        if 1_000 < best_m < 4_500:
            break
    else:
        pytest.fail("no sea point between 1 and 4.5 km from land")
    near = MunicipalityLocator(
        zip(boundaries.codes, boundaries.geoms, strict=True), max_nearest_m=best_m + 100
    )
    strict = MunicipalityLocator(
        zip(boundaries.codes, boundaries.geoms, strict=True), max_nearest_m=best_m - 100
    )
    assert near.locate(lat, lon) is not None
    assert strict.locate(lat, lon) is None


# --- the rules on two squares --------------------------------------------------------------

WEST, EAST = "1001", "1002"


@pytest.fixture(scope="module")
def squares() -> MunicipalityLocator:
    """WEST covers lon 10.0-10.1, EAST 10.1-10.2, both lat 60.0-60.1 (shared border 10.1)."""
    return MunicipalityLocator(
        [(EAST, box(10.1, 60.0, 10.2, 60.1)), (WEST, box(10.0, 60.0, 10.1, 60.1))],
        max_nearest_m=5_000,
        max_uncertainty_m=20_000,
    )


def test_a_point_on_the_shared_border_is_ambiguous(squares: MunicipalityLocator):
    assert squares.locate(60.05, 10.1) == GeoMatch(WEST, "inside", 0.0, True, (WEST, EAST))


def test_uncertainty_reaching_the_neighbour_makes_it_a_candidate(squares: MunicipalityLocator):
    lat, lon = 60.05, 10.099
    to_border = float(haversine_m(lat, lon, np.array([lat]), np.array([10.1]))[0])  # ~55.6 m
    alone = squares.locate(lat, lon, uncertainty_m=to_border - 1)
    both = squares.locate(lat, lon, uncertainty_m=to_border + 1)
    assert alone == GeoMatch(WEST, "inside", 0.0, False, (WEST,))
    assert both == GeoMatch(WEST, "inside", 0.0, True, (WEST, EAST))


def test_nearest_at_sea_with_distance_and_circle(squares: MunicipalityLocator):
    lat, lon = 60.05, 10.25
    to_east, to_west = (
        float(haversine_m(lat, lon, np.array([lat]), np.array([x]))[0]) for x in (10.2, 10.1)
    )
    match = squares.locate(lat, lon)
    assert match is not None
    assert (match.kommunenummer, match.method, match.ambiguous) == (EAST, "nearest", False)
    assert match.distance_m == pytest.approx(to_east, rel=1e-3)
    # the circle grown to the coast: WEST counts once it lies within distance + radius
    short = squares.locate(lat, lon, uncertainty_m=to_west - to_east - 10)
    reach = squares.locate(lat, lon, uncertainty_m=to_west - to_east + 10)
    assert short is not None and short.candidates == (EAST,)
    assert reach is not None and reach.candidates == (EAST, WEST) and reach.ambiguous
    assert squares.locate(lat, lon + 0.1) is None  # ~8.3 km off: beyond the 5 km limit


def test_a_circle_wider_than_the_limit_is_always_ambiguous(squares: MunicipalityLocator):
    match = squares.locate(60.05, 10.15, uncertainty_m=25_000)
    assert match is not None and match.ambiguous and match.kommunenummer == EAST
    assert squares.locate(60.05, 10.15, uncertainty_m=1_000) == GeoMatch(
        EAST, "inside", 0.0, False, (EAST,)
    )


@pytest.mark.parametrize(
    ("lat", "lon", "radius"),
    [
        (math.nan, 10.0, None),
        (60.0, math.nan, None),
        (90.5, 10.0, None),
        (-91.0, 10.0, None),
        (60.0, 180.5, None),
        (math.inf, 10.0, None),
        (60.0, 10.0, -1.0),
        (60.0, 10.0, math.nan),
        (60.0, 10.0, math.inf),
    ],
)
def test_invalid_input_raises_value_error(
    squares: MunicipalityLocator, lat: float, lon: float, radius: float | None
):
    with pytest.raises(ValueError):
        squares.locate(lat, lon, radius)


def test_the_locator_is_immutable(squares: MunicipalityLocator):
    with pytest.raises(AttributeError):
        squares._max_nearest_m = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del squares._tree


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b'{"features": [{"properties": {"kommunenummer": 301}, "geometry": null}]}',
        b'{"features": [{"properties": {}, "geometry": null}]}',
        b'{"features": [{"properties": {"kommunenummer": "0301"}, "geometry": '
        b'{"type": "Point", "coordinates": [10.7, 59.9]}}]}',
        # a bow-tie: self-intersecting, invalid
        b'{"features": [{"properties": {"kommunenummer": "0301"}, "geometry": '
        b'{"type": "Polygon", "coordinates": [[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}]}',
    ],
)
def test_malformed_boundary_files_are_refused(document: bytes):
    with pytest.raises(ValueError):
        MunicipalityLocator.from_geojson(document)


def test_duplicate_municipality_numbers_are_refused():
    with pytest.raises(ValueError, match="0301"):
        MunicipalityLocator([("0301", box(0, 0, 1, 1)), ("0301", box(1, 0, 2, 1))])
