#!/usr/bin/env python3
"""Prints who is on the floor now, from the bus alone.

Subscribes to `nvr.spatial.<shard>.tracks` (every shard by default) and, for
each matching cycle, prints one line per shard: the identities whose `state`
is `observed` or `coasting`, with their position. `lost` identities are
dropped: they are kept by the tracker only for re-identification. `static`
ones (a detection that never moved and that no second camera confirms) are
counted apart, not as people.

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
                              "on_floor": on_floor(msg), "static": static(msg)}), flush=True)
        else:
            print(describe(msg), flush=True)
        seen += 1
        if args.count and seen >= args.count:
            done.set()

    await nc.subscribe(f"nvr.spatial.{args.shard}.tracks", cb=handle)
    await done.wait()
    await nc.drain()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
