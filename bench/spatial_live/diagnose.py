"""Where the floor errors of a live evaluation come from.

Usage::

    data/pyenv/bin/python bench/spatial_live/diagnose.py --work DIR \\
        [--difficulty decent] [--seeds 0-4] [--people 20] [--duration 60]

DIR is the ``--work`` directory of a ``run_eval.py`` run (its saved
``nvr`` runs are read, nothing is started). The scenes are rebuilt from
their seeds. With the same 1 m gate as the score (``score.py``), every
scored cycle is split into events and the errors are classified:

* identity switches (the person's matched ``global_id`` changes): to an id
  that is new (published within the last 2 cycles), taken over from another
  person it was on within the last 5 cycles, re-identified from another
  person it was on earlier, or an id the person had itself (or no one had)
  before: a flicker between two identities of one person; each marked
  "after a gap" when the person went unmatched for more than 5 cycles first;
* false positives (a published identity no person is matched to): within
  1 m of a person (a second identity on someone), within 1 m of a person
  the truth leaves out (in the room but detectable by no camera: hidden
  behind someone, cut by the border), 1-2 m (position error), or farther;
  split by ``observed`` / ``coasting``;
* misses (a person no identity is matched to): an identity within 1 m
  (taken by someone else), within 1-2 m, or none within 2 m;
* identities seen by one camera and 1 m or more from every person: what the
  camera track's box was in the simulator's frame (a fixed false detection,
  a person whose box bottom is hidden behind someone nearer, a partly
  visible person, no detection at all: the camera tracker's prediction);
* person-cycles against the IDF1 assignment (each person's best id): the
  person's own id within 1 m (ok), no identity within 1 m (miss), or
  someone else's id / an id assigned to no one (a fragment) within 1 m;
  each with what the person's own id was doing then (not yet born, ended,
  and how it was last published; lost, coasting, static, duplicate, or
  observed elsewhere);
* against perfect linking (``oracle_linking`` in score.py: the run's own
  camera tracks linked across cameras with the ground truth): person-cycles
  with the person's own id in both, in nvr only, in the bound only; those
  in the bound only split as above (what nvr's own id for the person was
  doing), i.e. what better linking of the same camera tracks would win;
* handoffs (``handoff`` events): whether the identity went on with the
  person it was on when it was last observed (within 1 m of the same
  simulated person before and after; the person it is nearest either time,
  detectable or not), by the blind gap the event reports, and whether
  another identity was observed within 0.7 m of it then (a second camera
  track of a person already tracked, or two people close together);
* camera-tracker swaps (a confirmed camera track whose box was on one
  person for most of its previous 8 frames is on another now): whether the
  track's colour descriptor then differs from the mean of those frames
  (cosine below 0.7), and what the spatial tracker did with the track's
  global id (changed within 3 cycles, kept for 10 cycles or more, or the
  track was unbound or ended);
* ``static`` identities on a person: for every other camera whose image
  holds the person's foot point, why it does not see them (the box cut by
  the border and on which side, too small, hidden by someone nearer, or
  detectable after all).

It prints one table per difficulty, summed over the seeds.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_eval  # noqa: E402
import score  # noqa: E402
import sim  # noqa: E402

def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def events(truth, hyp, frames):
    """motmetrics' per-frame events (MATCH, SWITCH, FP, MISS) as the score makes them."""
    acc = mm.MOTAccumulator(auto_id=False)
    for f in frames:
        score.update(acc, truth, hyp, f)
    return acc.mot_events.reset_index()


def switch_kinds(ev, out):
    first_seen, last_of_hyp, last_of_gt = {}, {}, {}
    for row in ev.itertuples(index=False):
        f, kind, o, h = row.FrameId, row.Type, row.OId, row.HId
        if kind in ("MATCH", "SWITCH", "FP") and h == h:
            first_seen.setdefault(h, f)
        if kind == "SWITCH":
            gap = f - last_of_gt.get(o, (f, None))[0]
            prev = last_of_hyp.get(h)
            if f - first_seen[h] <= 2:
                k = "switch: to a new id"
            elif prev and prev[1] != o and f - prev[0] <= 5:
                k = "switch: taken over from another person"
            elif prev and prev[1] != o:
                k = "switch: re-identified from another person"
            else:
                k = "switch: back to an id of its own (flicker)"
            out[k + (", after a gap" if gap > 5 else "")] += 1
        if kind in ("MATCH", "SWITCH"):
            last_of_hyp[h] = (f, o)
            last_of_gt[o] = (f, h)
            out["matched"] += 1


def fp_and_misses(ev, truth, hyp, states, out, scene):
    for row in ev.itertuples(index=False):
        f = row.FrameId
        if row.Type == "FP":
            x, y = next((x, y) for i, x, y in hyp[f] if i == row.HId)
            d = min([np.hypot(x - gx, y - gy) for _, gx, gy in truth.get(f, [])] or [99.0])
            band = "within 1 m of a person" if d < 1 else "1-2 m from a person" if d < 2 else "farther"
            if d >= 1:
                near = [np.hypot(x - px, y - py) for _, px, py in scene.positions(f * 0.2)]
                if min(near or [99.0]) < 1:
                    band = "within 1 m of a person the truth leaves out (not detectable)"
            out[f"false positive: {band}, {states.get((f, row.HId))}"] += 1
        elif row.Type == "MISS":
            gx, gy = next((x, y) for i, x, y in truth[f] if i == row.OId)
            d = min([np.hypot(gx - x, gy - y) for _, x, y in hyp.get(f, [])] or [99.0])
            band = "an identity within 1 m" if d < 1 else "one within 1-2 m" if d < 2 else "none within 2 m"
            out[f"miss: {band}"] += 1


def single_camera_far(scene, run, out):
    t0 = run["t0_ns"]
    bycam = collections.defaultdict(list)
    for m in run["messages"]["tracks"]:
        bycam[m["camera"]].append(m)
    for msgs in bycam.values():
        msgs.sort(key=lambda m: m["ts_ns"])
    stamps = {c: [m["ts_ns"] for m in msgs] for c, msgs in bycam.items()}
    cams = {c.id: c for c in scene.cameras}
    for m in run["messages"]["spatial"]:
        f = (m["ts_ns"] - t0) // score.CYCLE_NS
        truth = scene.floor_truth(f * 0.2)
        if not truth:
            continue
        pos = np.array([[x, y] for _, x, y in truth])
        for t in m["tracks"]:
            if t.get("state") != "observed" or len(t.get("sources") or []) != 1:
                continue
            if np.hypot(pos[:, 0] - t["x_m"], pos[:, 1] - t["y_m"]).min() < 1.0:
                continue
            src = t["sources"][0]
            msgs = bycam.get(src["camera"], [])
            i = int(np.searchsorted(stamps.get(src["camera"], []), m["ts_ns"], side="right")) - 1
            ct = next((x for x in msgs[i]["tracks"] if x["track_id"] == src["track_id"]), None) if i >= 0 else None
            if ct is None or src["camera"] not in cams:
                out["1 camera, >= 1 m off: no camera track found"] += 1
                continue
            cam, msg = cams[src["camera"]], msgs[i]
            box = np.array(ct["bbox"]) * [msg["width"], msg["height"], msg["width"], msg["height"]]
            fr = min(scene.frames[cam.id], key=lambda fr: abs(fr.ts * 1e9 - (msg["ts_ns"] - t0)))
            det = max(fr.dets, key=lambda d: iou(box, d["bbox"]), default=None)
            if det is None or iou(box, det["bbox"]) < 0.3:
                out["1 camera, >= 1 m off: no detection under the box (camera tracker prediction)"] += 1
            elif det["pid"] < 0:
                out["1 camera, >= 1 m off: a fixed false detection"] += 1
            else:
                r = scene.render(cam, scene.positions(fr.t))[det["pid"]]
                hidden = (r["box"][3] - r["vbox"][3]) > 0.08 * (r["box"][3] - r["box"][1])
                what = "box bottom hidden by someone nearer" if hidden else (
                    "partly visible person" if r["frac"] < 0.8 else "fully visible person")
                out[f"1 camera, >= 1 m off: {what}"] += 1


def camera_swaps(scene, run, out):
    """Camera-tracker swaps and what became of the swapped track's global id."""
    t0 = run["t0_ns"]
    bycam = collections.defaultdict(dict)
    for m in run["messages"]["tracks"]:
        bycam[m["camera"]][m["seq"]] = m
    bound = {}  # (camera, track_id, cycle) -> global id the cycle gives that track
    for m in run["messages"]["spatial"]:
        f = int((m["ts_ns"] - t0) // score.CYCLE_NS)
        for t in m["tracks"]:
            gid = t.get("duplicate_of") if t.get("state") == "duplicate" else t["global_id"]
            for s in t.get("sources") or []:
                bound[(s["camera"], s["track_id"], f)] = gid

    def unit(v):
        v = np.asarray(v, float)
        return v / (np.linalg.norm(v) + 1e-12)

    for cam in scene.cameras:
        hist = collections.defaultdict(list)  # track_id -> [(cycle, person or None, embedding)]
        for fr in scene.frames[cam.id]:
            m = bycam[cam.id].get(fr.k + 1)
            if m is None:
                continue
            f = int((m["ts_ns"] - t0) // score.CYCLE_NS)
            hyp = [t for t in m["tracks"] if t["state"] == "confirmed" and t.get("embedding")]
            boxes = [np.array(t["bbox"]) * [cam.w, cam.h, cam.w, cam.h] for t in hyp]
            owner = {}
            if fr.truth and boxes:
                ious = np.array([[iou(b, h) for h in boxes] for _, b in fr.truth])
                for a, b in zip(*linear_sum_assignment(-ious)):
                    if ious[a, b] >= 0.5:
                        owner[hyp[b]["track_id"]] = fr.truth[a][0]
            for t in hyp:
                hist[t["track_id"]].append((f, owner.get(t["track_id"]), unit(t["embedding"])))
        for tid, h in hist.items():
            for i in range(3, len(h)):
                f, pid, emb = h[i]
                prev = [x for x in h[max(0, i - 8):i] if x[1] is not None]
                if pid is None or len(prev) < 3:
                    continue
                was = collections.Counter(x[1] for x in prev).most_common(1)[0][0]
                if pid == was or h[i - 1][1] not in (was, None):
                    continue
                ref = unit(np.mean([x[2] for x in prev if x[1] == was], axis=0))
                look = "looks different (cosine < 0.7)" if float(emb @ ref) < 0.7 else "looks alike"
                before = next((bound[k] for k in ((cam.id, tid, h[i - 1][0] - d) for d in range(3)) if k in bound), None)
                after = [bound.get((cam.id, tid, f + d)) for d in (3, 6, 10)]
                if before is None:
                    fate = "track not bound before"
                elif after[0] is not None and after[0] != before:
                    fate = "global id changed within 3 cycles"
                elif all(a == before for a in after):
                    fate = "global id kept for 10 cycles or more"
                else:
                    fate = "track unbound, ended or changed later"
                out[f"camera-track swap, {look}: {fate}"] += 1


def own_ids(truth, hyp, frames):
    """Each person's best id: the IDF1 assignment (most cycles within 1 m);
    None when there are no people or no identities at all."""
    gids = sorted({i for f in frames for i, _, _ in truth.get(f, [])})
    hids = sorted({i for f in frames for i, _, _ in hyp.get(f, [])})
    if not gids or not hids:
        return None
    gi = {g: k for k, g in enumerate(gids)}
    hi = {h: k for k, h in enumerate(hids)}
    overlap = np.zeros((len(gids), len(hids)))
    for f in frames:
        for g, gx, gy in truth.get(f, []):
            for h, x, y in hyp.get(f, []):
                if (x - gx) ** 2 + (y - gy) ** 2 <= score.GATE_M ** 2:
                    overlap[gi[g], hi[h]] += 1
    r, c = linear_sum_assignment(-overlap)
    return {gids[a]: hids[b] for a, b in zip(r, c) if overlap[a, b] > 0}


def own_id_cycles(truth, hyp, frames):
    """The (cycle, person) pairs with the person's own id within 1 m."""
    own = own_ids(truth, hyp, frames) or {}
    ok = set()
    for f in frames:
        hp = {h: (x, y) for h, x, y in hyp.get(f, [])}
        for g, gx, gy in truth.get(f, []):
            p = hp.get(own.get(g))
            if p is not None and np.hypot(p[0] - gx, p[1] - gy) <= score.GATE_M:
                ok.add((f, g))
    return ok


def idf1_cover(truth, hyp, frames, published, out, only=None, prefix="person-cycle"):
    """`published`: (cycle, global_id) -> the published track. `only`: count
    just these (cycle, person) pairs, none of which has its own id."""
    own = own_ids(truth, hyp, frames)
    if own is None:
        return
    owner = {h: g for g, h in own.items()}
    span = {}
    for (f, h) in published:
        a, b = span.get(h, (f, f))
        span[h] = (min(a, f), max(b, f))
    state = {k: t.get("state", "observed") for k, t in published.items()}
    for f in frames:
        hp = {h: (x, y) for h, x, y in hyp.get(f, [])}
        for g, gx, gy in truth.get(f, []):
            if only is not None and (f, g) not in only:
                continue
            h = own.get(g)
            near = [k for k, (x, y) in hp.items() if np.hypot(x - gx, y - gy) <= score.GATE_M]
            if h in near:
                out[f"{prefix}: own id (ok)"] += 1
                continue
            what = "miss" if not near else "someone else's id" if near[0] in owner else "a fragment"
            if h is None or h not in span or f < span[h][0]:
                mine = "not born yet"
            elif f > span[h][1]:
                mine = f"ended, last published {state[(span[h][1], h)]}"
            elif (f, h) not in published:
                mine = "unpublished"
            else:
                t = published[(f, h)]
                d = np.hypot(t["x_m"] - gx, t["y_m"] - gy)
                mine = f"{state[(f, h)]} {'within' if d <= score.GATE_M else 'beyond'} 1 m"
            out[f"{prefix}: {what}; own id {mine}"] += 1


def against_perfect_linking(scene, run, truth, hyp, frames, published, out):
    """Person-cycles with the person's own id under `oracle_linking` (the
    run's camera tracks linked with the ground truth, score.py) and under
    nvr, and what nvr did with those only the bound gets right."""
    obs = score.camera_observations(scene, run["messages"]["tracks"], run["t0_ns"], frames)
    linking, _ = score.oracle_links(scene, obs, frames)
    mine, bound = own_id_cycles(truth, hyp, frames), own_id_cycles(truth, linking, frames)
    out["vs perfect linking: own id in both"] += len(mine & bound)
    out["vs perfect linking: own id in nvr only"] += len(mine - bound)
    out["vs perfect linking: own id in the bound only"] += len(bound - mine)
    idf1_cover(truth, hyp, frames, published, out, only=bound - mine,
               prefix="vs perfect linking, bound only")


def handoffs(scene, run, published, out):
    """`published`: (cycle, global_id) -> the published track."""
    t0 = run["t0_ns"]

    def person_at(f, t):
        near = [(np.hypot(t["x_m"] - x, t["y_m"] - y), pid) for pid, x, y in scene.positions(f * 0.2)]
        d, pid = min(near, default=(99.0, None))
        return pid if d <= score.GATE_M else None

    for e in run["messages"]["events"]:
        if e.get("kind") != "handoff":
            continue
        gap = e.get("gap_ms") or 0
        f = (e["ts_ns"] - t0) // score.CYCLE_NS
        gid = e["global_id"]
        now = published.get((f, gid))
        # The last cycle it was observed in before the gap.
        before = next(
            (
                (ff, t)
                for ff in range(f - 1, max(f - 200, -1), -1)
                if (t := published.get((ff, gid))) is not None
                and t.get("state", "observed") == "observed"
                and (e["ts_ns"] - t["last_seen_ns"]) / 1e6 >= gap - 250
            ),
            None,
        )
        if now is None or before is None:
            out["handoff: identity not published around it"] += 1
            continue
        a, b = person_at(before[0], before[1]), person_at(f, now)
        verdict = "person unknown" if a is None or b is None else "same person" if a == b else "ANOTHER PERSON"
        band = "<= 1 s" if gap <= 1000 else "1-2 s" if gap <= 2000 else "2-5 s" if gap <= 5000 else "> 5 s"
        near = any(
            g != gid and ff == f and t.get("state", "observed") == "observed"
            and np.hypot(t["x_m"] - now["x_m"], t["y_m"] - now["y_m"]) < 0.7
            for (ff, g), t in published.items()
        )
        out[f"handoff, gap {band}, {'another identity within 0.7 m' if near else 'alone'}: {verdict}"] += 1


def static_on_people(scene, run, truth, out):
    cams = {c.id: c for c in scene.cameras}
    for m in run["messages"]["spatial"]:
        f = (m["ts_ns"] - run["t0_ns"]) // score.CYCLE_NS
        for t in m["tracks"]:
            if t.get("state") != "static":
                continue
            near = [(np.hypot(t["x_m"] - gx, t["y_m"] - gy), g) for g, gx, gy in truth.get(f, [])]
            near = [n for n in near if n[0] <= score.GATE_M]
            if not near:
                continue
            pid = min(near)[1]
            ppl = scene.positions(f * 0.2)
            xy = next(p for p in ppl if p[0] == pid)
            srcs = {s["camera"] for s in t.get("sources") or []}
            for cid, cam in cams.items():
                u, v, z = cam.project(np.array([[xy[1], xy[2], 0.0]]))
                if cid in srcs or not (z[0] > 0 and 0 <= u[0] < cam.w and 0 <= v[0] < cam.h):
                    continue
                r = scene.render(cam, ppl).get(pid)
                if r is None:
                    why = "hidden or out of the image"
                elif r["detectable"]:
                    why = "detectable"
                elif r["vbox"][3] - r["vbox"][1] < scene.k.min_box_h_px:
                    why = "too small"
                else:
                    b = r["box"]
                    cut = " and ".join(n for n, c in (("top", b[1] < 0), ("left", b[0] < 0),
                                                 ("right", b[2] > cam.w), ("bottom", b[3] > cam.h)) if c)
                    why = f"box cut by the {cut} border" if cut else "hidden by someone nearer"
                out[f"static on a person, another camera with the foot in its image: {why}"] += 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--difficulty", default="decent")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0)
    args = ap.parse_args(argv)
    for diff in args.difficulty.split(","):
        out = collections.Counter()
        seeds = run_eval.parse_seeds(args.seeds)
        for seed in seeds:
            scene = sim.Scene(sim.difficulty(diff), seed, args.people, args.duration)
            run = run_eval.saved_run(Path(args.work) / diff / f"s{seed}", "nvr")
            frames = score.cycle_frames(scene, run["t0_ns"])
            truth = score.floor_truth(scene, frames)
            hyp, _, _ = score.nvr_floor(run["messages"]["spatial"], run["t0_ns"])
            hyp = score.hold_latest(hyp, frames)
            published = {}
            for m in run["messages"]["spatial"]:
                f = (m["ts_ns"] - run["t0_ns"]) // score.CYCLE_NS
                for t in m["tracks"]:
                    published[(f, t["global_id"])] = t
            states = {k: t.get("state", "observed") for k, t in published.items()}
            ev = events(truth, hyp, frames)
            switch_kinds(ev, out)
            fp_and_misses(ev, truth, hyp, states, out, scene)
            idf1_cover(truth, hyp, frames, published, out)
            against_perfect_linking(scene, run, truth, hyp, frames, published, out)
            static_on_people(scene, run, truth, out)
            handoffs(scene, run, published, out)
            single_camera_far(scene, run, out)
            camera_swaps(scene, run, out)
        print(f"== {diff}, seeds {args.seeds} ({len(seeds)} scenes) ==")
        width = max(len(k) for k in out)
        for k in sorted(out):
            print(f"{k:<{width}}  {out[k]:>7}")


if __name__ == "__main__":
    main()
