#!/usr/bin/env python3
"""Draws the status page's world map (slice-service/src/web/assets/world.svg).

Provenance and licence: the land outlines are Natural Earth's 1:110m "Admin 0 -
Countries" (naturalearthdata.com), which is in the public domain. The copy read here
is the `naturalearth_lowres` shapefile that GeoPandas ships, taken from Debian
bookworm's package python3-geopandas 0.12.2-1 (the archive is reachable where the
internet is not):

    apt-get download python3-geopandas
    dpkg-deb -x python3-geopandas_*.deb geopandas-deb
    scripts/world-map.py \
        geopandas-deb/usr/lib/python3/dist-packages/geopandas/datasets/naturalearth_lowres/naturalearth_lowres.shp \
        > slice-service/src/web/assets/world.svg

Standard library only: the shapefile format (ESRI whitepaper, 1998) is a 100-byte
header and then records of little-endian doubles; only polygon records (type 5) are
read. The projection is equirectangular and must match slice-service/src/web/map.rs:
x = (lon + 180) * 1000 / 360, y = (90 - lat) * 500 / 180, in a 1000 x 500 view box.
Rings are simplified (Douglas-Peucker, TOLERANCE view-box units) and rings that come
out smaller than a few units are dropped, which keeps the file near 60 KB.
"""

import struct
import sys

WIDTH, HEIGHT = 1000.0, 500.0
TOLERANCE = 0.6
MIN_EXTENT = 1.5


def project(lon, lat):
    return ((lon + 180.0) * WIDTH / 360.0, (90.0 - lat) * HEIGHT / 180.0)


def read_polygons(path):
    """Yields each polygon record as a list of rings, each a list of (lon, lat)."""
    with open(path, "rb") as f:
        data = f.read()
    code, = struct.unpack(">i", data[0:4])
    if code != 9994:
        sys.exit(f"{path}: not a shapefile (file code {code}, expected 9994)")
    pos = 100
    while pos + 8 <= len(data):
        _number, words = struct.unpack(">ii", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + words * 2]
        pos += 8 + words * 2
        shape_type, = struct.unpack("<i", body[0:4])
        if shape_type != 5:
            continue
        num_parts, num_points = struct.unpack("<ii", body[36:44])
        parts = list(struct.unpack(f"<{num_parts}i", body[44:44 + 4 * num_parts]))
        at = 44 + 4 * num_parts
        points = [struct.unpack("<dd", body[at + 16 * i:at + 16 * i + 16]) for i in range(num_points)]
        parts.append(num_points)
        yield [points[parts[i]:parts[i + 1]] for i in range(num_parts)]


def simplify(points, tolerance):
    """Douglas-Peucker on a closed ring, iterative so large rings do not recurse deeply."""
    if len(points) < 4:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        (x1, y1), (x2, y2) = points[first], points[last]
        dx, dy = x2 - x1, y2 - y1
        norm = (dx * dx + dy * dy) ** 0.5
        worst, worst_at = 0.0, None
        for i in range(first + 1, last):
            px, py = points[i]
            if norm == 0:
                d = ((px - x1) ** 2 + (py - y1) ** 2) ** 0.5
            else:
                d = abs(dy * px - dx * py + x2 * y1 - y2 * x1) / norm
            if d > worst:
                worst, worst_at = d, i
        if worst_at is not None and worst > tolerance:
            keep[worst_at] = True
            stack.append((first, worst_at))
            stack.append((worst_at, last))
    return [p for p, k in zip(points, keep) if k]


def ring_path(ring):
    pts = simplify([project(lon, lat) for lon, lat in ring], TOLERANCE)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    if len(pts) < 4 or (max(xs) - min(xs) < MIN_EXTENT and max(ys) - min(ys) < MIN_EXTENT):
        return ""
    out = [f"M{pts[0][0]:.1f} {pts[0][1]:.1f}"]
    px, py = pts[0]
    for x, y in pts[1:-1]:
        # Relative moves are shorter than absolute ones.
        out.append(f"l{x - px:.1f} {y - py:.1f}")
        px, py = x, y
    out.append("z")
    return "".join(out).replace(".0 ", " ").replace(".0l", "l").replace(".0z", "z")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: world-map.py naturalearth_lowres.shp > world.svg")
    paths = []
    for polygon in read_polygons(sys.argv[1]):
        d = "".join(ring_path(ring) for ring in polygon)
        if d:
            paths.append(d)
    print('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000 500" id="world-land">')
    print("<!-- Land: Natural Earth 1:110m Admin 0 - Countries (public domain, naturalearthdata.com),")
    print("     from the naturalearth_lowres shapefile in Debian bookworm's python3-geopandas 0.12.2-1;")
    print("     equirectangular, simplified by scripts/world-map.py. -->")
    # Presentation attributes, not a style sheet: the page's CSP allows no inline styles.
    print('<g fill="#c9d3c0" stroke="#f4f7fa" stroke-width="0.4" stroke-linejoin="round">')
    for d in paths:
        print(f'<path d="{d}"/>')
    print("</g>")
    print("</svg>")


if __name__ == "__main__":
    main()
