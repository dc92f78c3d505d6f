"""Plane geometry for PIDF-LO shapes: a polygon's centroid, an arc band's centroid.

Positions are WGS 84 (lat, lon) degrees; the work is done in metres on a plane tangent at a
reference point (equirectangular: x east, y north). That is accurate to well under a percent
for shapes of a few tens of kilometres, which is what a network's location estimate is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG)."""


def _to_metres(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    d_lon = (lon - lon0 + 180.0) % 360.0 - 180.0  # across the antimeridian the short way
    x = math.radians(d_lon) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return x, y


def _from_metres(lat0: float, lon0: float, x: float, y: float) -> tuple[float, float]:
    lat = lat0 + math.degrees(y / EARTH_RADIUS_M)
    cos_lat0 = max(math.cos(math.radians(lat0)), 1e-9)
    lon = lon0 + math.degrees(x / (EARTH_RADIUS_M * cos_lat0))
    lon = (lon + 180.0) % 360.0 - 180.0
    return max(-90.0, min(90.0, lat)), lon


def polygon_centroid(ring: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Area centroid of a simple polygon given as (lat, lon) vertices, and the distance in
    metres from it to the farthest vertex (a polygon is reduced to its centroid).

    Computed in a plane tangent at the first vertex; a degenerate (zero-area) ring falls back
    to the mean of its vertices.
    """
    lat0, lon0 = ring[0]
    xy = [_to_metres(lat0, lon0, lat, lon) for lat, lon in ring]
    area2 = cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True):
        cross = x1 * y2 - x2 * y1
        area2 += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    if abs(area2) > 1e-6:
        cx, cy = cx / (3.0 * area2), cy / (3.0 * area2)
    else:
        cx, cy = sum(p[0] for p in xy) / len(xy), sum(p[1] for p in xy) / len(xy)
    radius = max(math.hypot(x - cx, y - cy) for x, y in xy)
    lat, lon = _from_metres(lat0, lon0, cx, cy)
    return lat, lon, radius


def arc_band_centroid(lat: float, lon: float, inner_m: float, outer_m: float, start_rad: float,
                      opening_rad: float) -> tuple[float, float, float]:
    """Centroid of an arc band (RFC 5491 §5.2: angles clockwise from north) and the distance
    from it to the band's farthest point.

    The centroid of an annular sector lies on its bisector at
    ``2/3 * (R**3 - r**3)/(R**2 - r**2) * sin(a/2)/(a/2)`` from the centre (``a`` the opening
    angle, ``r``/``R`` the inner/outer radius).
    """
    half = opening_rad / 2.0
    if outer_m - inner_m > 1e-9:
        mean_r = (2.0 / 3.0) * (outer_m**3 - inner_m**3) / (outer_m**2 - inner_m**2)
    else:
        mean_r = outer_m
    distance = mean_r * math.sin(half) / half
    bearing = start_rad + half
    cx, cy = distance * math.sin(bearing), distance * math.cos(bearing)
    # Farthest point of the band from its centroid lies on one of the two arcs: sample them.
    steps = 16
    radius = 0.0
    for i in range(steps + 1):
        theta = start_rad + opening_rad * i / steps
        for r in (inner_m, outer_m):
            radius = max(radius, math.hypot(r * math.sin(theta) - cx, r * math.cos(theta) - cy))
    c_lat, c_lon = _from_metres(lat, lon, cx, cy)
    return c_lat, c_lon, radius
