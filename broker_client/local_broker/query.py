"""The NGSI-LD query language (``q``) and geo-queries, compiled into predicates over entities.

q grammar handled: terms ``attr``, ``!attr``, ``attr<op>value`` with ``== != < <= > >= ~= !~=``;
values: numbers, booleans, quoted strings, unquoted date-times / URIs, ranges ``a..b``, lists
``a,b``; ``;`` = AND (binds tighter), ``|`` = OR, parentheses. Paths: ``attr.sub`` follows a
sub-attribute (or falls back to a member of a JSON-object value), ``attr[key]`` a member of the
value, and ``attr.observedAt`` / ``.unitCode`` / ``.datasetId`` / ``.createdAt`` / ``.modifiedAt``
the attribute's own metadata.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from .contexts import CompiledContext
from .errors import NgsiError, bad_request
from .expr import BoolParser, read_until
from .model import Entity, _check_geometry
from .request import nested_deeper_than
from .timeutil import format_datetime, parse_datetime
from .userregex import UserRegex, compile_user_regex

Predicate = Callable[[Entity], bool]

_META_MEMBERS = {"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"}
_MISSING = object()


class _Unquoted(str):
    """An unquoted q value (date-time, URI or bare word)."""


def _q_error(detail: str) -> Exception:
    return bad_request("Invalid Q-Filter", detail)


class _Parser(BoolParser[Entity]):
    """q: atoms are ``attr``, ``!attr`` and ``attr<op>value``; OR is ``|`` (``,`` lists values)."""

    def __init__(self, text: str, ctx: CompiledContext) -> None:
        super().__init__(text, or_chars="|", error=_q_error, skip_spaces=True,
                         missing_paren="missing ')' in q")
        self.ctx = ctx

    def parse_q(self) -> Predicate:
        if not self.text.strip():
            raise _q_error("empty q")
        return self.parse(_Parser.parse_term, trailing=lambda rest: f"unexpected '{rest}' in q")

    def parse_term(self) -> Predicate:
        negate = False
        if self.peek() == "!" and not self.text.startswith("!=", self.pos) and not self.text.startswith("!~=", self.pos):
            negate = True
            self.pos += 1
        path = self.parse_path()
        self.skip_spaces()
        op = None
        for candidate in ("==", "!=", ">=", "<=", "!~=", "~=", ">", "<"):
            if self.text.startswith(candidate, self.pos):
                op = candidate
                self.pos += len(candidate)
                break
        if op is None:
            self.skip_spaces()
            getter = path
            if negate:
                return lambda e: not _exists(getter(e))
            return lambda e: _exists(getter(e))
        if negate:
            raise _q_error("'!' only negates an attribute name")
        if op in ("~=", "!~="):
            raw = self.read_pattern()
            regex = compile_user_regex(raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw,
                                       title="Invalid Q-Filter")
            if op == "~=":
                return lambda e: _match_pattern(path(e), regex)

            def not_matching(e: Entity) -> bool:
                values = path(e)
                return bool(values) and not _match_pattern(values, regex)
            return not_matching
        raw = self.read_value()
        target = _parse_target(raw)
        if op in (">", "<", ">=", "<=") and not isinstance(target, _Scalar):
            raise _q_error(f"operator {op} needs a single value")
        compare = _COMPARATORS[op]
        return lambda e: compare(path(e), target)

    def parse_path(self) -> Callable[[Entity], list]:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=!<>~;|()" :
            if self.text[self.pos] == '"':
                raise _q_error("attribute names cannot be quoted")
            self.pos += 1
        raw = self.text[start:self.pos].strip()
        if not raw:
            raise _q_error(f"attribute name missing at position {start}")
        return _compile_path(raw, self.ctx)

    def read_value(self) -> str:
        start = self.pos
        in_quotes = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if in_quotes:
                if ch == "\\":
                    self.pos += 1
                elif ch == '"':
                    in_quotes = False
            elif ch == '"':
                in_quotes = True
            elif ch in ";|)":
                break
            self.pos += 1
        if in_quotes:
            raise _q_error("unterminated string in q")
        value = self.text[start:self.pos].strip()
        if not value:
            raise _q_error("value missing in q")
        return value

    def read_pattern(self) -> str:
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            elif ch == ";" and depth == 0:
                break
            self.pos += 1
        value = self.text[start:self.pos]
        if not value:
            raise _q_error("pattern missing in q")
        return value


class _Scalar:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Range:
    __slots__ = ("low", "high")

    def __init__(self, low: Any, high: Any) -> None:
        self.low, self.high = low, high


class _Choice:
    __slots__ = ("values",)

    def __init__(self, values: list) -> None:
        self.values = values


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, buf, in_quotes, i = [], [], False, 0
    while i < len(text):
        if text[i] == "\\" and in_quotes:
            buf.append(text[i:i + 2])
            i += 2
            continue
        if text[i] == '"':
            in_quotes = not in_quotes
        if not in_quotes and text.startswith(sep, i):
            parts.append("".join(buf))
            buf = []
            i += len(sep)
            continue
        buf.append(text[i])
        i += 1
    parts.append("".join(buf))
    return parts


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        try:
            return json.loads(raw)
        except ValueError:
            return raw[1:-1]
    if raw == "true":
        return True
    if raw == "false":
        return False
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
        if math.isfinite(number):
            return number
    except ValueError:
        pass
    if not raw or raw[0] in "=<>~!":
        raise _q_error(f"invalid value in q: '{raw}'")
    return _Unquoted(raw)


def _parse_target(raw: str) -> Any:
    ranges = _split_outside_quotes(raw, "..")
    if len(ranges) == 2:
        return _Range(_scalar(ranges[0]), _scalar(ranges[1]))
    if len(ranges) > 2:
        raise _q_error(f"invalid range {raw}")
    choices = _split_outside_quotes(raw, ",")
    if len(choices) > 1:
        return _Choice([_scalar(c) for c in choices])
    return _Scalar(_scalar(raw))


_PATH_TOKEN = re.compile(r"\[([^\]]*)\]")


def _compile_path(raw: str, ctx: CompiledContext) -> Callable[[Entity], list]:
    """A getter returning the candidate values the path reaches in an entity."""
    bracket = raw.find("[")
    head, tail = (raw, "") if bracket < 0 else (raw[:bracket], raw[bracket:])
    if "://" in head:
        dotted = [head]
    else:
        dotted = head.split(".")
    if not all(dotted):
        raise _q_error(f"invalid attribute path {raw}")
    keys = _PATH_TOKEN.findall(tail)
    if _PATH_TOKEN.sub("", tail):
        raise _q_error(f"invalid attribute path {raw}")
    attr_iri = ctx.expand(dotted[0])
    steps: list[tuple[str, str]] = []
    for part in dotted[1:]:
        steps.append(("meta", part) if part in _META_MEMBERS else ("sub", part))
    sub_iris = {part: ctx.expand(part) for kind, part in steps if kind == "sub"}

    def getter(entity: Entity) -> list:
        instances = entity.attrs.get(attr_iri)
        if not instances:
            return []
        results = []
        for inst in instances:
            node: Any = inst
            is_attr = True
            for kind, part in steps:
                if node is _MISSING:
                    break
                if is_attr:
                    if kind == "meta":
                        node = node.get(part, _MISSING)
                        if part in ("createdAt", "modifiedAt") and node is not _MISSING:
                            node = format_datetime(node)
                        is_attr = False
                        continue
                    subs = node.get("subs")
                    if subs and sub_iris[part] in subs:
                        node = subs[sub_iris[part]]
                        continue
                    node = _attr_value(node)
                    is_attr = False
                if isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    node = _MISSING
            if node is _MISSING:
                continue
            if is_attr:
                node = _attr_value(node)
            for key in keys:
                if isinstance(node, dict) and key in node:
                    node = node[key]
                else:
                    node = _MISSING
                    break
            if node is not _MISSING:
                results.append(node)
        return results

    return getter


def _attr_value(inst: dict) -> Any:
    atype = inst.get("type")
    if atype == "Relationship":
        return inst.get("object", _MISSING)
    if atype == "LanguageProperty":
        lang_map = inst.get("languageMap") or {}
        texts: list = []
        for v in lang_map.values():
            texts.extend(v if isinstance(v, list) else [v])
        return texts
    if atype == "VocabProperty":
        return inst.get("vocab", _MISSING)
    if atype == "JsonProperty":
        return inst.get("json", _MISSING)
    if atype == "ListProperty":
        return inst.get("valueList", _MISSING)
    if atype == "ListRelationship":
        return [o["object"] for o in inst.get("objectList", [])]
    value = inst.get("value", _MISSING)
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def _exists(values: list) -> bool:
    return bool(values)


def _flatten(values: list) -> list:
    out = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def _ordered(a: Any, b: Any) -> tuple[Any, Any] | None:
    """Two values made comparable, or None when their kinds differ."""
    if isinstance(a, bool) or isinstance(b, bool):
        return (a, b) if isinstance(a, bool) and isinstance(b, bool) else None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        if isinstance(b, _Unquoted) or isinstance(a, _Unquoted):
            ta, tb = parse_datetime(a), parse_datetime(b)
            if ta is not None and tb is not None:
                return ta, tb
        return str(a), str(b)
    return None


def _eq(a: Any, b: Any) -> bool:
    pair = _ordered(a, b)
    if pair is None:
        return a == b and type(a) is type(b)
    return pair[0] == pair[1]


def _matches_target(value: Any, target: Any) -> bool:
    if isinstance(target, _Scalar):
        return _eq(value, target.value)
    if isinstance(target, _Choice):
        return any(_eq(value, t) for t in target.values)
    low = _ordered(value, target.low)
    high = _ordered(value, target.high)
    return low is not None and high is not None and low[1] <= low[0] and high[0] <= high[1]


def _cmp_eq(values: list, target: Any) -> bool:
    for v in values:
        if isinstance(v, list):
            if isinstance(target, _Scalar) and isinstance(target.value, list) and v == target.value:
                return True
            if any(_matches_target(x, target) for x in v):
                return True
        elif _matches_target(v, target):
            return True
    return False


def _cmp_ne(values: list, target: Any) -> bool:
    return bool(values) and not _cmp_eq(values, target)


def _make_ordered(check: Callable[[Any, Any], bool]) -> Callable[[list, Any], bool]:
    def compare(values: list, target: Any) -> bool:
        for v in _flatten(values):
            pair = _ordered(v, target.value)
            if pair is not None and check(pair[0], pair[1]):
                return True
        return False
    return compare


_COMPARATORS: dict[str, Callable[[list, Any], bool]] = {
    "==": _cmp_eq,
    "!=": _cmp_ne,
    ">": _make_ordered(lambda a, b: a > b),
    "<": _make_ordered(lambda a, b: a < b),
    ">=": _make_ordered(lambda a, b: a >= b),
    "<=": _make_ordered(lambda a, b: a <= b),
}


def _match_pattern(values: list, regex: UserRegex) -> bool:
    return any(isinstance(v, str) and regex.search(v) for v in _flatten(values))


def compile_q(text: str, ctx: CompiledContext) -> Predicate:
    """Predicate for a q expression; raises 400 BadRequestData on syntax errors."""
    return _Parser(text, ctx).parse_q()


# ---------------------------------------------------------------------------------------------
# geo-queries

GEORELS = {"near", "within", "contains", "intersects", "disjoint", "equals", "overlaps"}
_EARTH_RADIUS_M = 6371008.8


def parse_georel(georel: str) -> tuple[str, str | None, float | None]:
    parts = georel.split(";")
    rel = parts[0]
    if rel not in GEORELS:
        raise bad_request("Invalid georel", georel)
    if rel == "near":
        if len(parts) != 2:
            raise bad_request("Invalid georel", "near needs maxDistance or minDistance")
        m = re.match(r"^(maxDistance|minDistance)==(\d+(?:\.\d+)?)$", parts[1])
        if not m:
            raise bad_request("Invalid georel", georel)
        return rel, m.group(1), float(m.group(2))
    if len(parts) != 1:
        raise bad_request("Invalid georel", georel)
    return rel, None, None


# GeoJSON nests positions at most four arrays deep (MultiPolygon)
MAX_COORDINATE_DEPTH = 4


def _bracket_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == "]":
            depth -= 1
    return deepest


def parse_coordinates(raw: Any) -> Any:
    """The ``coordinates`` of a geo-query, nested no deeper than GeoJSON allows (else 400)."""
    if isinstance(raw, list):
        if nested_deeper_than(raw, MAX_COORDINATE_DEPTH):
            raise bad_request("Invalid coordinates", "nested deeper than GeoJSON coordinates")
        return raw
    if not isinstance(raw, str):
        raise bad_request("Invalid coordinates", str(raw)[:200])
    text = raw.strip()
    if not text.startswith("["):
        text = "[" + text + "]"
    if _bracket_depth(text) > MAX_COORDINATE_DEPTH:
        raise bad_request("Invalid coordinates", "nested deeper than GeoJSON coordinates")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise bad_request("Invalid coordinates", raw[:200]) from None


def compile_geo(geometry: str | None, georel: str | None, coordinates: Any, geoproperty: str | None,
                ctx: CompiledContext) -> Predicate:
    if not (geometry and georel and coordinates is not None and coordinates != ""):
        raise bad_request("Incomplete geometry", "georel, geometry and coordinates are all needed")
    rel, dist_kind, distance = parse_georel(georel)
    query_geom = {"type": geometry, "coordinates": parse_coordinates(coordinates)}
    _check_geometry(query_geom, "geometry")
    if rel == "near" and geometry != "Point":
        raise bad_request("Invalid geometry for near", "near needs a Point")
    prop = ctx.expand(geoproperty or "location")

    def predicate(entity: Entity) -> bool:
        instances = entity.attrs.get(prop)
        if not instances:
            return False
        for inst in instances:
            geom = inst.get("value")
            if inst.get("type") != "GeoProperty" or not isinstance(geom, dict):
                continue
            try:
                if _geo_relation(rel, dist_kind, distance, geom, query_geom):
                    return True
            except (TypeError, ValueError, IndexError, KeyError):
                continue
        return False

    return predicate


def _points(geom: dict) -> list[list[float]]:
    gtype = geom.get("type")
    coords = geom.get("coordinates")
    if gtype == "Point":
        return [coords]
    if gtype in ("MultiPoint", "LineString"):
        return list(coords)
    if gtype in ("MultiLineString", "Polygon"):
        return [p for ring in coords for p in ring]
    if gtype == "MultiPolygon":
        return [p for poly in coords for ring in poly for p in ring]
    if gtype == "GeometryCollection":
        return [p for g in geom.get("geometries", []) for p in _points(g)]
    return []


def _segments(geom: dict) -> list[tuple[list[float], list[float]]]:
    gtype = geom.get("type")
    coords = geom.get("coordinates")
    lines: list = []
    if gtype == "LineString":
        lines = [coords]
    elif gtype in ("MultiLineString", "Polygon"):
        lines = coords
    elif gtype == "MultiPolygon":
        lines = [ring for poly in coords for ring in poly]
    elif gtype == "GeometryCollection":
        return [s for g in geom.get("geometries", []) for s in _segments(g)]
    return [(line[i], line[i + 1]) for line in lines for i in range(len(line) - 1)]


def _polygons(geom: dict) -> list[list]:
    if geom.get("type") == "Polygon":
        return [geom["coordinates"]]
    if geom.get("type") == "MultiPolygon":
        return list(geom["coordinates"])
    if geom.get("type") == "GeometryCollection":
        return [p for g in geom.get("geometries", []) for p in _polygons(g)]
    return []


def _in_ring(point: list[float], ring: list) -> bool:
    x, y = point[0], point[1]
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _on_segment(p: list[float], a: list[float], b: list[float]) -> bool:
    cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    if abs(cross) > 1e-12:
        return False
    return min(a[0], b[0]) - 1e-12 <= p[0] <= max(a[0], b[0]) + 1e-12 and \
        min(a[1], b[1]) - 1e-12 <= p[1] <= max(a[1], b[1]) + 1e-12


def _point_in_polygon(point: list[float], polygon: list, *, boundary: bool = True) -> bool:
    for ring in polygon:
        for i in range(len(ring) - 1):
            if _on_segment(point, ring[i], ring[i + 1]):
                return boundary
    if not _in_ring(point, polygon[0]):
        return False
    return not any(_in_ring(point, hole) for hole in polygon[1:])


def _point_in_geometry(point: list[float], geom: dict) -> bool:
    polys = _polygons(geom)
    if polys:
        return any(_point_in_polygon(point, p) for p in polys)
    segs = _segments(geom)
    if segs:
        return any(_on_segment(point, a, b) for a, b in segs)
    return any(point[0] == q[0] and point[1] == q[1] for q in _points(geom))


def _segments_cross(a: list[float], b: list[float], c: list[float], d: list[float]) -> bool:
    def orient(p, q, r):
        v = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
        return 0 if abs(v) < 1e-15 else (1 if v > 0 else -1)
    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    if o1 != o2 and o3 != o4:
        return True
    return (o1 == 0 and _on_segment(c, a, b)) or (o2 == 0 and _on_segment(d, a, b)) or \
        (o3 == 0 and _on_segment(a, c, d)) or (o4 == 0 and _on_segment(b, c, d))


def _intersects(g1: dict, g2: dict) -> bool:
    if any(_point_in_geometry(p, g2) for p in _points(g1)):
        return True
    if any(_point_in_geometry(p, g1) for p in _points(g2)):
        return True
    s1, s2 = _segments(g1), _segments(g2)
    return any(_segments_cross(a, b, c, d) for a, b in s1 for c, d in s2)


def _within(inner: dict, outer: dict) -> bool:
    polys = _polygons(outer)
    points = _points(inner)
    if not polys:
        # a point or line contains what lies on it (a Point contains an equal Point)
        return bool(points) and all(_point_in_geometry(p, outer) for p in points)
    if not points or not all(any(_point_in_polygon(p, poly) for poly in polys) for p in points):
        return False
    # an edge of the inner geometry must not leave the outer polygon through a concave part
    for a, b in _segments(inner):
        mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]
        if not any(_point_in_polygon(mid, poly) for poly in polys):
            return False
    return True


def _haversine(p: list[float], q: list[float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (p[0], p[1], q[0], q[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _distance_to_segment(p: list[float], a: list[float], b: list[float]) -> float:
    # local equirectangular projection around p is accurate at city scale
    k = math.cos(math.radians(p[1]))
    ax, ay = (a[0] - p[0]) * k, a[1] - p[1]
    bx, by = (b[0] - p[0]) * k, b[1] - p[1]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / length2))
    closest = [p[0] + (ax + t * dx) / k if k else a[0], p[1] + ay + t * dy]
    return _haversine(p, closest)


def _distance(geom: dict, point: list[float]) -> float:
    if _polygons(geom) and _point_in_geometry(point, geom):
        return 0.0
    best = min((_haversine(point, q) for q in _points(geom)), default=math.inf)
    for a, b in _segments(geom):
        best = min(best, _distance_to_segment(point, a, b))
    return best


def _geo_relation(rel: str, dist_kind: str | None, distance: float | None, geom: dict, query: dict) -> bool:
    if rel == "near":
        if geom.get("type") == "Point":
            d = _haversine(geom["coordinates"], query["coordinates"])
        else:
            d = _distance(geom, query["coordinates"])
        return d <= distance if dist_kind == "maxDistance" else d >= distance
    if rel == "within":
        return _within(geom, query)
    if rel == "contains":
        return _within(query, geom)
    if rel == "intersects":
        return _intersects(geom, query)
    if rel == "disjoint":
        return not _intersects(geom, query)
    if rel == "equals":
        return geom.get("type") == query.get("type") and _same_coords(geom.get("coordinates"), query.get("coordinates"))
    if rel == "overlaps":
        return _intersects(geom, query) and not _within(geom, query) and not _within(query, geom)
    return False


def _same_coords(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_coords(x, y) for x, y in zip(a, b))
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-9


# ---------------------------------------------------------------------------------------------
# orderBy (NGSI-LD 1.9 §4.23): "member[.sub][;asc|;desc]" comma-separated, first key first

_ORDER_RE = re.compile(r"^([^;]+?)(?:;(asc|desc))?$")


def _sort_key(values: list) -> tuple:
    """Missing values last, then numbers, strings, booleans and anything else (as JSON)."""
    flat = _flatten(values)
    if not flat:
        return (1, 0, 0)
    v = flat[0]
    if isinstance(v, bool):
        return (0, 2, v)
    if isinstance(v, (int, float)):
        return (0, 0, v)
    if isinstance(v, str):
        return (0, 1, v)
    return (0, 3, json.dumps(v, sort_keys=True))


def compile_order_by(text: str, ctx: CompiledContext) -> Callable[[list[Entity]], list[Entity]]:
    """A function sorting entities as ``orderBy`` says (stable; missing members sort last)."""
    keys: list[tuple[Callable[[Entity], list], bool]] = []
    for part in text.split(","):
        m = _ORDER_RE.match(part.strip())
        if not m:
            raise bad_request("Invalid value for URI parameter /orderBy/", text)
        member, direction = m.group(1), m.group(2) or "asc"
        if member == "id":
            getter: Callable[[Entity], list] = lambda e: [e.id]
        elif member == "type":
            getter = lambda e: [ctx.compact(e.types[0])] if e.types else []
        elif member in ("createdAt", "modifiedAt"):
            getter = (lambda e: [e.created]) if member == "createdAt" else (lambda e: [e.modified])
        else:
            try:
                getter = _compile_path(member, ctx)
            except NgsiError:
                raise bad_request("Invalid value for URI parameter /orderBy/", text) from None
        keys.append((getter, direction == "desc"))

    def order(entities: list[Entity]) -> list[Entity]:
        out = list(entities)
        for getter, descending in reversed(keys):
            decorated = [(_sort_key(getter(e)), e) for e in out]
            present = [d for d in decorated if d[0][0] == 0]
            missing = [d[1] for d in decorated if d[0][0] != 0]
            present.sort(key=lambda d: d[0][1:], reverse=descending)
            out = [d[1] for d in present] + missing
        return out

    return order


# ---------------------------------------------------------------------------------------------
# scopeQ (NGSI-LD §4.19): scope paths with "+" (one level) and "#" (any further levels),
# ";" = AND, "," or "|" = OR, parentheses

_SCOPE_TERM_RE = re.compile(r"^/(?:[^/;,|()#+]+|\+)(?:/(?:[^/;,|()#+]+|\+))*(?:/#)?$|^/#$")


def _scope_matcher(term: str) -> Callable[[list[str]], bool]:
    if not _SCOPE_TERM_RE.match(term):
        raise bad_request("Invalid scopeQ", term)
    if term == "/#":
        return lambda scopes: bool(scopes)
    hash_tail = term.endswith("/#")
    parts = (term[:-2] if hash_tail else term).split("/")[1:]
    pattern = "/" + "/".join("[^/]+" if p == "+" else re.escape(p) for p in parts)
    regex = re.compile(pattern + ("(?:/.*)?$" if hash_tail else "$"))
    return lambda scopes: any(regex.match(s) for s in scopes)


def compile_scope_q(text: str) -> Predicate:
    """A predicate over an entity's ``scope`` (a string or a list of strings)."""
    parser: BoolParser[list[str]] = BoolParser(text, or_chars=",|",
                                               error=lambda _detail: bad_request("Invalid scopeQ", text[:200]))
    matcher = parser.parse(lambda p: _scope_matcher(read_until(p, ";,|()")))

    def predicate(entity: Entity) -> bool:
        scope = entity.scope
        scopes = [scope] if isinstance(scope, str) else [s for s in scope or () if isinstance(s, str)]
        return matcher(scopes)

    return predicate


# ---------------------------------------------------------------------------------------------
# type lists and type expressions (NGSI-LD §4.17): "," or "|" = OR, ";" = AND, parentheses

def compile_type_expr(expr: str, ctx: CompiledContext) -> tuple[set[str] | None, Callable[[list[str]], bool]]:
    """(plain type set usable with the type index, predicate over an entity's types)."""
    if not any(c in expr for c in ";|()"):
        names = {ctx.expand(t.strip()) for t in expr.split(",") if t.strip()}
        return names, lambda types: any(t in names for t in types)

    def atom(parser: BoolParser[list[str]]) -> Callable[[list[str]], bool]:
        name = read_until(parser, ";|,()").strip()
        if not name:
            raise bad_request("Invalid type expression", expr)
        iri = ctx.expand(name)
        return lambda types: iri in types

    parser: BoolParser[list[str]] = BoolParser(
        expr, or_chars="|,", error=lambda _detail: bad_request("Invalid type expression", expr[:200]))
    return None, parser.parse(atom)
