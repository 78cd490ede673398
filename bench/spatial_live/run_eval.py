"""Live cross-camera (spatial) tracking evaluation of nvr: the CLI.

Why: scores what a running `nvr run` publishes on NATS for scenes of an
independent simulator (sim.py), next to two baselines computed from the
same run's camera tracks and an ablation with re-identification off. See
sim.py (scene and detector model), live.py (how a scene goes through nvr)
and score.py (metric definitions).

    data/pyenv/bin/python bench/spatial_live/run_eval.py \\
        --nvr target/release/nvr --difficulty perfect,decent,poor \\
        --seeds 100-119 --people 20 --duration 60 --ablations \\
        --out bench/results --jobs 1

Seeds: 0-9 are for tuning (looking at behaviour, choosing knobs); 100-119 are
the reporting set and must not be used for tuning.

For each difficulty and seed: one scene, run through nvr (`nvr`), and with
`--ablations` once more with `spatial.reid_enabled: false` and otherwise the
very same published detections, embeddings included (`nvr_reid_off`: only
the spatial re-ID changes; the camera trackers still see the embeddings);
baselines `nearest` and `per_camera_ids`, and the reference bounds
`oracle_linking` and `oracle_per_frame` (perfect cross-camera linking of the
same camera tracks, with the ground truth), come from the `nvr` run's
`nvr.tracks.*`. Per difficulty and method it prints and writes the mean and
the worst (min for IDF1/MOTA/HOTA, max for IDSW) over seeds, to
OUT/spatial_live.json and OUT/spatial_live.md (rewritten after every scene,
so a long run can be watched). A run that fails is retried once; every
failure is listed with the tail of nvr's log, never skipped silently.
Run directories (config.yaml, nvr.log, messages.msgpack, run.json) and the
pinned nvr copy go under --work (default: a temporary directory). With the
same --work, `--resume` reuses every saved run (and the pinned nvr) and runs
only what is missing (e.g. after the evaluation was killed); `--rescore`
only scores the saved runs again (after a change to score.py).
`NVR_SIM_KNOBS=merge_p=0` (any number knob of sim.Knobs, comma-separated)
runs every difficulty with that knob changed, to measure what it costs;
keep it set for `--rescore` and diagnose.py on those runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live  # noqa: E402
import score  # noqa: E402
import sim  # noqa: E402

METHODS = ["nvr", "nvr_reid_off", "nearest", "per_camera_ids", "oracle_linking", "oracle_per_frame"]
FLOOR = [("idf1", "IDF1"), ("mota", "MOTA"), ("hota", "HOTA"), ("idsw", "IDSW")]
CAM = [("cam_idf1", "cam IDF1"), ("cam_mota", "cam MOTA")]


def pin_binary(path, work, reuse=False):
    """Copies the nvr binary into the work dir (a rebuild during a long run must
    not mix versions) and describes it; with `reuse`, keeps a copy already there."""
    dst = work / "nvr"
    src = dst if reuse and dst.is_file() else Path(path).resolve()
    if src != dst:
        shutil.copy2(src, dst)
    info = {"source": str(src), "pinned": str(dst), "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(src.stat().st_mtime)),
            "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()[:16]}
    for key, cmd in (("version", [str(dst), "--version"]), ("git_head", ["git", "-C", str(live.REPO), "rev-parse", "--short", "HEAD"]),
                     ("git_dirty_files", ["git", "-C", str(live.REPO), "status", "--porcelain", "--untracked-files=no"])):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            info[key] = f"? ({e})"
    info["git_dirty_files"] = len(info["git_dirty_files"].splitlines()) if isinstance(info["git_dirty_files"], str) else 0
    return info


def parse_set(kv):
    """`a.b.c=value` -> ("a.b.c", value parsed as YAML)."""
    import yaml
    key, sep, value = kv.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set {kv!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def parse_seeds(text):
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def saved_run(run_dir, variant):
    """A run saved by an earlier invocation (for --rescore): the retry if there is one."""
    for name in (f"{variant}_retry", variant):
        d = Path(run_dir) / name
        if (d / "run.json").is_file() and (d / "messages.msgpack").is_file():
            meta = json.loads((d / "run.json").read_text())
            got = msgpack.unpackb((d / "messages.msgpack").read_bytes())
            return {"messages": live.decode_all(got), "t0_ns": meta["t0_ns"], "api": meta.get("api", {}),
                    "timing": meta.get("timing", {})}
    raise FileNotFoundError(f"no saved {variant} run under {run_dir}")


def one_run(scene, meta, nvr, run_dir, variant, overrides, embeddings, resume=False):
    """A run, retried once; returns (run or None, [failure dicts]). nvr None
    (--rescore): the saved run only; `resume`: the saved run if there is one."""
    failures = []
    if nvr is None or resume:
        try:
            return saved_run(run_dir, variant), failures
        except Exception as e:  # noqa: BLE001 - reported, never skipped
            if nvr is None:
                return None, [{**meta, "variant": variant, "attempt": 0, "error": f"{type(e).__name__}: {e}",
                               "traceback": "", "log_tail": "", "run_dir": str(run_dir)}]
    for attempt in (1, 2):
        d = Path(run_dir) / (variant if attempt == 1 else f"{variant}_retry")
        try:
            r = live.run_scene(scene, nvr, d, overrides=overrides, embeddings=embeddings)
            (d / "run.json").write_text(json.dumps({**meta, "variant": variant, "t0_ns": r["t0_ns"],
                                                    "overrides": overrides, "embeddings": embeddings,
                                                    "timing": r["timing"], "api": r["api"]}, indent=1))
            return r, failures
        except Exception as e:  # noqa: BLE001 - reported, never skipped
            tail = live.log_tail(d / "nvr.log")
            failures.append({**meta, "variant": variant, "attempt": attempt, "error": f"{type(e).__name__}: {e}",
                             "traceback": traceback.format_exc(limit=3), "log_tail": tail, "run_dir": str(d)})
            print(f"  FAILED {meta['difficulty']} seed {meta['seed']} {variant} (attempt {attempt}): {e}",
                  file=sys.stderr, flush=True)
    return None, failures


def eval_scene(args_tuple):
    difficulty, seed, people, duration, nvr, ablations, work, sets, resume = args_tuple
    meta = {"difficulty": difficulty, "seed": seed, "people": people, "duration": duration}
    t = time.time()
    scene = sim.Scene(sim.difficulty(difficulty), seed, people, duration)
    out = {**meta, "sim_stats": scene.stats(), "coverage": scene.coverage(1.0), "methods": {}, "failures": [],
           "timing": {"sim_s": time.time() - t}}
    run_dir = Path(work) / difficulty / f"s{seed}"
    t = time.time()
    run, fails = one_run(scene, meta, nvr, run_dir, "nvr", dict(sets) or None, True, resume)
    out["failures"] += fails
    out["timing"]["nvr_run_s"] = time.time() - t
    truth = None
    if run:
        t = time.time()
        res, truth = score.score_run(scene, run)
        out["timing"]["score_s"] = time.time() - t
        out["methods"]["nvr"] = res["nvr"]
        out["methods"]["nearest"] = res["nearest"]
        out["methods"]["per_camera_ids"] = res["per_camera_ids"]
        out["methods"]["oracle_linking"] = res["oracle_linking"]
        out["methods"]["oracle_per_frame"] = res["oracle_per_frame"]
        out["events"] = res["events"]
        out["api_refused"] = refused_counts(run["api"])
    if ablations:
        t = time.time()
        run2, fails = one_run(scene, meta, nvr, run_dir, "nvr_reid_off", {**dict(sets), "spatial.reid_enabled": False}, True, resume)
        out["failures"] += fails
        out["timing"]["ablation_run_s"] = time.time() - t
        if run2:
            res2, _ = score.score_run(scene, run2, truth=truth, baselines=False)
            out["methods"]["nvr_reid_off"] = res2["nvr"]
            out["reid_off_door_reentries"] = res2["nvr"].get("door_reentries")
    return out


def refused_counts(api):
    st = api.get("/api/v1/spatial/stats", {})
    out = {"spatial": {}, "tracking": {}}
    for sh in st.get("shards", []):
        for k, v in (sh.get("refused") or {}).items():
            out["spatial"][k] = out["spatial"].get(k, 0) + v
    for cam, t in (st.get("tracking") or {}).items():
        for k, v in (t.get("refused") or {}).items():
            out["tracking"][k] = out["tracking"].get(k, 0) + v
        for k in ("late", "malformed", "seq_resets"):
            if t.get(k):
                out["tracking"][k] = out["tracking"].get(k, 0) + t[k]
    return out


def flat(m):
    return {"idf1": m["idf1"], "mota": m["mota"], "hota": m["hota"], "idsw": m["idsw"],
            "cam_idf1": m["camera"]["mean"]["idf1"], "cam_mota": m["camera"]["mean"]["mota"]}


def aggregate(scenes, difficulties):
    agg = {}
    for d in difficulties:
        rows = [s for s in scenes if s["difficulty"] == d]
        agg[d] = {"scenes": len(rows), "failed_runs": sum(len(s["failures"]) for s in rows)}
        for meth in METHODS:
            vals = [flat(s["methods"][meth]) for s in rows if meth in s["methods"]]
            if not vals:
                continue
            a = {"n": len(vals)}
            for k in vals[0]:
                v = np.array([x[k] for x in vals], float)
                a[k] = {"mean": float(v.mean()), "worst": float(v.max() if k == "idsw" else v.min())}
            agg[d][meth] = a
        nv = [s["methods"]["nvr"] for s in rows if "nvr" in s["methods"]]
        if nv:
            agg[d]["nvr_diagnostics"] = {
                "missing_cycles_mean": float(np.mean([m["missing_cycles"] for m in nv])),
                "lost_box_outside_entries_mean": float(np.mean([m["lost_box_outside"]["entries"] for m in nv])),
                "tracks_confirmed_again_after_refused_box_mean":
                    float(np.mean([m["lost_box_outside"]["confirmed_again"] for m in nv])),
                "mota_from_first_cycle_mean": float(np.mean([(m["from_first_cycle"] or {"mota": 0})["mota"] for m in nv])),
                "idf1_from_first_cycle_mean": float(np.mean([(m["from_first_cycle"] or {"idf1": 0})["idf1"] for m in nv])),
                "door_reentries_same_id_gap_lt_30s": "%d of %d" % (
                    sum(m.get("door_reentries", {}).get("same_gap<30s", 0) for m in nv),
                    sum(m.get("door_reentries", {}).get(k, 0) for m in nv for k in ("same_gap<30s", "new_gap<30s"))),
                "static_cycles_on_a_person_mean": float(np.mean([m.get("static", {}).get("within_1m_of_a_person", 0) for m in nv])),
                "static_cycles_elsewhere_mean": float(np.mean([m.get("static", {}).get("no_person_within_1m", 0) for m in nv])),
                "global_ids_mean": float(np.mean([m["hyp_ids"] for m in nv])),
                "gt_ids_mean": float(np.mean([m["gt_ids"] for m in nv])),
                "loc_error_m_mean": float(np.mean([m["motp_m"] or 0 for m in nv]))}
        st = [s["sim_stats"] for s in rows]
        agg[d]["sim"] = {k: float(np.mean([x[k] for x in st])) for k in
                         ("recall", "true_scores_below_0_7", "ghost_dets", "door_leaves")}
    return agg


def fmt(a, k):
    if k not in a:
        return "-"
    m, w = a[k]["mean"], a[k]["worst"]
    return f"{m:.1f} / {w:.0f}" if k == "idsw" else f"{m:.3f} / {w:.3f}"


def markdown(args, agg, scenes, difficulties, elapsed, binary):
    k0 = sim.difficulty(difficulties[0])
    ncam = len(sim.cameras(k0))
    rate = f"{ncam} cameras at {k0.fps:g} fps"
    room = (f"room: rig 0, {k0.floor_w:g} x {k0.floor_h:g} m, {rate} (tuning seeds 0-9, reporting seeds 100-119)"
            if k0.rig == 0 else
            f"room: rig {k0.rig}, {k0.floor_w:g} x {k0.floor_h:g} m, {rate}; nothing was tuned on this room, "
            "so every seed is held out")
    room += (f"; each camera's white point set in the config, measured on a separate {k0.white_point_s:g} s "
             "recording of the same cameras with other people" if k0.white_point and k0.emb_dim <= 0
             else "; no white points set")
    L = ["# Live spatial tracking evaluation (bench/spatial_live)", "",
         f"nvr `{binary['source']}` ({binary.get('version')}, built {binary['mtime']}, sha256 {binary['sha256']}…; "
         f"checkout {binary.get('git_head')} with {binary.get('git_dirty_files')} modified tracked files); seeds `{args.seeds}`; {room}; "
         f"{args.people} people, {args.duration:g} s per scene; {elapsed / 60:.1f} min in all.", "",
         "Every cell: mean / worst over seeds (worst = min for IDF1, MOTA, HOTA; max for IDSW). Floor "
         "metrics per 200 ms spatial cycle, 1 m gate (HOTA: similarity max(0, 1 - d/1 m)); hypotheses = "
         "`observed` + `coasting` tracks; ground truth = people in the room detectable (>= 50% of the box "
         "visible, >= 28 px high) by at least one started camera. cam IDF1/MOTA: `nvr.tracks.<cam>` "
         "confirmed tracks vs visible boxes, IoU >= 0.5, mean over the cameras. `nvr_reid_off`: "
         "`spatial.reid_enabled: false`, same detections (embeddings kept). `nearest`, `per_camera_ids`: baselines from "
         "the `nvr` run's camera tracks (score.py). `oracle_linking`, `oracle_per_frame`: not baselines but "
         "reference bounds: the same camera tracks linked across cameras with the ground truth, per camera "
         "track (its majority person) or per observation (score.py); what perfect linking could make of them.", ""]
    for d in difficulties:
        a = agg[d]
        L += [f"## {d}", "",
              f"scenes {a['scenes']}, failed runs {a['failed_runs']}; simulated detector: recall after the 0.5 cut "
              f"{a['sim']['recall']:.3f}, true scores < 0.7 {a['sim']['true_scores_below_0_7']:.2f}, "
              f"ghost detections/scene {a['sim']['ghost_dets']:.0f}, door exits/scene {a['sim']['door_leaves']:.1f}", "",
              "| method | n | " + " | ".join(h for _, h in FLOOR + CAM) + " |",
              "|---|---|" + "---|" * (len(FLOOR) + len(CAM))]
        for meth in METHODS:
            if meth in a:
                L.append(f"| {meth} | {a[meth]['n']} | " + " | ".join(fmt(a[meth], k) for k, _ in FLOOR + CAM) + " |")
        if "nvr_diagnostics" in a:
            L += ["", "nvr diagnostics (means): " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in a["nvr_diagnostics"].items())]
        L.append("")
    fails = [f for s in scenes for f in s["failures"]]
    if fails:
        L += ["## Failed runs", ""]
        for f in fails:
            L += [f"### {f['difficulty']} seed {f['seed']} {f['variant']} attempt {f['attempt']}", "",
                  f"`{f['error'].splitlines()[0]}` (run dir `{f['run_dir']}`)", "", "```", f["log_tail"][-3000:], "```", ""]
    L += ["## Knobs (sim.Knobs per difficulty)", "", "| knob | " + " | ".join(difficulties) + " |",
          "|---|" + "---|" * len(difficulties)]
    kn = {d: dataclasses.asdict(sim.difficulty(d)) for d in difficulties}
    for k in kn[difficulties[0]]:
        L.append(f"| {k} | " + " | ".join(str(kn[d][k]) for d in difficulties) + " |")
    L += ["", "Cameras (id, position m, yaw deg, tilt deg, image, hfov deg; poses jittered per seed): "
          + "; ".join(f"{c[0]} {c[1]} {c[2]} {c[3]} {c[4][0]}x{c[4][1]} {c[5]}" for c in sim.cameras(sim.difficulty(difficulties[0]))), ""]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nvr", default=str(live.REPO / "target/release/nvr"))
    ap.add_argument("--difficulty", default="perfect,decent,poor")
    ap.add_argument("--seeds", default="100-119")
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--out", default=str(live.REPO / "bench/results"))
    ap.add_argument("--work", default=None, help="run directories (default: a new temporary directory)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every nvr run, e.g. spatial.tuning.camera_debias=false (repeatable)")
    ap.add_argument("--rescore", action="store_true",
                    help="score the runs saved under --work again (after a scorer change) instead of running nvr")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the runs (and the pinned nvr) saved under --work; run only what is missing")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so live.py's `finally` stops the nvr it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    diffs = [d.strip() for d in args.difficulty.split(",") if d.strip()]
    for d in diffs:
        sim.difficulty(d)
    seeds = parse_seeds(args.seeds)
    if (args.rescore or args.resume) and not args.work:
        sys.exit("--rescore and --resume need --work (the directory of the saved runs)")
    if not args.rescore and not Path(args.nvr).is_file():
        sys.exit(f"nvr binary {args.nvr} not found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="spatial_live_")
    Path(work).mkdir(parents=True, exist_ok=True)
    if args.rescore:
        binary = json.loads((Path(work) / "nvr_binary.json").read_text()) if (Path(work) / "nvr_binary.json").is_file() \
            else {"source": "?", "pinned": "?", "mtime": "?", "sha256": "?"}
        binary["rescored"] = True
    else:
        binary = pin_binary(args.nvr, Path(work), reuse=args.resume)
        (Path(work) / "nvr_binary.json").write_text(json.dumps(binary))
    print(f"run directories under {work}; nvr pinned: {binary}", flush=True)
    nvr = None if args.rescore else binary["pinned"]
    sets = tuple(parse_set(kv) for kv in args.set)
    jobs = [(d, s, args.people, args.duration, nvr, args.ablations, work, sets, args.resume)
            for d in diffs for s in seeds]
    scenes, t0 = [], time.time()

    def done(res):
        scenes.append(res)
        scenes.sort(key=lambda s: (diffs.index(s["difficulty"]), s["seed"]))
        line = " ".join(f"{m}: IDF1 {v['idf1']:.3f} MOTA {v['mota']:.3f} HOTA {v['hota']:.3f} IDSW {v['idsw']}"
                        for m, v in res["methods"].items())
        print(f"{res['difficulty']} seed {res['seed']} ({sum(res['timing'].values()):.0f} s): {line}"
              + (f" [{len(res['failures'])} failed]" if res["failures"] else ""), flush=True)
        agg = aggregate(scenes, [d for d in diffs if any(s["difficulty"] == d for s in scenes)])
        elapsed = time.time() - t0
        (out / "spatial_live.json").write_text(json.dumps(
            {"args": vars(args), "work": work, "nvr_binary": binary, "elapsed_s": elapsed, "complete": len(scenes) == len(jobs),
             "knobs": {d: dataclasses.asdict(sim.difficulty(d)) for d in diffs}, "cameras": sim.cameras(sim.difficulty(diffs[0])),
             "aggregate": agg, "scenes": scenes}, indent=1, default=str))
        (out / "spatial_live.md").write_text(markdown(args, agg, scenes, list(agg), elapsed, binary))
        return agg

    agg = {}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            for res in ex.map(eval_scene, jobs):
                agg = done(res)
    else:
        for j in jobs:
            agg = done(eval_scene(j))
    print()
    for d in diffs:
        print(f"== {d} (mean / worst) ==")
        print(f"{'method':16s}" + "".join(f"{h:>17s}" for _, h in FLOOR + CAM))
        for meth in METHODS:
            if meth in agg.get(d, {}):
                print(f"{meth:16s}" + "".join(f"{fmt(agg[d][meth], k):>17s}" for k, _ in FLOOR + CAM))
    nfail = sum(len(s["failures"]) for s in scenes)
    print(f"\nwrote {out / 'spatial_live.json'} and {out / 'spatial_live.md'}; {nfail} failed run(s)"
          + (" - see the 'Failed runs' section" if nfail else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
