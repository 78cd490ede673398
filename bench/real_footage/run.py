"""Real-footage check of nvr's cross-camera identity.

Usage::

    data/pyenv/bin/python bench/real_footage/run.py --nvr target/release/nvr --out DIR \\
        [--frames N] [--runs 3] [--video data/samples/vtest.avi] \\
        [--results bench/results] [--max-frame-age-ms 2000] [--analyse-only] \\
        [--reference-from RUN_DIR]

The sample video is decoded at 5 fps and cut into two overlapping views
(``left`` x in [0,480), ``right`` x in [288,768)) plus the full frame
(``full``, the reference); see ``frames.py``. For each run a fresh
``nvr run`` (embedded NATS, detection on the CPU, spatial; see
``nvrproc.py``) gets the three cameras as external cameras, ``left`` and
``right`` on floor ``lobby`` and ``full`` alone on floor ``ref``; the
harness publishes the JPEG frames in real time and collects
``CameraTracks``, ``SpatialTracks`` and events (``publish.py``), stops nvr
with SIGTERM and scores the run (``metrics.py``, ``diagnose.py``). The same
input is run ``--runs`` times (default 3) to show the spread.

Output: ``DIR/run<k>/`` (config, nvr log, collected messages ``bus.msgpack``,
``meta.json``, ``metrics.json``) and the summary ``DIR/real_footage.{json,md}``,
also written to ``--results`` (default ``bench/results``; there the JSON keeps
the per-item details of run 1 only). ``--analyse-only``
re-scores the runs already in DIR without starting nvr.

The reference comes from nvr's own camera tracker, so a run with other
``tracking.*`` settings also changes its reference. ``--reference-from
RUN_DIR`` (a ``run<k>`` directory of an earlier run, e.g. one at the
defaults) scores these runs against that run's ``full`` camera tracks
instead: the same input gives the same frames, so a tracker variant is
compared with the default on one reference.

nvr inherits this environment, so configuration variables change what is
measured: ``DETECTION_REID_MODEL=mobilenetv2_reid`` runs the detector with
the appearance model (``bench/results/real_footage_reid_model.md``). The
report's command line names every ``DETECTION_*``, ``TRACKING_*`` and
``SPATIAL_*`` variable that was set.

Exit code 0 when every run completed; 1 with nvr's log tail on any failure.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diagnose  # noqa: E402
import frames as frames_mod  # noqa: E402
import metrics  # noqa: E402
import nvrproc  # noqa: E402
import publish  # noqa: E402
import report  # noqa: E402

REPO = nvrproc.REPO


def log(msg):
    print(msg, flush=True)


def snapshot_binary(src, out):
    """Copies the nvr binary (it may be rebuilt meanwhile) and describes it."""
    src = Path(src).resolve()
    if not src.is_file():
        raise nvrproc.NvrError(f"nvr binary not found: {src}")
    dst = Path(out) / "nvr.bin"
    for _ in range(3):
        st = src.stat()
        shutil.copy2(src, dst)
        if src.stat().st_mtime == st.st_mtime and dst.stat().st_size == st.st_size:
            break
        time.sleep(2)
    dst.chmod(0o755)
    sha = hashlib.sha256(dst.read_bytes()).hexdigest()
    ver = subprocess.run([str(dst), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False).stdout.strip()
    info = {
        "path": str(src),
        "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(src.stat().st_mtime)),
        "sha256": sha[:16],
        "version": ver,
        "repo_head": head + (" (working tree modified)" if dirty else ""),
    }
    return dst, info


def log_findings(path):
    """WARN/ERROR lines of nvr's log, grouped by message (first example kept)."""
    groups = {}
    counts = {"WARN": 0, "ERROR": 0}
    for line in Path(path).read_text(errors="replace").splitlines():
        for lvl in ("WARN", "ERROR"):
            if f" {lvl} " in line:
                counts[lvl] += 1
                msg = line.split(f" {lvl} ", 1)[1]
                key = lvl + " " + "".join(c for c in msg[:60] if not c.isdigit())
                g = groups.setdefault(key, {"level": lvl, "count": 0, "example": msg[:300]})
                g["count"] += 1
    return {"counts": counts, "messages": list(groups.values())}


def measured_white_points(run_dir):
    """camera -> the white point the detection status of an earlier run measured."""
    meta = json.loads((Path(run_dir) / "meta.json").read_text())
    cams = (meta.get("detector_status") or {}).get("cameras") or {}
    wp = {c: v["white_point"] for c, v in cams.items() if v.get("white_point")}
    if not wp:
        raise SystemExit(f"{run_dir}: its detection status measured no white point")
    log(f"white points from {run_dir}: {wp}")
    return wp


def one_run(binary, src_frames, run_dir, args):
    """Starts nvr, publishes, collects, stops; returns the session meta."""
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="nvr-rf-store-"))
    nats_port, api_port = nvrproc.free_port(), nvrproc.free_port()
    cfg = run_dir / "config.yaml"
    nvrproc.write_config(cfg, store, nats_port, api_port, max_frame_age_ms=args.max_frame_age_ms, overrides=args.set,
                         white_points=args.white_points)
    nvr = nvrproc.Nvr(binary, cfg, api_port, run_dir / "nvr.log")
    t0 = time.monotonic()
    try:
        nvrproc.config_check(binary, cfg, run_dir / "config_check.txt")
        nvr.start()
        meta = publish.session(
            nvr, f"nats://127.0.0.1:{nats_port}", src_frames, run_dir, tolerate_skips=args.tolerate_skips, log=log
        )
        # The shards' counters at the end (camera pair agreement among them).
        meta["spatial_stats"] = nvr.get("/api/v1/spatial/stats")
    except nvrproc.NvrError:
        nvr.stop()
        shutil.rmtree(store, ignore_errors=True)
        raise
    except BaseException as e:  # noqa: BLE001 - any failure is reported with nvr's log
        nvr.stop()
        shutil.rmtree(store, ignore_errors=True)
        nvr.fail(f"harness error during the run: {e!r}")
    rc = nvr.stop()
    shutil.rmtree(store, ignore_errors=True)
    if rc != 0:
        nvr.fail(f"nvr exited with code {rc} after SIGTERM")
    meta["nvr_exit_code"] = rc
    meta["wall_s"] = time.monotonic() - t0
    meta["log"] = log_findings(run_dir / "nvr.log")
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def load_run(run_dir):
    """The messages of the run saved in ``run_dir``, parsed."""
    meta = json.loads((run_dir / "meta.json").read_text())
    return metrics.Run(publish.load_bus(run_dir / "bus.msgpack"), meta)


def score_run(run_dir, reference=None):
    """Metrics and diagnosis of the run saved in ``run_dir``; ``reference``:
    a run whose ``full`` camera tracks are the reference instead."""
    run = load_run(run_dir)
    meta = run.meta
    if reference is not None:
        if len(reference.frames) != len(run.frames):
            raise nvrproc.NvrError(
                f"--reference-from: {len(reference.frames)} frames there, {len(run.frames)} here (not the same input)"
            )
        run.tracks[metrics.REFERENCE] = reference.tracks[metrics.REFERENCE]
    m = metrics.compute(run)
    d = diagnose.diagnose(run, m)
    out = metrics.public(m)
    out["diagnosis"] = d
    out["fingerprint"] = fingerprint(run)
    out["session"] = {
        k: meta.get(k)
        for k in ("publish_s", "publish_late_ms_max", "wall_s", "nvr_exit_code", "detector_problems", "log")
    }
    det = meta.get("detector_status") or {}
    out["session"]["detector"] = {
        k: det.get(k)
        for k in ("processed_count", "skipped_count", "error_count", "refused", "e2e_p50_latency_ms", "e2e_p99_latency_ms",
                  "p50_latency_ms", "p99_latency_ms")
    }
    shards = (meta.get("spatial_stats") or {}).get("shards") or []
    out["session"]["spatial_shards"] = [
        {k: s.get(k) for k in ("shard", "cycles", "ingested", "rejected", "refused", "total_tracks", "handoffs_completed", "handoff_failures")}
        for s in shards
    ]
    (run_dir / "metrics.json").write_text(json.dumps(out, indent=1, default=str))
    return out


def fingerprint(run):
    """Time-free digests of the outputs, to compare runs for determinism."""

    def digest(items):
        return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:12]

    out = {}
    for cam in sorted(run.tracks):
        items = []
        for fi in sorted(run.tracks[cam]):
            items.append([fi, [[t["track_id"], t["state"], [round(x, 3) for x in t["bbox"]]] for t in run.tracks[cam][fi]]])
        out[f"tracks.{cam}"] = digest(items)
    base = run.meta["base_ns"]
    # Cycles up to the last frame: after the input ends a shard carries its
    # clock forward by the wall clock so identities expire, and how many of
    # those cycles the harness sees before it stops nvr is wall-clock timing.
    end = run.frames[-1]["ts_ns"] if run.frames else base
    for shard, all_cycles in sorted(run.spatial.items()):
        cycles = [c for c in all_cycles if c[0] <= end]
        items = []
        for ts, tracks in cycles:
            items.append(
                [
                    (ts - base) // 1_000_000,
                    sorted(
                        [t["global_id"], t.get("state"), sorted((s["camera"], s["track_id"]) for s in t["sources"]), round(t["x_m"], 2), round(t["y_m"], 2)]
                        for t in tracks
                    ),
                ]
            )
        out[f"spatial.{shard}"] = digest(items)
        out[f"spatial.{shard}.cycles"] = len(cycles)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvr", default=str(REPO / "target" / "release" / "nvr"), help="nvr binary")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--frames", type=int, default=0, help="source frames to use (0 = the whole video)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the same input")
    ap.add_argument("--video", default=str(REPO / "data" / "samples" / "vtest.avi"))
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--results", default=str(REPO / "bench" / "results"), help="where real_footage.{json,md} go too ('' = only --out)")
    ap.add_argument("--max-frame-age-ms", type=int, default=2000, help="detection.max_frame_age_ms of the generated config")
    ap.add_argument("--tolerate-skips", action="store_true", help="do not fail when the detector skips frames")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. spatial.tuning.camera_debias=false (repeatable)")
    ap.add_argument("--analyse-only", action="store_true", help="re-score the runs in --out, start nothing")
    ap.add_argument("--reference-from", metavar="RUN_DIR", help="score against the full-frame camera tracks of this earlier run<k> directory")
    ap.add_argument("--white-points-from", metavar="RUN_DIR", help="set each camera's white point to what the detection status of this earlier run<k> directory measured")
    args = ap.parse_args(argv)
    args.white_points = measured_white_points(args.white_points_from) if args.white_points_from else None
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        if args.analyse_only:
            setup = json.loads((out / "setup.json").read_text())
            run_dirs = sorted(p for p in out.glob("run*") if (p / "bus.msgpack").is_file())
            if not run_dirs:
                raise nvrproc.NvrError(f"no runs in {out}")
        else:
            binary, binfo = snapshot_binary(args.nvr, out)
            log(f"nvr: {binfo}")
            log(f"decoding {args.video} at {args.fps} fps ...")
            src = frames_mod.decode(args.video, fps=args.fps, max_frames=args.frames or None)
            log(f"{len(src)} source frames x 3 cameras")
            setup = {
                "binary": binfo,
                "video": args.video,
                "fps": args.fps,
                "source_frames": len(src),
                "frames_arg": args.frames,
                "runs": args.runs,
                "views": frames_mod.VIEWS,
                "max_frame_age_ms": args.max_frame_age_ms,
                "white_points": args.white_points,
                # configuration overrides nvr inherits from this environment
                "env": {
                    k: v
                    for k, v in sorted(os.environ.items())
                    if k.startswith(("DETECTION_", "TRACKING_", "SPATIAL_"))
                },
            }
            (out / "setup.json").write_text(json.dumps(setup, indent=1))
            run_dirs = []
            for k in range(1, args.runs + 1):
                rd = out / f"run{k}"
                if rd.exists():
                    shutil.rmtree(rd)
                log(f"run {k}/{args.runs} ...")
                meta = one_run(binary, src, rd, args)
                log(
                    f"run {k}: published in {meta['publish_s']:.1f} s, nvr exit {meta['nvr_exit_code']}, "
                    f"detector skipped {meta['detector_status'].get('skipped_count')}, "
                    f"log WARN {meta['log']['counts']['WARN']} ERROR {meta['log']['counts']['ERROR']}"
                )
                run_dirs.append(rd)
            setup["runs_wall_s"] = time.monotonic() - t0
            (out / "setup.json").write_text(json.dumps(setup, indent=1))
        reference = None
        if args.reference_from:
            reference = load_run(Path(args.reference_from).resolve())
            setup["reference_from"] = str(Path(args.reference_from).resolve())
        scored = []
        for rd in run_dirs:
            log(f"scoring {rd.name} ...")
            scored.append(score_run(rd, reference))
        summary = report.summarise(setup, scored)
        summary["runtime_s"] = time.monotonic() - t0
        text = report.markdown(summary)
        targets = [out] + ([Path(args.results)] if args.results else [])
        for i, t in enumerate(targets):
            t.mkdir(parents=True, exist_ok=True)
            doc = summary if i == 0 else report.compact(summary)
            (t / "real_footage.json").write_text(json.dumps(doc, indent=1, default=str))
            (t / "real_footage.md").write_text(text)
        print(report.console(summary), flush=True)
        log(f"written: {', '.join(str(t / 'real_footage.md') for t in targets)} (runtime {summary['runtime_s']:.0f} s)")
        return 0
    except nvrproc.NvrError as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
