#!/usr/bin/env python3
"""Prints who is on the floor now, from the bus alone.

Subscribes to `nvr.spatial.<shard>.tracks` (every shard by default) and, for
each matching cycle, prints one line per shard: the identities whose `state`
is `observed` or `coasting`, with their position. `lost` identities are
dropped: they are kept by the tracker only for re-identification. `static`
ones (a detection that never moved and that no second camera confirms) are
counted apart, not as people; `duplicate` ones (a second view of a person
another identity already is) are counted apart too, and a camera track bound
to one belongs to the person named by its `duplicate_of`.

Needs `nats-py` and `msgpack` (both in data/pyenv after scripts/setup):

    data/pyenv/bin/python subjects/python/floor_now.py --url nats://127.0.0.1:4222
    NATS_USER=observer NATS_PASSWORD=... data/pyenv/bin/python subjects/python/floor_now.py

Options: --shard NAME (one shard), --count N (stop after N cycles), --json
(one JSON object per cycle instead of text).
"""

import argparse
import asyncio
import json
import os
import sys

import msgpack
import nats

ON_FLOOR = ("observed", "coasting")


def on_floor(msg):
    """The identities of a SpatialTracks message that are on the floor now."""
    return [
        t for t in msg.get("tracks", [])
        # Publishers before the `state` field existed: every track was observed.
        if t.get("state", "observed") in ON_FLOOR
    ]


def static(msg):
    """Identities that look like fixed false detections (`static`)."""
    return [t for t in msg.get("tracks", []) if t.get("state") == "static"]


def duplicates(msg):
    """Second views of a person another identity is (`duplicate`)."""
    return [t for t in msg.get("tracks", []) if t.get("state") == "duplicate"]


def person_of_camera_track(msg):
    """{"camera/track_id": global id of the person} for every camera track
    bound to an identity on the floor; a `duplicate` identity's tracks
    belong to the identity in its `duplicate_of`."""
    out = {}
    for t in msg.get("tracks", []):
        state = t.get("state", "observed")
        if state in ON_FLOOR:
            gid = t["global_id"]
        elif state == "duplicate" and "duplicate_of" in t:
            gid = t["duplicate_of"]
        else:
            continue
        for s in t.get("sources", []):
            out[f"{s['camera']}/{s['track_id']}"] = gid
    return out


def describe(msg):
    people = on_floor(msg)
    parts = [
        f"#{t['global_id']} {t['state'] if 'state' in t else 'observed'} "
        f"({t['x_m']:.2f}, {t['y_m']:.2f}) {t['floor']}"
        for t in people
    ]
    fixed = static(msg)
    line = f"{msg['shard']} ts={msg['ts_ns']} on floor: {len(people)}" + (
        ": " + "; ".join(parts) if parts else ""
    )
    if fixed:
        line += f" | static (not counted): {len(fixed)}"
    dups = duplicates(msg)
    if dups:
        line += " | second views: " + ", ".join(
            f"#{t['global_id']} of #{t.get('duplicate_of', '?')}" for t in dups
        )
    return line


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--shard", default="*")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    opts = {}
    if os.environ.get("NATS_USER"):
        opts["user"] = os.environ["NATS_USER"]
        opts["password"] = os.environ.get("NATS_PASSWORD", "")
    nc = await nats.connect(args.url, **opts)
    done = asyncio.Event()
    seen = 0

    async def handle(m):
        nonlocal seen
        if args.count and seen >= args.count:
            return
        try:
            msg = msgpack.unpackb(m.data, raw=False)
        except Exception as e:  # one bad message must not stop the client
            print(f"{m.subject}: not MessagePack: {e}", file=sys.stderr)
            return
        if args.json:
            print(json.dumps({"shard": msg["shard"], "ts_ns": msg["ts_ns"],
                              "on_floor": on_floor(msg), "static": static(msg),
                              "duplicates": duplicates(msg),
                              "camera_tracks": person_of_camera_track(msg)}), flush=True)
        else:
            print(describe(msg), flush=True)
        seen += 1
        if args.count and seen >= args.count:
            done.set()

    await nc.subscribe(f"nvr.spatial.{args.shard}.tracks", cb=handle)
    await nc.flush()
    print(f"listening on nvr.spatial.{args.shard}.tracks", file=sys.stderr, flush=True)
    await done.wait()
    await nc.drain()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
