#!/usr/bin/env python3
"""Checks subjects/README.md against the golden bytes of subjects/tests/codec.rs.

For every message type this script
  1. reads the field table of that type from the README (field, type,
     required), in the README's order;
  2. builds the message the way the README tells a Python client to: a dict
     with the keys in table order, optional fields left out when absent,
     packed with msgpack.packb(msg, use_single_float=True);
  3. compares the bytes with the golden hex constant of the Rust test;
  4. unpacks the golden bytes and checks every key against the README table
     (documented, required ones present, value of the documented type),
     recursing into nested types.
It also checks that the README names every subject pattern, stream and
consumer of the Rust crate.

Only the `msgpack` package is needed. Prints one line per check and exits
non-zero on any mismatch. Run from anywhere:

    data/pyenv/bin/python subjects/python/check_contract.py
"""

import re
import sys
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent
README = CRATE / "README.md"
GOLDEN_RS = CRATE / "tests" / "codec.rs"
SUBJECTS_RS = CRATE / "src" / "subjects.rs"
STREAMS_RS = CRATE / "src" / "streams.rs"
LIB_RS = CRATE / "src" / "lib.rs"

TS = 1_700_000_000_000_000_000

# The values of the fixtures in subjects/tests/codec.rs (frame(), detections(),
# camera_tracks(), spatial(), handoff()). None = the Rust Option is None.
FIXTURES = {
    "Frame": {
        "v": 1, "camera": "cam1", "seq": 7, "ts_ns": TS, "width": 768, "height": 576,
        "encoding": "jpeg", "data": bytes([0xFF, 0xD8, 0xFF, 0xD9]),
        "data_width": 0, "data_height": 0,
    },
    "Detections": {
        "v": 1, "camera": "cam1", "seq": 7, "ts_ns": TS, "width": 768, "height": 576,
        "model": "yolox_nano", "backend": "cpu", "worker": "w1",
        "latency_ms": 11.5, "queue_ms": 2.0,
        "objects": [{
            "class_id": 0, "label": "person", "score": 0.875,
            "bbox": [0.25, 0.5, 0.375, 0.75], "embedding": [0.6, 0.8],
        }],
    },
    "CameraTracks": {
        "v": 1, "camera": "cam1", "seq": 7, "ts_ns": TS, "width": 768, "height": 576,
        "tracks": [{
            "track_id": 3, "label": "person", "score": 0.875,
            "bbox": [0.25, 0.5, 0.375, 0.75], "state": "confirmed",
            "hits": 4, "age_ms": 800, "embedding": None,
        }],
    },
    "SpatialTracks": {
        "v": 1, "shard": "floor1", "ts_ns": TS,
        "tracks": [{
            "global_id": 12, "floor": "floor1", "x_m": 1.5, "y_m": 2.25,
            "vx": 0.5, "vy": -0.25, "label": "person", "confidence": 0.75,
            "sources": [{"camera": "cam1", "track_id": 3}],
            "last_seen_ns": TS, "state": "coasting", "duplicate_of": None,
        }],
    },
    "Event": {
        "v": 1, "kind": "handoff", "ts_ns": TS, "shard": "floor1", "camera": None,
        "global_id": 12, "track_id": None, "from_camera": "cam1", "to_camera": "cam2",
        "gap_ms": 1500, "label": None, "score": None, "bbox": None, "floor": None,
        "position_m": None, "duration_ms": None, "seq": None,
    },
}

GOLDEN_NAMES = {
    "GOLDEN_FRAME": "Frame",
    "GOLDEN_DETECTIONS": "Detections",
    "GOLDEN_TRACKS": "CameraTracks",
    "GOLDEN_SPATIAL": "SpatialTracks",
    "GOLDEN_EVENT": "Event",
}

# Optional fields that the README says are left out when 0 rather than absent.
OMIT_WHEN_ZERO = {("Frame", "data_width"), ("Frame", "data_height")}


class Mismatch(Exception):
    pass


def parse_tables(text):
    """{type name: [(field, type, required)]} from the '### `Name`' sections."""
    tables = {}
    current = None
    in_fields = False  # inside a table whose header starts with "field"
    for line in text.splitlines():
        m = re.match(r"^###\s+`(\w+)`\s*$", line)
        if m:
            current = m.group(1)
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is None or not line.startswith("|"):
            in_fields = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_fields:
            in_fields = cells[0] == "field" and current not in tables
            continue
        if set(cells[0]) <= set("-: "):
            continue
        fm = re.fullmatch(r"`(\w+)`", cells[0])
        if not fm:
            continue
        if cells[2] not in ("yes", "no"):
            raise Mismatch(f"README {current}.{fm.group(1)}: required column is {cells[2]!r}")
        tables.setdefault(current, []).append((fm.group(1), cells[1], cells[2] == "yes"))
    return tables


def golden_constants(text):
    found = dict(re.findall(r'const\s+(GOLDEN_\w+)\s*:\s*&str\s*=\s*"([0-9a-f]+)"', text))
    missing = set(GOLDEN_NAMES) - set(found)
    if missing:
        raise Mismatch(f"golden constants not found in {GOLDEN_RS}: {sorted(missing)}")
    return {GOLDEN_NAMES[k]: bytes.fromhex(v) for k, v in found.items() if k in GOLDEN_NAMES}


def build(type_name, values, tables):
    """The message as the README tells a client to build it."""
    out = {}
    for field, ftype, required in tables[type_name]:
        if field not in values:
            raise Mismatch(f"{type_name}.{field} is documented but the Rust fixture has no such field")
        value = values[field]
        if not required:
            if value is None:
                continue
            if (type_name, field) in OMIT_WHEN_ZERO and value == 0:
                continue
        elem = array_element(ftype)
        if elem in tables and isinstance(value, list):
            value = [build(elem, v, tables) for v in value]
        out[field] = value
    extra = set(values) - {f for f, _, _ in tables[type_name]}
    if extra:
        raise Mismatch(f"{type_name}: fields {sorted(extra)} exist in Rust but not in the README")
    return out


def array_element(ftype):
    m = re.fullmatch(r"(\w+)\[\d*\]", ftype)
    return m.group(1) if m else None


def check_value(path, ftype, value, tables):
    def fail(why):
        raise Mismatch(f"{path}: {why} (documented type {ftype}, value {value!r})")

    if ftype in ("u32", "u64"):
        bits = 32 if ftype == "u32" else 64
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**bits):
            fail("not an unsigned integer in range")
    elif ftype == "f32":
        if not isinstance(value, float):
            fail("not a float")
    elif ftype == "str":
        if not isinstance(value, str):
            fail("not a str")
    elif ftype == "bin":
        if not isinstance(value, bytes):
            fail("not bin")
    elif ftype.startswith("enum"):
        allowed = [a.strip() for a in re.fullmatch(r"enum \((.*)\)", ftype).group(1).split(",")]
        if value not in allowed:
            fail(f"not one of {allowed}")
    elif array_element(ftype):
        elem = array_element(ftype)
        n = re.fullmatch(r"\w+\[(\d*)\]", ftype).group(1)
        if not isinstance(value, list):
            fail("not an array")
        if n and len(value) != int(n):
            fail(f"array of {len(value)}, expected {n}")
        for i, v in enumerate(value):
            check_value(f"{path}[{i}]", elem, v, tables)
    elif ftype in tables:
        check_map(path, ftype, value, tables)
    else:
        fail("unknown type name in the README")


def check_map(path, type_name, value, tables):
    if not isinstance(value, dict):
        raise Mismatch(f"{path}: {type_name} is not a map")
    fields = {f: (t, r) for f, t, r in tables[type_name]}
    for key in value:
        if key not in fields:
            raise Mismatch(f"{path}: key {key!r} is not documented for {type_name}")
    for f, (t, required) in fields.items():
        if f not in value:
            if required:
                raise Mismatch(f"{path}: required field {f!r} missing")
            continue
        check_value(f"{path}.{f}", t, value[f], tables)


def nested_types(type_name, tables):
    """The documented map types reachable from `type_name`, in table order."""
    out = []
    for _, ftype, _ in tables[type_name]:
        elem = array_element(ftype) or ftype
        if elem in tables and elem not in out:
            out.append(elem)
            out += [n for n in nested_types(elem, tables) if n not in out]
    return out


def decode(payload, tables, type_name):
    """A reader as the README describes it: map, version 1, documented fields."""
    msg = msgpack.unpackb(payload)
    if not isinstance(msg, dict):
        raise Mismatch(f"{type_name}: payload is not a map")
    if msg.get("v") != 1:
        raise Mismatch(f"{type_name}: unsupported schema version {msg.get('v')}")
    check_map(type_name, type_name, msg, tables)
    return msg


def check_names(readme):
    """Every subject pattern, stream, consumer and header of the crate is named."""
    subjects_rs = SUBJECTS_RS.read_text()
    streams_rs = STREAMS_RS.read_text()
    lib_rs = LIB_RS.read_text()
    wanted = re.findall(r'pub const \w+: &str = "(nvr\.[^"]+)"', subjects_rs)
    wanted += [p.replace("{PREFIX}", "nvr").replace("{", "<").replace("}", ">")
               for p in re.findall(r'format!\("(\{PREFIX\}[^"]+)"', subjects_rs)]
    wanted += re.findall(r'pub const \w+: &str = "(NVR_\w+)"', streams_rs)
    wanted += re.findall(r'pub const DETECTORS_CONSUMER: &str = "(\w+)"', streams_rs)
    wanted += re.findall(r'pub const (?:HEADER_\w+|CONTENT_TYPE_\w+): &str = "([^"]+)"', lib_rs)
    missing = [w for w in wanted if f"`{w}`" not in readme]
    if missing:
        raise Mismatch(f"README does not name: {missing}")
    version = re.search(r"pub const SCHEMA_VERSION: u32 = (\d+);", lib_rs).group(1)
    if f"= **{version}**" not in readme:
        raise Mismatch(f"README does not state schema version {version}")
    return len(wanted)


def main():
    readme = README.read_text()
    failures = 0
    try:
        tables = parse_tables(readme)
        golden = golden_constants(GOLDEN_RS.read_text())
    except Mismatch as e:
        print(f"FAIL setup: {e}")
        return 1

    for type_name, expected in golden.items():
        try:
            if type_name not in tables:
                raise Mismatch(f"README has no field table for {type_name}")
            msg = build(type_name, FIXTURES[type_name], tables)
            packed = msgpack.packb(msg, use_single_float=True)
            if packed != expected:
                raise Mismatch(
                    f"packed bytes differ from the golden hex\n  python: {packed.hex()}\n  golden: {expected.hex()}"
                )
            back = decode(expected, tables, type_name)
            nested = nested_types(type_name, tables)
            print(f"ok   {type_name:<14} {len(packed):4d} bytes identical to golden; "
                  f"{len(back)} top-level fields match the README"
                  + (f" (nested: {', '.join(nested)})" if nested else ""))
        except Mismatch as e:
            failures += 1
            print(f"FAIL {type_name}: {e}")

    # A minimal event (only the required fields) is a valid message too.
    try:
        minimal = {f: FIXTURES["Event"][f] for f, _, r in tables["Event"] if r}
        decode(msgpack.packb(minimal, use_single_float=True), tables, "Event")
        print(f"ok   Event (minimal) only {', '.join(minimal)} is a complete event")
    except Mismatch as e:
        failures += 1
        print(f"FAIL Event (minimal): {e}")

    try:
        n = check_names(readme)
        print(f"ok   names          README names all {n} subjects, streams, consumer and headers of the crate")
    except Mismatch as e:
        failures += 1
        print(f"FAIL names: {e}")

    if failures:
        print(f"{failures} check(s) failed")
        return 1
    print("contract OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
