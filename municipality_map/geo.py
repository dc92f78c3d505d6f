"""Point -> municipality: which kommune a WGS 84 position lies in.

:class:`MunicipalityLocator` holds the 357 municipality polygons (``kommuner_2024_S.geojson``,
© Kartverket, CC BY 4.0, bundled in ``municipality_map/data/``; see ``NOTICE.md`` there), every
one prepared (GEOS indexes it for point-in-polygon), a grid of 0.25° cells naming the polygons
that touch each cell, and a shapely 2 ``STRtree`` for the distance searches. It is built once at
start-up (about 0.1 s) and never changes; :meth:`MunicipalityLocator.locate` does no I/O.

How a position is answered:

1. **Inside.** The polygons of the point's grid cell are tested with their prepared geometry;
   a point on a shared border or in one of the few slivers where two simplified polygons
   overlap lies in several: the lowest municipality number is chosen and the match is marked
   ambiguous.
2. **Nearest.** The boundaries are simplified and clipped to the coastline, so a point at sea, on
   a skerry or in a sliver between two simplified neighbours lies in none: the nearest polygon
   within ``max_nearest_m`` (default 5 km) is chosen. Farther out the answer is None.
3. **Uncertainty.** With a circle (RFC 5491 Circle: centre + radius), the municipality found for
   the centre is the answer; every other municipality within ``distance_m + radius`` of the
   centre (for "inside": the ones the circle reaches) is a candidate, and any candidate makes
   the match ambiguous. A circle wider than ``max_uncertainty_m`` (default 20 km) is always
   ambiguous and only the municipalities within that distance are listed, which bounds the
   lookup time.

Distances are metres on a sphere of radius 6,371,008.8 m (IUGG mean radius) in a local
equirectangular projection centred on the query point: x = Δlon·cos(lat)·R, y = Δlat·R (both in
radians). Its error grows with the east-west distance and the latitude: at most about 0.2 % at
5 km and 1 % at 20 km at 70° N, well within the accuracy of the simplified boundaries.

Invalid input (latitude outside [-90, 90], longitude outside [-180, 180], NaN or infinite
values, a negative or non-finite radius) raises :class:`ValueError`: the caller (the PIDF-LO
parser) must not hand over garbage. A valid point that is neither in nor near a municipality
(abroad, far out at sea, Svalbard, which has no polygon here) gives None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, NoReturn

import numpy as np
import shapely
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

BUNDLED_GEOJSON = "kommuner_2024_S.geojson"
"""The bundled boundary file in ``municipality_map/data/``."""

EARTH_RADIUS_M = 6_371_008.8
"""IUGG mean Earth radius, for the local equirectangular distances."""

DEFAULT_MAX_NEAREST_M = 5_000.0
"""How far from the nearest polygon a point may lie and still be placed in it."""

DEFAULT_MAX_UNCERTAINTY_M = 20_000.0
"""Radius above which a circle is ambiguous without listing every municipality it reaches."""

_GRID_STEP_DEG = 0.25  # cell of the point -> candidate polygons grid (~28 x 9-14 km)
_M_PER_DEGREE = math.pi / 180.0 * EARTH_RADIUS_M
_ORIGIN = shapely.Point(0.0, 0.0)

Method = Literal["inside", "nearest"]


@dataclass(frozen=True, slots=True)
class GeoMatch:
    """The municipality a position was placed in, and how sure that is."""

    kommunenummer: str
    """The chosen municipality (2024 number, four digits with the leading zero)."""
    method: Method
    """``"inside"``: the point lies in its polygon; ``"nearest"``: in none, this one is nearest."""
    distance_m: float
    """Metres from the point to the chosen polygon: 0.0 for ``"inside"``."""
    ambiguous: bool
    """True when the position may as well be in another municipality (see ``candidates``)."""
    candidates: tuple[str, ...]
    """Every municipality the position may be in: the chosen one first, then the others by
    distance (ties by number). Just ``(kommunenummer,)`` when the match is not ambiguous; for
    a circle wider than ``max_uncertainty_m`` only those within that distance."""


class MunicipalityLocator:
    """An immutable spatial index of municipality polygons: ``locate(lat, lon)`` -> kommune."""

    __slots__ = ("_codes", "_geoms", "_grid", "_max_nearest_m", "_max_uncertainty_m", "_tree")

    _codes: tuple[str, ...]
    _geoms: Any  # numpy object array of prepared shapely (Multi)Polygons, parallel to _codes
    _grid: _CellIndex
    _max_nearest_m: float
    _max_uncertainty_m: float
    _tree: shapely.STRtree

    def __init__(
        self,
        polygons: Iterable[tuple[str, BaseGeometry]],
        *,
        max_nearest_m: float = DEFAULT_MAX_NEAREST_M,
        max_uncertainty_m: float = DEFAULT_MAX_UNCERTAINTY_M,
    ) -> None:
        """Index ``(kommunenummer, polygon)`` pairs, lon/lat WGS 84 (GeoJSON axis order).

        Raises ValueError for a duplicate number, a geometry that is not a valid non-empty
        (Multi)Polygon, or a negative distance setting.
        """
        for name, value in (
            ("max_nearest_m", max_nearest_m),
            ("max_uncertainty_m", max_uncertainty_m),
        ):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite distance >= 0, got {value!r}")
        codes: list[str] = []
        geoms: list[BaseGeometry] = []
        for code, geom in polygons:
            if code in codes:
                raise ValueError(f"municipality {code} has more than one geometry")
            if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
                raise ValueError(
                    f"municipality {code}: expected a (Multi)Polygon, got "
                    f"{geom.geom_type}{' (empty)' if geom.is_empty else ''}"
                )
            if not geom.is_valid:
                raise ValueError(
                    f"municipality {code}: invalid geometry ({shapely.is_valid_reason(geom)})"
                )
            codes.append(code)
            geoms.append(geom)
        array = np.empty(len(geoms), dtype=object)
        array[:] = geoms
        shapely.prepare(array)
        tree = shapely.STRtree(array)
        # object.__setattr__: our own __setattr__ refuses every assignment.
        object.__setattr__(self, "_codes", tuple(codes))
        object.__setattr__(self, "_geoms", array)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_grid", _CellIndex(array, tree, codes))
        object.__setattr__(self, "_max_nearest_m", float(max_nearest_m))
        object.__setattr__(self, "_max_uncertainty_m", float(max_uncertainty_m))

    @classmethod
    def from_geojson(
        cls,
        data: bytes | str,
        *,
        max_nearest_m: float = DEFAULT_MAX_NEAREST_M,
        max_uncertainty_m: float = DEFAULT_MAX_UNCERTAINTY_M,
    ) -> MunicipalityLocator:
        """Build from a GeoJSON FeatureCollection whose features carry ``kommunenummer``.

        Raises ValueError for malformed JSON, a feature without a four-digit
        ``kommunenummer`` property or a geometry that is not a valid (Multi)Polygon.
        """
        try:
            document = json.loads(data)
            features = document["features"]
            polygons = [_feature_polygon(feature) for feature in features]
        except (KeyError, TypeError, json.JSONDecodeError, ShapelyError) as exc:
            raise ValueError(f"not a municipality FeatureCollection: {exc!r}") from exc
        return cls(polygons, max_nearest_m=max_nearest_m, max_uncertainty_m=max_uncertainty_m)

    @classmethod
    def bundled(
        cls,
        *,
        max_nearest_m: float = DEFAULT_MAX_NEAREST_M,
        max_uncertainty_m: float = DEFAULT_MAX_UNCERTAINTY_M,
    ) -> MunicipalityLocator:
        """The 357 municipalities of 2024 from the bundled ``kommuner_2024_S.geojson``.

        Reads, parses and indexes the file (about 0.1 s): once at start-up, never per call.
        """
        data = resources.files(__package__).joinpath("data", BUNDLED_GEOJSON).read_bytes()
        return cls.from_geojson(
            data, max_nearest_m=max_nearest_m, max_uncertainty_m=max_uncertainty_m
        )

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def kommunenummer(self) -> tuple[str, ...]:
        """The indexed municipality numbers, in file order."""
        return self._codes

    @property
    def max_nearest_m(self) -> float:
        """How far (metres) a point may lie outside every polygon and still be placed."""
        return self._max_nearest_m

    @property
    def max_uncertainty_m(self) -> float:
        """Circles wider than this (metres) are ambiguous without a full candidate list."""
        return self._max_uncertainty_m

    def locate(self, lat: float, lon: float, uncertainty_m: float | None = None) -> GeoMatch | None:
        """The municipality of WGS 84 ``lat``/``lon`` (degrees), or None if none is near.

        ``uncertainty_m`` is the radius of the caller's uncertainty circle (None or 0: a
        point). Raises ValueError for coordinates or a radius that are not valid numbers in
        range (see the module docstring).
        """
        _check_position(lat, lon, uncertainty_m)
        radius = uncertainty_m or 0.0
        wide = radius > self._max_uncertainty_m
        radius = min(radius, self._max_uncertainty_m)
        inside = self._grid.covering(lat, lon)
        method: Method
        if inside:
            chosen, distance, method = inside[0], 0.0, "inside"
            near: list[tuple[float, int]] = [(0.0, i) for i in inside]
            if radius > 0:
                near += self._within(lat, lon, radius, inside)
        else:
            near = self._within(lat, lon, self._max_nearest_m, ())
            if not near:
                return None
            distance, chosen = min(near, key=lambda item: (item[0], self._codes[item[1]]))
            method = "nearest"
            if distance + radius > self._max_nearest_m:
                near = self._within(lat, lon, distance + radius, ())
        reach = distance + radius
        others: dict[int, float] = {}
        for d, i in near:
            if i != chosen and d <= reach and d < others.get(i, math.inf):
                others[i] = d
        ranked = sorted(others, key=lambda i: (others[i], self._codes[i]))
        candidates = (self._codes[chosen], *(self._codes[i] for i in ranked))
        return GeoMatch(
            kommunenummer=self._codes[chosen],
            method=method,
            distance_m=distance,
            ambiguous=len(candidates) > 1 or wide,
            candidates=candidates,
        )

    def _within(
        self, lat: float, lon: float, radius_m: float, skip: Collection[int]
    ) -> list[tuple[float, int]]:
        """(distance in metres, index) of every polygon within ``radius_m`` of the point,
        except those in ``skip``."""
        kx = _M_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-9)
        dx = min(radius_m / kx, 360.0)
        dy = radius_m / _M_PER_DEGREE
        window = (lon - dx, lat - dy, lon + dx, lat + dy)
        near_box = self._tree.query(shapely.box(*window))
        if not len(near_box):
            return []
        # Metres >= kx * degrees (kx <= the metres per degree of latitude), so a polygon
        # farther than radius_m / kx degrees is farther than radius_m metres: a cheap
        # test on the prepared polygons before the exact distance.
        maybe = near_box[shapely.dwithin(self._geoms[near_box], shapely.Point(lon, lat), dx)]
        if skip:
            maybe = np.array([i for i in maybe.tolist() if i not in skip], dtype=np.intp)
        if not len(maybe):
            return []
        distances = _distances_m(self._geoms[maybe], lat, lon, window, kx)
        return [
            (distance, i)
            for distance, i in zip(distances.tolist(), maybe.tolist(), strict=True)
            if distance <= radius_m
        ]


class _CellIndex:
    """A fixed grid of cells over the polygons' extent: cell -> the polygons that touch it.

    The candidates of a point are one dict access away (shapely's STRtree needs a Point
    object per query, which costs more than the point-in-polygon test itself), and the test
    runs on the cell's prepared polygons at once. Candidates are kept in municipality number
    order, so the first polygon that covers a point has the lowest number.
    """

    __slots__ = ("_cells", "_columns", "_rows", "_south", "_west")

    def __init__(self, geoms: Any, tree: shapely.STRtree, codes: Sequence[str]) -> None:
        self._cells: dict[int, tuple[Any, Any]] = {}
        bounds: list[float] = shapely.total_bounds(geoms).tolist() if len(geoms) else [0.0] * 4
        self._west, self._south, east, north = bounds
        self._columns = max(1, math.ceil((east - self._west) / _GRID_STEP_DEG))
        self._rows = max(1, math.ceil((north - self._south) / _GRID_STEP_DEG))
        if not len(geoms):
            return
        cols, rows = np.meshgrid(np.arange(self._columns), np.arange(self._rows), indexing="ij")
        west = self._west + cols.ravel() * _GRID_STEP_DEG
        south = self._south + rows.ravel() * _GRID_STEP_DEG
        cells = shapely.box(west, south, west + _GRID_STEP_DEG, south + _GRID_STEP_DEG)
        cell_of, polygon = tree.query(cells, predicate="intersects")
        members: dict[int, list[int]] = {}
        for cell, index in zip(cell_of.tolist(), polygon.tolist(), strict=True):
            members.setdefault(cell, []).append(index)
        for cell, indices in members.items():
            ordered = np.array(sorted(indices, key=codes.__getitem__), dtype=np.intp)
            self._cells[cell] = (ordered, geoms[ordered])
        # GEOS builds a prepared polygon's point-in-polygon index on first use: do it now
        # (a point inside each envelope), not on the first call from that municipality.
        centre_x, centre_y = shapely.get_coordinates(shapely.centroid(shapely.envelope(geoms))).T
        shapely.intersects_xy(geoms, centre_x, centre_y)

    def covering(self, lat: float, lon: float) -> list[int]:
        """Indices of the polygons that cover (contain or touch) the point, by number."""
        column = math.floor((lon - self._west) / _GRID_STEP_DEG)
        row = math.floor((lat - self._south) / _GRID_STEP_DEG)
        if not (0 <= column < self._columns and 0 <= row < self._rows):
            return []
        entry = self._cells.get(column * self._rows + row)
        if entry is None:
            return []
        indices, geoms = entry
        hits = shapely.intersects_xy(geoms, lon, lat)
        return indices[hits].tolist() if hits.any() else []


def _distances_m(
    geoms: Any, lat: float, lon: float, window: tuple[float, float, float, float], kx: float
) -> Any:
    """Metres from the point to each polygon (local equirectangular); NaN outside ``window``.

    Only the parts of the polygons inside the search window are projected, so the cost
    follows the window, not the size of the municipalities.
    """
    clipped = shapely.clip_by_rect(geoms, *window)
    scale = np.array((kx, _M_PER_DEGREE))
    offset = np.array((lon, lat))
    local = shapely.transform(clipped, lambda xy: (xy - offset) * scale)
    return shapely.distance(local, _ORIGIN)


def _check_position(lat: float, lon: float, uncertainty_m: float | None) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"latitude must be a number in [-90, 90], got {lat!r}")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"longitude must be a number in [-180, 180], got {lon!r}")
    if uncertainty_m is not None and not (math.isfinite(uncertainty_m) and uncertainty_m >= 0):
        raise ValueError(f"uncertainty_m must be a finite radius >= 0, got {uncertainty_m!r}")


def _feature_polygon(feature: Mapping[str, Any]) -> tuple[str, BaseGeometry]:
    code = feature["properties"]["kommunenummer"]
    if not (isinstance(code, str) and len(code) == 4 and code.isascii() and code.isdigit()):
        raise ValueError(f"kommunenummer must be four digits as a string, got {code!r}")
    geometry = feature["geometry"]
    if not isinstance(geometry, dict):
        raise ValueError(f"municipality {code}: feature without geometry")
    return code, shapely.geometry.shape(geometry)
