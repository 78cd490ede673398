"""Scores what a live nvr published against the simulator's ground truth.

Why: the number that matters is what a client of the bus sees. Everything
here works from the messages collected by live.py (`nvr.spatial.*.tracks`,
`nvr.tracks.*`) and from the scene (sim.py).

Floor (cross-camera) metrics, one frame per 200 ms spatial cycle of the scene
(every cycle from the first camera's start to the scene's end, in the
cameras' message time = scene time + the camera clock error; a cycle nvr did
not publish counts as an empty output, see `missing_cycles`):

* hypotheses: the tracks of the cycle's `SpatialTracks` whose `state` is
  `observed` or `coasting` (absent state reads as `observed`), at
  (`x_m`, `y_m`), identity `global_id`, as subjects/README.md defines "who
  is on the floor"; `lost` and `static` ones are not (diagnostic
  `static`: how many `static` track-cycles sat within 1 m of a real person);
* ground truth (`Scene.floor_truth`): every person in the room at the
  cycle's time (trajectory interpolated) who is *detectable* by at least one
  camera that has started: at least `min_visible` (0.5) of the person's
  projected box visible after image-border clipping and occlusion by nearer
  people, and the visible box at least `min_box_h_px` high. People in blind
  areas, outside the door, or hidden are not expected;
* motmetrics IDF1, MOTA, ID switches with a 1 m gate (squared distance <= 1.0,
  `mm.distances.norm2squared_matrix(max_d2=1.0)`); trackeval HOTA (mean over
  its alphas) with similarity max(0, 1 - d / 1 m).

Per camera: `nvr.tracks.<cam>` tracks with `state` `confirmed` against that
frame's detectable boxes (the visible extent, no jitter), IoU >= 0.5;
IDF1/MOTA per camera and their mean over cameras.

Baselines from the same run's `nvr.tracks.*` (confirmed tracks; foot = box
bottom centre through a homography fitted to the config's calibration
points; per cycle, each camera's latest message at or before the cycle,
at most 250 ms old):
* `per_camera_ids`: every (camera, track_id) is its own floor identity;
* `nearest`: greedy nearest-neighbour association of the camera tracks to
  identities seen in the last 2 s, within 1.5 m (one source per camera per
  identity), else a new identity; position = mean of its sources.

Reference bounds from the same camera tracks, using the ground truth (what
perfect cross-camera linking could make of these camera tracks; not
baselines a tracker could run):
* `oracle_linking`: each (camera, track_id) takes the identity of the
  person its foot point is most often within 1 m of (its majority person);
  tracks of one person at a cycle are one identity at the mean of their
  foot points. Camera-tracker swaps stay errors; nothing coasts.
* `oracle_per_frame`: the same, but each observation takes the person it
  is within 1 m of at that cycle: camera-tracker swaps are repaired too.

`python score.py RUN_DIR` re-scores a saved run (run.json + messages.msgpack).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

if not hasattr(np, "asfarray"):   # motmetrics 1.4 / trackeval 1.3 on NumPy 2
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
for _name, _typ in (("float", float), ("int", int), ("bool", bool)):
    if not hasattr(np, _name):
        setattr(np, _name, _typ)

import motmetrics as mm  # noqa: E402
from trackeval.metrics import HOTA  # noqa: E402

import sim  # noqa: E402

CYCLE_NS = 200_000_000
GATE_M = 1.0


def update(acc, gt, hyp, f):
    """Adds frame `f` of `gt` and `hyp` (frame -> [(id, x, y)]) to the
    motmetrics accumulator `acc` with the 1 m gate; returns both frames'
    rows and positions."""
    g, p = gt.get(f, []), hyp.get(f, [])
    gp = np.array([[x, y] for _, x, y in g], float).reshape(-1, 2)
    pp = np.array([[x, y] for _, x, y in p], float).reshape(-1, 2)
    acc.update([i for i, _, _ in g], [i for i, _, _ in p],
               mm.distances.norm2squared_matrix(gp, pp, max_d2=GATE_M ** 2), frameid=f)
    return g, p, gp, pp


def floor_metrics(gt, hyp, frames):
    """gt, hyp: frame -> [(id, x, y)]. MOTA, IDF1, IDSW (1 m gate), HOTA."""
    acc = mm.MOTAccumulator(auto_id=False)
    gt_ids, tr_ids = {}, {}
    hd = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    n_gt = n_tr = 0
    for f in frames:
        g, p, gp, pp = update(acc, gt, hyp, f)
        hd["gt_ids"].append(np.array([gt_ids.setdefault(i, len(gt_ids)) for i, _, _ in g], int))
        hd["tracker_ids"].append(np.array([tr_ids.setdefault(i, len(tr_ids)) for i, _, _ in p], int))
        if len(g) and len(p):
            d = np.sqrt(((gp[:, None] - pp[None]) ** 2).sum(-1))
            hd["similarity_scores"].append(np.maximum(0.0, 1.0 - d / GATE_M))
        else:
            hd["similarity_scores"].append(np.zeros((len(g), len(p))))
        n_gt, n_tr = n_gt + len(g), n_tr + len(p)
    hd.update(num_timesteps=len(frames), num_gt_ids=len(gt_ids), num_tracker_ids=len(tr_ids),
              num_gt_dets=n_gt, num_tracker_dets=n_tr)
    s = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "num_false_positives",
                                                  "num_misses", "motp"], name="x")
    h = HOTA().eval_sequence(hd) if n_gt else {"HOTA": np.zeros(1)}
    return {"idf1": float(s["idf1"].iloc[0]), "mota": float(s["mota"].iloc[0]),
            "idsw": int(s["num_switches"].iloc[0]), "fp": int(s["num_false_positives"].iloc[0]),
            "fn": int(s["num_misses"].iloc[0]), "hota": float(np.mean(h["HOTA"])),
            "motp_m": float(np.sqrt(s["motp"].iloc[0])) if s["motp"].iloc[0] == s["motp"].iloc[0] else None,
            "gt_dets": n_gt, "hyp_dets": n_tr, "gt_ids": len(gt_ids), "hyp_ids": len(tr_ids)}


def cycle_frames(scene, t0_ns):
    """Cycle indices (200 ms, relative to t0) from the first camera's start to the end."""
    first = min(scene.start.values())
    return list(range(int(np.ceil(first / 0.2)), int(np.floor(scene.duration / 0.2 + 1e-9)) + 1))


def floor_truth(scene, frames):
    return {f: scene.floor_truth(f * 0.2) for f in frames}


def nvr_floor(spatial_msgs, t0_ns):
    """frame -> [(global_id, x, y)] of `observed`/`coasting` tracks; state counts;
    frame -> [(x, y)] of `static` tracks (the contract: not on the floor)."""
    hyp, states, static = {}, defaultdict(int), defaultdict(list)
    for m in spatial_msgs:
        f = (m["ts_ns"] - t0_ns) // CYCLE_NS
        rows = []
        for t in m["tracks"]:
            st = t.get("state", "observed")
            states[st] += 1
            if st in ("observed", "coasting"):
                rows.append((t["global_id"], t["x_m"], t["y_m"]))
            elif st == "static":
                static[f].append((t["x_m"], t["y_m"]))
        hyp[f] = rows
    return hyp, dict(states), static


def hold_latest(hyp, frames):
    """`hyp` on every scored cycle: a cycle without a published message (a
    `spatial.matching_interval_ms` longer than the 200 ms scoring cycle)
    shows the latest message before it, as a client drawing the latest
    message would. At the default interval every cycle has its own."""
    out, last = dict(hyp), None
    for f in frames:
        if f in hyp:
            last = hyp[f]
        elif last is not None:
            out[f] = last
    return out


def camera_observations(scene, tracks_msgs, t0_ns, frames):
    """frame -> [(camera, track_id, x, y)] from each camera's latest confirmed
    tracks: its latest message within 250 ms, or within 1.25 of its median
    frame interval where that is clearly longer than the 200 ms cycle."""
    H = scene.H
    by_cam = defaultdict(list)
    for m in tracks_msgs:
        by_cam[m["camera"]].append(m)
    obs = defaultdict(list)
    for cam, ms in by_cam.items():
        ms.sort(key=lambda m: m["ts_ns"])
        ts = np.array([m["ts_ns"] for m in ms])
        step = float(np.median(np.diff(ts))) if len(ts) > 2 else CYCLE_NS
        hold = 1.25 * step if step > 1.1 * CYCLE_NS else 250_000_000
        for f in frames:
            t_ns = t0_ns + f * CYCLE_NS
            i = int(np.searchsorted(ts, t_ns, side="right")) - 1
            if i < 0 or t_ns - ts[i] > hold:
                continue
            m = ms[i]
            conf = [t for t in m["tracks"] if t["state"] == "confirmed"]
            if not conf:
                continue
            feet = np.array([[(t["bbox"][0] + t["bbox"][2]) / 2 * m["width"], t["bbox"][3] * m["height"]] for t in conf])
            xy = sim.apply_h(H[cam], feet)
            obs[f] += [(cam, t["track_id"], x, y) for t, (x, y) in zip(conf, xy)]
    return obs


def baseline_per_camera_ids(obs):
    ids = {}
    return {f: [(ids.setdefault((c, tid), len(ids) + 1), x, y) for c, tid, x, y in rows] for f, rows in obs.items()}


def baseline_nearest(obs, frames, gate=1.5, memory_s=2.0):
    idents = {}   # id -> (x, y, frame last seen)
    out = {}
    for f in frames:
        rows = obs.get(f, [])
        live = [(g, v) for g, v in idents.items() if (f - v[2]) * 0.2 <= memory_s]
        pairs = sorted((np.hypot(x - v[0], y - v[1]), i, g) for i, (_, _, x, y) in enumerate(rows)
                       for g, v in live if np.hypot(x - v[0], y - v[1]) <= gate)
        assign, cams = {}, defaultdict(set)
        for _, i, g in pairs:
            if i in assign or rows[i][0] in cams[g]:
                continue
            assign[i] = g
            cams[g].add(rows[i][0])
        for i in range(len(rows)):
            if i not in assign:
                assign[i] = len(idents) + 1
                idents[assign[i]] = (rows[i][2], rows[i][3], f)
        pos = defaultdict(list)
        for i, g in assign.items():
            pos[g].append(rows[i][2:])
        out[f] = []
        for g, ps in pos.items():
            x, y = np.mean(ps, 0)
            idents[g] = (x, y, f)
            out[f].append((g, x, y))
    return out


def oracle_links(scene, obs, frames):
    """The `oracle_linking` and `oracle_per_frame` hypotheses (see the module
    doc) from `obs` (camera_observations)."""
    label, votes = {}, defaultdict(lambda: defaultdict(int))
    for f in frames:
        people = scene.positions(f * 0.2)
        for c, tid, x, y in obs.get(f, []):
            near = min(((np.hypot(x - px, y - py), pid) for pid, px, py in people), default=(np.inf, None))
            label[(f, c, tid)] = near[1] if near[0] <= GATE_M else None
            votes[(c, tid)][label[(f, c, tid)]] += 1
    major = {k: max(v, key=lambda p: (v[p], p is not None)) for k, v in votes.items()}
    ids = {}

    def ident(key):
        return ids.setdefault(key, len(ids) + 1)

    linking, per_frame = {}, {}
    for f in frames:
        a, b = defaultdict(list), defaultdict(list)
        for c, tid, x, y in obs.get(f, []):
            m, p = major[(c, tid)], label[(f, c, tid)]
            a[m if m is not None else ("unmatched", c, tid)].append((x, y))
            b[p if p is not None else ("unmatched", c, tid)].append((x, y))
        linking[f] = [(ident(k), *np.mean(v, 0)) for k, v in a.items()]
        per_frame[f] = [(ident(k), *np.mean(v, 0)) for k, v in b.items()]
    return linking, per_frame


def camera_metrics(scene, tracks_msgs):
    res = {}
    by = defaultdict(dict)
    for m in tracks_msgs:
        by[m["camera"]][m["seq"]] = m
    for c in scene.cameras:
        acc = mm.MOTAccumulator(auto_id=False)
        for fr in scene.frames[c.id]:
            m = by[c.id].get(fr.k + 1)
            hyp = [t for t in m["tracks"] if t["state"] == "confirmed"] if m else []
            gb = np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for _, b in fr.truth], float).reshape(-1, 4)
            hb = np.array([[t["bbox"][0] * c.w, t["bbox"][1] * c.h, (t["bbox"][2] - t["bbox"][0]) * c.w,
                            (t["bbox"][3] - t["bbox"][1]) * c.h] for t in hyp], float).reshape(-1, 4)
            acc.update([p for p, _ in fr.truth], [t["track_id"] for t in hyp],
                       mm.distances.iou_matrix(gb, hb, max_iou=0.5), frameid=fr.k)
        s = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name=c.id)
        res[c.id] = {"idf1": float(s["idf1"].iloc[0]), "mota": float(s["mota"].iloc[0]),
                     "idsw": int(s["num_switches"].iloc[0]), "frames": len(scene.frames[c.id]),
                     "messages": len(by[c.id])}
    res["mean"] = {k: float(np.mean([res[c.id][k] for c in scene.cameras])) for k in ("idf1", "mota", "idsw")}
    return res


def lost_boxes_outside(tracks_msgs, tol=0.02):
    """Camera tracks whose box is beyond the frame (by more than nvr's
    `limits.bbox_tolerance`) or empty: nvr's spatial guard drops them from the
    message, and the tracker then releases that camera track as ended."""
    refused, revived, n = set(), set(), 0
    for m in sorted(tracks_msgs, key=lambda m: (m["camera"], m["seq"])):
        for t in m["tracks"]:
            b, k = t["bbox"], (m["camera"], t["track_id"])
            if min(b) < -tol or max(b) > 1 + tol or b[2] <= b[0] or b[3] <= b[1]:
                refused.add(k)
                n += 1
            elif k in refused and t["state"] == "confirmed":
                revived.add(k)
    return {"entries": n, "tracks": len(refused), "confirmed_again": len(revived)}


def door_reentries(scene, hyp):
    """Per door exit that comes back before the end: was the person's identity
    (most frequent hypothesis within 1 m) in the 2 s before leaving the same
    as in the 3 s after re-entering? Counts by gap (< / >= 30 s = nvr's
    default `spatial.max_gap_seconds`)."""
    def ident(pid, f):
        p = [q for q in scene.positions(f * 0.2) if q[0] == pid]
        c = [(np.hypot(x - p[0][1], y - p[0][2]), g) for g, x, y in hyp.get(f, [])] if p else []
        c = [z for z in c if z[0] < GATE_M]
        return min(c)[1] if c else None
    out = defaultdict(int)
    for pid, t_out, t_back in scene.door_events:
        if t_back > scene.duration - 3:
            continue
        b = [i for f in range(int(t_out / 0.2) - 10, int(t_out / 0.2)) if (i := ident(pid, f))]
        a = [i for f in range(int(t_back / 0.2) + 1, int(t_back / 0.2) + 16) if (i := ident(pid, f))]
        gap = "gap<30s" if t_back - t_out < 30 else "gap>=30s"
        if not a or not b:
            out[f"unseen_{gap}"] += 1
        else:
            same = max(set(a), key=a.count) == max(set(b), key=b.count)
            out[f"{'same' if same else 'new'}_{gap}"] += 1
    return dict(out)


def score_run(scene, run, truth=None, baselines=True):
    """Scores one live run (live.run_scene's result). `truth`: cached floor_truth."""
    msgs, t0 = run["messages"], run["t0_ns"]
    frames = cycle_frames(scene, t0)
    truth = truth if truth is not None else floor_truth(scene, frames)
    hyp, states, static = nvr_floor(msgs["spatial"], t0)
    published = set(hyp)
    hyp = hold_latest(hyp, frames)
    out = {"nvr": floor_metrics(truth, hyp, frames)}
    out["nvr"]["states"] = states
    out["nvr"]["missing_cycles"] = sum(f not in published for f in frames)
    later = [f for f in frames if published and f >= min(published)]
    out["nvr"]["from_first_cycle"] = {k: v for k, v in floor_metrics(truth, hyp, later).items()
                                      if k in ("idf1", "mota", "hota", "idsw")} if later else None
    out["nvr"]["camera"] = camera_metrics(scene, msgs["tracks"])
    if baselines:
        obs = camera_observations(scene, msgs["tracks"], t0, frames)
        out["per_camera_ids"] = floor_metrics(truth, baseline_per_camera_ids(obs), frames)
        out["nearest"] = floor_metrics(truth, baseline_nearest(obs, frames), frames)
        linking, per_frame = oracle_links(scene, obs, frames)
        out["oracle_linking"] = floor_metrics(truth, linking, frames)
        out["oracle_per_frame"] = floor_metrics(truth, per_frame, frames)
        for k in ("per_camera_ids", "nearest", "oracle_linking", "oracle_per_frame"):
            out[k]["camera"] = out["nvr"]["camera"]
    out["nvr"]["lost_box_outside"] = lost_boxes_outside(msgs["tracks"])
    out["nvr"]["door_reentries"] = door_reentries(scene, hyp)
    near = sum(any(np.hypot(x - gx, y - gy) < GATE_M for _, gx, gy in truth.get(f, []))
               for f in frames for x, y in static.get(f, []))
    out["nvr"]["static"] = {"within_1m_of_a_person": int(near),
                            "no_person_within_1m": sum(len(static.get(f, [])) for f in frames) - int(near)}
    ev = defaultdict(int)
    for e in msgs["events"]:
        ev[e["kind"]] += 1
    out["events"] = dict(ev)
    return out, truth


def main():
    import msgpack
    import live
    run_dir = Path(sys.argv[1])
    meta = json.loads((run_dir / "run.json").read_text())
    scene = sim.Scene(sim.difficulty(meta["difficulty"]), meta["seed"], meta["people"], meta["duration"])
    got = msgpack.unpackb((run_dir / "messages.msgpack").read_bytes())
    res, _ = score_run(scene, {"messages": live.decode_all(got), "t0_ns": meta["t0_ns"]})
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
