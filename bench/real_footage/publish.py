"""Publishing the footage to a running nvr and collecting what it answers.

One session (:func:`session`):

1. subscribes (core NATS, before anything is published) to
   ``nvr.detections.*``, ``nvr.tracks.*``, ``nvr.spatial.*.tracks`` and
   ``nvr.events.>`` and keeps every message with its arrival time;
2. publishes, for every source frame ``i``, one ``Frame`` per camera
   (``left``, ``right``, ``full``) with the SAME ``seq`` and ``ts_ns``:
   ``ts_ns = base + i * period`` where ``base`` is the wall clock at the
   start rounded up to a multiple of the spatial matching interval (so frame
   ``i`` falls exactly on one matching cycle), ``seq = ts_ns // 1e6``.
   Each frame is published (JetStream publish, headers ``Content-Type`` and
   ``Nats-Msg-Id: <camera>-<seq>``) once the wall clock reaches its
   ``ts_ns``: real-time pacing, so frames are never ahead of nvr's clock and
   their age at pull time is only the detector's queueing;
3. polls the detector status while publishing and fails if frames are
   skipped, refused or in error (unless told to tolerate it);
4. after the last frame, waits until every camera's ``CameraTracks`` and
   every shard's ``SpatialTracks`` have reached the last frame, then a
   short quiet period (the cycles a shard runs past the last frame once its
   input stopped, to let identities expire, do not break it).

The collected messages are written as a MessagePack stream of
``[subject, recv_ns, payload]`` so the metrics can be recomputed offline.
"""
import asyncio
import json
import time
from pathlib import Path

import msgpack
import nats

from frames import VIEWS, view_size

INTERVAL_NS = 200_000_000  # spatial.matching_interval_ms (default 200)
SUBJECTS = ("nvr.detections.*", "nvr.tracks.*", "nvr.spatial.*.tracks", "nvr.events.>")


def frame_msg(camera, seq, ts_ns, jpeg):
    """A ``Frame`` message (keys in the contract's table order)."""
    w, h = view_size(camera)
    return {
        "v": 1,
        "camera": camera,
        "seq": seq,
        "ts_ns": ts_ns,
        "width": w,
        "height": h,
        "encoding": "jpeg",
        "data": jpeg,
    }


def detector_problems(st):
    """Counters of the detector status that must stay 0, as {name: value}."""
    keys = (
        "skipped_count",
        "error_count",
        "malformed_count",
        "expired_count",
        "dead_lettered_count",
        "dropped_at_publish_count",
        "delivery_error_count",
    )
    bad = {k: st.get(k, 0) for k in keys if st.get(k, 0)}
    if st.get("refused"):
        bad["refused"] = st["refused"]
    return bad


async def _status(nvr, path):
    return await asyncio.to_thread(nvr.get, path)


async def _session(nvr, nats_url, frames, period_ns, out_dir, tolerate_skips, log):
    received = []

    async def on_msg(m):
        received.append((m.subject, time.time_ns(), bytes(m.data)))

    async def on_error(e):  # nats-py would print a traceback per reconnect attempt
        errors.append(repr(e))

    errors = []
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3, error_cb=on_error)
    try:
        for s in SUBJECTS:
            await nc.subscribe(s, cb=on_msg)
        await nc.flush()
        js = nc.jetstream()
        cams = list(VIEWS)
        now = time.time_ns() + 500_000_000
        base = -(-now // INTERVAL_NS) * INTERVAL_NS
        meta = {"base_ns": base, "period_ns": period_ns, "frames": []}
        status_log = []
        late_ms = []
        t_start = time.monotonic()
        for f in frames:
            ts = base + f.index * period_ns
            seq = ts // 1_000_000
            delay = (ts - time.time_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            late_ms.append((time.time_ns() - ts) / 1e6)
            pubs = []
            for cam in cams:
                payload = msgpack.packb(frame_msg(cam, seq, ts, f.jpeg[cam]), use_single_float=True)
                hdr = {"Content-Type": "application/msgpack", "Nats-Msg-Id": f"{cam}-{seq}"}
                pubs.append(js.publish(f"nvr.frames.{cam}", payload, headers=hdr, timeout=5))
            try:
                acks = await asyncio.gather(*pubs)
            except Exception as e:  # noqa: BLE001 - reported with the log tail
                nvr.fail(f"publishing frame {f.index} (seq {seq}) failed: {e!r}")
            if any(a.duplicate for a in acks):
                nvr.fail(f"frame {f.index} (seq {seq}) was stored as a duplicate")
            meta["frames"].append({"index": f.index, "seq": seq, "ts_ns": ts})
            if f.index % 10 == 9 or f.index == len(frames) - 1:
                if not nvr.alive():
                    nvr.fail(f"nvr exited while publishing (frame {f.index})")
                st = await _status(nvr, "/api/v1/plugins/nvr-detection/status")
                bad = detector_problems(st)
                status_log.append(
                    {
                        "frame": f.index,
                        "processed": st.get("processed_count"),
                        "skipped": st.get("skipped_count"),
                        "queue_pending": st.get("queue_pending"),
                        "e2e_p99_ms": st.get("e2e_p99_latency_ms"),
                    }
                )
                if bad and not tolerate_skips:
                    nvr.fail(f"detector reports problems at frame {f.index}: {bad}")
                if f.index % 50 == 49:
                    log(
                        f"  frame {f.index + 1}/{len(frames)}: processed {st.get('processed_count')}, "
                        f"skipped {st.get('skipped_count')}, pending {st.get('queue_pending')}"
                    )
        publish_s = time.monotonic() - t_start
        last = meta["frames"][-1]
        await _drain(nvr, received, last, cams, log)
        det = await _status(nvr, "/api/v1/plugins/nvr-detection/status")
        spatial = await _status(nvr, "/api/v1/spatial/stats")
        meta.update(
            {
                "publish_s": publish_s,
                "publish_late_ms_max": max(late_ms),
                "status_log": status_log,
                "detector_status": det,
                "spatial_stats": spatial,
                "detector_problems": detector_problems(det),
            }
        )
    finally:
        await nc.close()
    out = Path(out_dir)
    with open(out / "bus.msgpack", "wb") as fh:
        for rec in received:
            fh.write(msgpack.packb(list(rec), use_bin_type=True))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


async def _drain(nvr, received, last, cams, log, timeout_s=45.0, quiet_s=3.0):
    """Waits until tracks of the last frame and spatial cycles at or after it
    arrived, then until nothing new arrives for ``quiet_s``: nothing but the
    cycles a shard runs past the last frame once its input stopped (its
    clock carried forward), which go on for as long as nvr runs."""
    deadline = time.monotonic() + timeout_s
    need_tracks = set(cams)
    quiet_mark = None  # messages counted when the output last looked complete
    while True:
        tracks_done, shard_ts, counted = set(), {}, 0
        for subj, _, payload in received:
            if subj.startswith("nvr.tracks."):
                m = msgpack.unpackb(payload)
                if m.get("seq") == last["seq"]:
                    tracks_done.add(m["camera"])
            elif subj.startswith("nvr.spatial."):
                m = msgpack.unpackb(payload)
                shard_ts[m["shard"]] = max(shard_ts.get(m["shard"], 0), m["ts_ns"])
                if m["ts_ns"] > last["ts_ns"]:
                    continue
            counted += 1
        complete = need_tracks <= tracks_done and len(shard_ts) >= 2 and all(
            t >= last["ts_ns"] for t in shard_ts.values()
        )
        if complete:
            if counted == quiet_mark or time.monotonic() > deadline:
                return
            quiet_mark = counted
            await asyncio.sleep(quiet_s)
            continue
        quiet_mark = None
        if time.monotonic() >= deadline:
            break
        if not nvr.alive():
            nvr.fail("nvr exited before its output reached the last frame")
        await asyncio.sleep(0.5)
    nvr.fail(
        f"output did not reach the last frame (seq {last['seq']}) within {timeout_s} s: "
        f"tracks of {sorted(tracks_done)}, spatial shards at {shard_ts}"
    )


def session(nvr, nats_url, frames, out_dir, period_ns=200_000_000, tolerate_skips=False, log=print):
    """Runs one publishing session against ``nvr``; see the module docstring."""
    return asyncio.run(_session(nvr, nats_url, frames, period_ns, out_dir, tolerate_skips, log))


def load_bus(path):
    """Reads a ``bus.msgpack`` file back as a list of (subject, recv_ns, message dict)."""
    out = []
    with open(path, "rb") as fh:
        for subj, recv, payload in msgpack.Unpacker(fh, raw=False):
            out.append((subj, recv, msgpack.unpackb(payload)))
    return out
