"""Runs one simulated scene through a real `nvr run` and collects its output.

Why: the evaluation must score exactly what a running nvr publishes on NATS
(track actors + spatial shard, with their consumers, reorder windows,
watermarks and limits), not a library call. This module:

1. writes a config.yaml for the scene: embedded nats-server on a free port
   with a temporary store_dir, the API on a free 127.0.0.1 port,
   `detection.embedded: false`, `spatial.embedded: true`, one floor and the
   scene's four cameras WITHOUT `url` (external cameras) with their noisy
   `calibration.points`; extra dotted overrides (e.g.
   `spatial.reid_enabled=false`) go on top;
2. starts `nvr run --config <file>` (own process group, stderr+stdout to
   `nvr.log` in the run dir), waits for GET /health and for the durable
   consumers `track-<camera>` and the spatial shard's (they deliver only new
   messages, so publishing earlier would lose data);
3. subscribes with core NATS to `nvr.spatial.*.tracks`, `nvr.tracks.*` and
   `nvr.events.>`, then publishes every camera's `Detections` (msgpack as in
   subjects/README.md, headers `Nats-Msg-Id: <camera>-<seq>` and
   `Content-Type`) with JetStream publish, in timestamp order, unpaced (each
   publish awaits its ack). Scene time 0 is mapped to now - duration - 10 s,
   so every timestamp is inside `limits.max_behind_ms` and none is ahead;
4. waits until the output is complete: every `CameraTracks` is in (or none
   came for `quiet_s`) and a `SpatialTracks` cycle at or after the last
   detection's time was published (or none came for `quiet_s`); overall
   timeout. ("No spatial message for 4 s" never happens: when its input
   stops, nvr's shard carries its clock forward with the wall clock and
   keeps publishing cycles so that tracks expire.) Then it reads
   /api/v1/spatial/stats, sends SIGTERM and returns the decoded messages
   (also saved as messages.msgpack).

With `embeddings=False` objects carry no `embedding` (as nvr's own detectors
do when `spatial.reid_enabled` is false); run_eval's ablation keeps them.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import msgpack
import nats
import yaml

REPO = Path(__file__).resolve().parents[2]
NATS_SERVER = REPO / "data/bin/nats-server"
FLOOR_ID = "floor1"


class RunError(RuntimeError):
    """A run that did not complete; carries the tail of nvr's log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_dotted(cfg: dict, key: str, value):
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def write_config(scene, run_dir: Path, store_dir: str, nats_port: int, api_port: int, overrides=None) -> Path:
    cfg = {
        "log_level": "info",
        "api": {"address": f"127.0.0.1:{api_port}"},
        "nats": {"embedded": True, "url": f"nats://127.0.0.1:{nats_port}",
                 "store_dir": store_dir, "server_bin": str(NATS_SERVER)},
        "detection": {"embedded": False},
        "spatial": {"embedded": True},
        "floors": [{"id": FLOOR_ID, "size_m": [scene.k.floor_w, scene.k.floor_h]}],
        "cameras": [{"id": c.id, "floor": FLOOR_ID,
                     "calibration": {"points": [{"image": list(i), "floor": list(f)}
                                                for i, f in scene.calib[c.id]]}}
                    for c in scene.cameras],
    }
    # The white points the simulator's descriptors were balanced with, as a
    # user sets what the detection status measured.
    for cam in cfg["cameras"]:
        wp = getattr(scene, "white_point_cfg", {}).get(cam["id"])
        if wp is not None:
            cam["detection"] = {"white_point": wp}
    for key, value in (overrides or {}).items():
        set_dotted(cfg, key, value)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def detection_messages(scene, t0_ns: int, embeddings: bool = True):
    """(ts_ns, camera, seq, payload) of every frame, in timestamp order."""
    out = []
    for c in scene.cameras:
        for fr in scene.frames[c.id]:
            seq, ts_ns = fr.k + 1, t0_ns + int(round(fr.ts * 1e9))
            objs = []
            for d in fr.dets:
                b = d["bbox"]
                o = {"class_id": 0, "label": "person", "score": float(d["score"]),
                     "bbox": [float(b[0] / c.w), float(b[1] / c.h), float(b[2] / c.w), float(b[3] / c.h)]}
                if embeddings and "emb" in d:
                    o["embedding"] = [float(x) for x in d["emb"]]
                objs.append(o)
            msg = {"v": 1, "camera": c.id, "seq": seq, "ts_ns": ts_ns, "width": c.w, "height": c.h,
                   "model": "spatial_live_sim", "backend": "cpu", "worker": "sim-w1",
                   "latency_ms": 0.0, "queue_ms": 0.0, "objects": objs}
            out.append((ts_ns, c.id, seq, msgpack.packb(msg, use_single_float=True)))
    out.sort(key=lambda m: (m[0], m[1]))
    return out


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(no log: {e})"


def http_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


async def _wait_until(cond, timeout: float, what: str, proc, log: Path, every: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RunError(f"nvr exited ({proc.returncode}) while waiting for {what}\n{log_tail(log)}")
        try:
            if await cond():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        if time.monotonic() > end:
            raise RunError(f"timed out after {timeout} s waiting for {what}\n{log_tail(log)}")
        await asyncio.sleep(every)


async def _run(scene, nvr: Path, run_dir: Path, overrides, embeddings, quiet_s, timeout_s):
    run_dir.mkdir(parents=True, exist_ok=True)
    nats_port, api_port = free_port(), free_port()
    store = tempfile.mkdtemp(prefix="nvr_store_")   # fresh JetStream store every run
    cfg = write_config(scene, run_dir, store, nats_port, api_port, overrides)
    log = run_dir / "nvr.log"
    timing = {}
    t_start = time.monotonic()
    try:
        with open(log, "wb") as lf:
            proc = subprocess.Popen([str(nvr), "run", "--config", str(cfg), "--api-addr", f"127.0.0.1:{api_port}"],
                                    cwd=run_dir, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "NO_COLOR": "1"})
    except OSError as e:
        shutil.rmtree(store, ignore_errors=True)
        raise RunError(f"cannot start {nvr}: {e}") from e
    nc, got = None, []
    try:
        async def healthy():
            return (await asyncio.to_thread(http_json, f"http://127.0.0.1:{api_port}/health")).get("status") == "ok"
        await _wait_until(healthy, 60, "GET /health", proc, log)
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", connect_timeout=5, max_reconnect_attempts=3)
        js = nc.jetstream()
        cams = [c.id for c in scene.cameras]

        async def consumers_ready():
            det = {ci.name for ci in await js.consumers_info("NVR_DETECTIONS")}
            trk = [ci.config.filter_subject for ci in await js.consumers_info("NVR_TRACKS")]
            return all(f"track-{c}" in det for c in cams) and all(f"nvr.tracks.{c}" in trk for c in cams)
        await _wait_until(consumers_ready, 60, "the track-* and spatial-* consumers", proc, log, 0.2)
        timing["startup_s"] = time.monotonic() - t_start

        last = {"spatial": 0.0, "tracks": 0.0, "n_tracks": 0, "spatial_ts": 0}

        async def on_msg(m):
            now = time.monotonic()
            got.append((m.subject, m.data))
            if m.subject.startswith("nvr.spatial."):
                last["spatial"] = now
                try:
                    last["spatial_ts"] = max(last["spatial_ts"], msgpack.unpackb(m.data)["ts_ns"])
                except Exception:  # noqa: BLE001 - decoded again later
                    pass
            elif m.subject.startswith("nvr.tracks."):
                last["tracks"], last["n_tracks"] = now, last["n_tracks"] + 1
        for subj in ("nvr.spatial.*.tracks", "nvr.tracks.*", "nvr.events.>"):
            await nc.subscribe(subj, cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30)
        await nc.flush()

        t0_ns = (time.time_ns() - int((scene.duration + 10) * 1e9)) // 200_000_000 * 200_000_000
        msgs = detection_messages(scene, t0_ns, embeddings)
        t_pub = time.monotonic()
        dup = 0
        for ts_ns, cam, seq, payload in msgs:
            ack = await js.publish(f"nvr.detections.{cam}", payload, timeout=10,
                                   headers={"Content-Type": "application/msgpack", "Nats-Msg-Id": f"{cam}-{seq}"})
            dup += bool(ack.duplicate)
        t_done = time.monotonic()
        timing["publish_s"] = t_done - t_pub
        # nvr's shard keeps publishing cycles after its input stops (it carries
        # its clock forward so tracks expire), so "done" is: every CameraTracks
        # is in (or none came for quiet_s) and a cycle at or after the last
        # detection's time was published (or none came for quiet_s).
        deadline, last_ts = t_done + timeout_s, msgs[-1][0]
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                raise RunError(f"nvr exited ({proc.returncode}) during the run\n{log_tail(log)}")
            tracks_done = last["n_tracks"] >= len(msgs) or now - max(last["tracks"], t_done) >= quiet_s
            spatial_done = last["spatial_ts"] >= last_ts or now - max(last["spatial"], t_done) >= quiet_s
            if tracks_done and spatial_done:
                break
            if now > deadline:
                raise RunError(f"output did not stop within {timeout_s} s\n{log_tail(log)}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)   # events of the last cycles
        timing["drain_s"] = time.monotonic() - t_done
        stats = {}
        for path in ("/api/v1/spatial/stats", "/api/v1/system/health"):
            try:
                stats[path] = await asyncio.to_thread(http_json, f"http://127.0.0.1:{api_port}{path}", 5.0)
            except Exception as e:  # noqa: BLE001 - diagnostics only
                stats[path] = {"error": str(e)}
        await nc.drain()
        nc = None
    finally:
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # noqa: BLE001
                pass
        rc = _stop(proc)
        shutil.rmtree(store, ignore_errors=True)
        (run_dir / "messages.msgpack").write_bytes(msgpack.packb(got))
    return dict(messages=decode_all(got), t0_ns=t0_ns, published=len(msgs), duplicates=dup,
                last_det_ts_ns=msgs[-1][0],
                timing=timing, api=stats, exit_code=rc, log=str(log), run_dir=str(run_dir))


def _stop(proc) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # nvr and its nats-server child (own group)
            return proc.wait(10)
    return proc.returncode


def decode_all(got):
    out = {"spatial": [], "tracks": [], "events": [], "other_version": 0}
    for subject, data in got:
        m = msgpack.unpackb(data)
        if m.get("v") != 1:
            out["other_version"] += 1
            continue
        kind = "spatial" if subject.startswith("nvr.spatial.") else subject.split(".")[1]
        out[kind].append(m)
    return out


def run_scene(scene, nvr, run_dir, overrides=None, embeddings=True, quiet_s=4.0, timeout_s=300.0):
    """Runs `scene` through `nvr run`; returns messages, t0_ns, timing, API stats.
    Raises RunError (with nvr's log tail) when the run fails."""
    return asyncio.run(_run(scene, Path(nvr).resolve(), Path(run_dir).resolve(), overrides, embeddings, quiet_s, timeout_s))


if __name__ == "__main__":
    import argparse
    import sim
    ap = argparse.ArgumentParser(description="run one scene through nvr")
    ap.add_argument("--nvr", default=str(REPO / "target/release/nvr"))
    ap.add_argument("--difficulty", default="decent")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--out", default="/tmp/spatial_live_one")
    a = ap.parse_args()
    sc = sim.Scene(sim.difficulty(a.difficulty), a.seed, a.people, a.duration)
    r = run_scene(sc, a.nvr, a.out)
    print({k: len(v) if isinstance(v, list) else v for k, v in r["messages"].items()}, r["timing"])
