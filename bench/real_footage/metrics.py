"""Cross-camera identity metrics of one real-footage run.

Reference: the ``full`` camera's confirmed ``person`` tracks, i.e. nvr's own
per-camera ByteTrack on the full frame. It is NOT hand-labelled ground
truth: its own misses and identity switches are in it.

Observations: the confirmed ``person`` tracks of the two views ``left`` and
``right`` (``CameraTracks``, one per source frame). Only ``person`` counts,
in the reference and in the views (the detector also reports cars).

View -> reference mapping, per frame and per view: a view box (normalised to
its own 480x576 image) is turned into full-frame pixels (``x * 480 + ox``),
each reference box is clipped to the view's window ``[ox, ox + 480)``, and
view and reference boxes are paired one-to-one (Hungarian) on the IoU of the
view box with the CLIPPED reference box, IoU >= ``IOU_MIN`` (0.5). The clip
is what makes a person cut by the crop border (box edge within 4 px of
x = 480 for ``left`` or of x = 288 for ``right``: counted as "truncated")
match on its visible part; for every other box it changes nothing.

Global id of an observation: the ``SpatialTracks`` of shard ``lobby`` whose
cycle ``ts_ns`` is the nearest at or after the frame's ``ts_ns`` (the
harness aligns frames to cycles, so it is the frame's own cycle); the
observation's (camera, track_id) in the ``sources`` of a track with state
``observed`` gives its global id, and in those of a ``duplicate`` track the
``duplicate_of`` id (the person the shard says that second view is, as
``subjects/README.md`` tells a client to read it); none found = no global id.

Metrics:

* overlap agreement: over (frame, reference person) pairs matched in BOTH
  views, the fraction where both observations carry the same global id
  (an observation without a global id counts as a disagreement);
* IDF1 (motmetrics, precomputed distances: 0 for a (reference person,
  hypothesis) pair linked by a matched observation in that frame, nan
  otherwise). Global identity: the hypotheses of a frame are the distinct
  global ids of the view observations in it (matched or not; an unmatched
  one is a false positive); a reference person seen in both views under
  one global id is one hypothesis detection, under two ids it is two (one of
  them necessarily a false positive). Baseline "no linking": hypotheses are
  the (camera, track_id) pairs of all view observations, so a person in the
  overlap is always counted twice;
* identities: distinct global ids on person observations vs reference
  tracks with >= 5 frames;
* crossers: reference tracks whose foot point (bottom centre, full-frame
  pixels) is seen at x < 288 (left only) and at x >= 480 (right only); the
  fraction whose matched observations carry exactly one global id; and the
  crossings themselves (left-only -> right-only or back, see
  :func:`crossing_events`): whether the global id before equals the one after;
* double binding: (cycle, global id) pairs whose observations in that
  cycle are matched to two or more different reference people.
"""
from collections import Counter, defaultdict

import numpy as np
from scipy.optimize import linear_sum_assignment

if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
for _name, _typ in (("float", float), ("int", int), ("bool", bool)):
    if not hasattr(np, _name):
        setattr(np, _name, _typ)

import motmetrics as mm  # noqa: E402

from frames import LINKED, REFERENCE, SRC_H, VIEWS  # noqa: E402

IOU_MIN = 0.5
MERGE_MAX_GAP = 5
MERGE_MIN_IOU = 0.3
TRUNC_PX = 4.0
MIN_REF_FRAMES = 5
LABEL = "person"
SHARD_LINKED = "lobby"
SHARD_REF = "ref"
LEFT_ONLY_X = VIEWS["right"][0]  # 288: left of it only `left` sees
RIGHT_ONLY_X = VIEWS["left"][1]  # 480: from it on only `right` sees


def iou(a, b):
    """IoU of two [x1, y1, x2, y2] boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def to_full_px(camera, bbox):
    """A box normalised to ``camera``'s image, in full-frame pixels."""
    x0, x1 = VIEWS[camera]
    w = x1 - x0
    return [bbox[0] * w + x0, bbox[1] * SRC_H, bbox[2] * w + x0, bbox[3] * SRC_H]


def truncated(camera, box):
    """Whether a full-frame box touches the inner crop border of ``camera``."""
    if camera == "left":
        return box[2] >= VIEWS["left"][1] - TRUNC_PX
    if camera == "right":
        return box[0] <= VIEWS["right"][0] + TRUNC_PX
    return False


class Run:
    """The parsed messages of one run, indexed for the metrics."""

    def __init__(self, bus, meta):
        self.meta = meta
        self.frames = meta["frames"]
        self.seq_to_frame = {f["seq"]: f["index"] for f in self.frames}
        self.tracks = defaultdict(dict)  # camera -> frame -> [track]
        self.spatial = defaultdict(list)  # shard -> [(ts_ns, tracks)]
        self.events = []
        for subj, recv, m in bus:
            if subj.startswith("nvr.tracks."):
                fi = self.seq_to_frame.get(m["seq"])
                if fi is not None:
                    self.tracks[m["camera"]][fi] = m["tracks"]
            elif subj.startswith("nvr.spatial."):
                self.spatial[m["shard"]].append((m["ts_ns"], m["tracks"]))
            elif subj.startswith("nvr.events."):
                self.events.append(m)
        for s in self.spatial.values():
            s.sort(key=lambda x: x[0])
        self._cycle_ts = {k: np.array([t for t, _ in v], dtype=np.int64) for k, v in self.spatial.items()}

    def cycle(self, shard, ts_ns):
        """(cycle ts, tracks) of the first cycle of ``shard`` at or after ``ts_ns``, or None."""
        arr = self._cycle_ts.get(shard)
        if arr is None or not len(arr):
            return None
        i = int(np.searchsorted(arr, ts_ns, side="left"))
        return self.spatial[shard][i] if i < len(arr) else None

    def persons(self, camera, fi):
        """Confirmed person tracks of ``camera`` in frame ``fi``."""
        return [
            t for t in self.tracks[camera].get(fi, []) if t["state"] == "confirmed" and t["label"] == LABEL
        ]


def source_map(tracks):
    """(camera, track_id) -> (global id, track) over tracks with state
    observed, and over duplicate tracks to the identity in ``duplicate_of``."""
    by_id = {t["global_id"]: t for t in tracks}
    out = {}
    for t in tracks:
        state = t.get("state", "observed")
        if state == "observed":
            person = t
        elif state == "duplicate" and t.get("duplicate_of") in by_id:
            person = by_id[t["duplicate_of"]]
        else:
            continue
        for s in t["sources"]:
            out[(s["camera"], s["track_id"])] = (person["global_id"], person)
    return out


def build_observations(run, shard=SHARD_LINKED, views=LINKED):
    """Per frame: reference persons and view observations mapped to them.

    Returns (refs, obs): refs[fi] = {ref_id: full box}; obs[fi] = list of
    dicts (camera, track_id, box, trunc, ref, iou, gid, emb).
    """
    refs, obs = {}, {}
    for f in run.frames:
        fi = f["index"]
        refs[fi] = {t["track_id"]: to_full_px(REFERENCE, t["bbox"]) for t in run.persons(REFERENCE, fi)}
        cyc = run.cycle(shard, f["ts_ns"])
        smap = source_map(cyc[1]) if cyc else {}
        frame_obs = []
        for cam in views:
            x0, x1 = VIEWS[cam]
            vt = run.persons(cam, fi)
            boxes = [to_full_px(cam, t["bbox"]) for t in vt]
            rids = list(refs[fi])
            clipped = []
            for r in rids:
                b = refs[fi][r]
                clipped.append([max(b[0], x0), b[1], min(b[2], x1), b[3]])
            m = np.zeros((len(vt), len(rids)))
            for i, b in enumerate(boxes):
                for j, c in enumerate(clipped):
                    if c[2] > c[0]:
                        m[i, j] = iou(b, c)
            pair = {}
            if m.size:
                ri, ci = linear_sum_assignment(-m)
                pair = {i: (rids[j], m[i, j]) for i, j in zip(ri, ci) if m[i, j] >= IOU_MIN}
            for i, t in enumerate(vt):
                g = smap.get((cam, t["track_id"]))
                best = float(m[i].max()) if m.shape[1] else 0.0
                frame_obs.append(
                    {
                        "camera": cam,
                        "track_id": t["track_id"],
                        "box": boxes[i],
                        "trunc": truncated(cam, boxes[i]),
                        "ref": pair[i][0] if i in pair else None,
                        "iou": float(pair[i][1]) if i in pair else best,
                        "gid": g[0] if g else None,
                        "gpos": (g[1]["x_m"], g[1]["y_m"]) if g else None,
                        "emb": t.get("embedding"),
                    }
                )
        obs[fi] = frame_obs
    return refs, obs


def idf1(refs, hyps):
    """motmetrics IDF1/IDP/IDR of ``hyps`` against ``refs``.

    refs[fi] = iterable of reference ids; hyps[fi] = {hyp id: set of ref ids it is linked to}.
    """
    acc = mm.MOTAccumulator(auto_id=False)
    numbers = {}  # motmetrics wants numeric ids
    for fi in sorted(refs):
        r = sorted(refs[fi])
        h = sorted(hyps.get(fi, {}), key=str)
        hidx = {x: numbers.setdefault(x, len(numbers) + 1) for x in h}
        d = np.full((len(r), len(h)), np.nan)
        for j, x in enumerate(h):
            for i, rid in enumerate(r):
                if rid in hyps[fi][x]:
                    d[i, j] = 0.0
        acc.update(r, [hidx[x] for x in h], d, frameid=fi)
    mh = mm.metrics.create()
    s = mh.compute(acc, metrics=["idf1", "idp", "idr", "num_switches", "mota"], name="x")
    return {k: float(s[k].iloc[0]) for k in ("idf1", "idp", "idr", "num_switches", "mota")}


def compute(run):
    """Every metric of one run, as a JSON-ready dict (plus per-item details)."""
    refs, obs = build_observations(run)
    all_obs = [o for fo in obs.values() for o in fo]
    n = len(all_obs)
    n_matched = sum(o["ref"] is not None for o in all_obs)
    n_gid = sum(o["gid"] is not None for o in all_obs)
    n_trunc = sum(o["trunc"] for o in all_obs)
    n_trunc_matched = sum(o["trunc"] and o["ref"] is not None for o in all_obs)

    # overlap agreement
    pairs = same = no_gid = 0
    disagreements = []
    for fi, fo in obs.items():
        by_ref = defaultdict(dict)
        for o in fo:
            if o["ref"] is not None:
                by_ref[o["ref"]][o["camera"]] = o
        for rid, d in by_ref.items():
            if len(d) < 2:
                continue
            pairs += 1
            gl, gr = d["left"]["gid"], d["right"]["gid"]
            if gl is not None and gl == gr:
                same += 1
            else:
                if gl is None or gr is None:
                    no_gid += 1
                disagreements.append((fi, rid, d["left"], d["right"]))

    # IDF1: global ids and the no-linking baseline
    ref_ids = {fi: set(r) for fi, r in refs.items()}
    hyp_g, hyp_b = {}, {}
    for fi, fo in obs.items():
        hg, hb = defaultdict(set), defaultdict(set)
        for o in fo:
            key = (o["camera"], o["track_id"])
            hb[key]
            if o["ref"] is not None:
                hb[key].add(o["ref"])
            if o["gid"] is not None:
                hg[o["gid"]]
                if o["ref"] is not None:
                    hg[o["gid"]].add(o["ref"])
        hyp_g[fi], hyp_b[fi] = dict(hg), dict(hb)
    id_global = idf1(ref_ids, hyp_g)
    id_base = idf1(ref_ids, hyp_b)

    # sanity: the single-camera reference shard against its own camera tracks
    ref_sanity = reference_shard_sanity(run, refs)

    # identities
    ref_frames = Counter(r for fi in refs for r in refs[fi])
    ref_long = sorted(r for r, c in ref_frames.items() if c >= MIN_REF_FRAMES)
    gids_all = {o["gid"] for o in all_obs if o["gid"] is not None}
    gids_matched = {o["gid"] for o in all_obs if o["gid"] is not None and o["ref"] is not None}
    cam_tracks = {(o["camera"], o["track_id"]) for o in all_obs}

    # crossers
    feet = defaultdict(list)
    for fi, r in refs.items():
        for rid, b in r.items():
            feet[rid].append(0.5 * (b[0] + b[2]))
    gids_of_ref = defaultdict(Counter)
    for fo in obs.values():
        for o in fo:
            if o["ref"] is not None and o["gid"] is not None:
                gids_of_ref[o["ref"]][o["gid"]] += 1
    merged = merge_frames(refs)
    crossers = []
    for rid, xs in sorted(feet.items()):
        if min(xs) < LEFT_ONLY_X and max(xs) >= RIGHT_ONLY_X:
            g = gids_of_ref[rid]
            total = sum(g.values())
            crossings = crossing_events(rid, refs, obs)
            outside = {
                o["gid"]
                for fi, fo in obs.items()
                if fi not in merged.get(rid, ())
                for o in fo
                if o["ref"] == rid and o["gid"] is not None
            }
            crossers.append(
                {
                    "ref": rid,
                    "frames": len(xs),
                    "gids": dict(g.most_common()),
                    "one_gid": len(g) == 1,
                    "merge_frames": sorted(merged.get(rid, ())),
                    "one_gid_outside_merges": len(outside) == 1,
                    "majority_share": (g.most_common(1)[0][1] / total) if total else 0.0,
                    "crossings": crossings,
                }
            )
    all_crossings = [c for x in crossers for c in x["crossings"]]

    # double binding
    double = []
    for fi, fo in obs.items():
        by_gid = defaultdict(set)
        for o in fo:
            if o["gid"] is not None and o["ref"] is not None:
                by_gid[o["gid"]].add(o["ref"])
        for g, rs in by_gid.items():
            if len(rs) >= 2:
                double.append((fi, g, sorted(rs)))

    lobby_gids_created = sum(
        1 for e in run.events if e["kind"] == "global_started" and e.get("shard") == SHARD_LINKED
    )
    return {
        "frames": len(run.frames),
        "observations": {
            "view_person_obs": n,
            "matched_to_reference": n_matched,
            "matched_fraction": n_matched / n if n else 0.0,
            "with_global_id": n_gid,
            "with_global_id_fraction": n_gid / n if n else 0.0,
            "truncated": n_trunc,
            "truncated_matched": n_trunc_matched,
            "reference_person_obs": sum(len(r) for r in refs.values()),
        },
        "overlap_agreement": {
            "pairs": pairs,
            "same_gid": same,
            "fraction": same / pairs if pairs else 0.0,
            "pairs_missing_a_gid": no_gid,
            "pairs_different_gids": pairs - same - no_gid,
        },
        "idf1_global": id_global,
        "idf1_no_linking": id_base,
        "reference_shard_sanity": ref_sanity,
        "identities": {
            "reference_tracks_min5": len(ref_long),
            "reference_tracks_all": len(ref_frames),
            "global_ids_on_person_obs": len(gids_all),
            "global_ids_on_matched_obs": len(gids_matched),
            "global_ids_created_lobby": lobby_gids_created,
            "view_camera_tracks": len(cam_tracks),
        },
        "crossers": {
            "count": len(crossers),
            "one_gid": sum(c["one_gid"] for c in crossers),
            "one_gid_outside_merges": sum(c["one_gid_outside_merges"] for c in crossers),
            "fraction_one_gid": (sum(c["one_gid"] for c in crossers) / len(crossers)) if crossers else 0.0,
            "mean_majority_share": float(np.mean([c["majority_share"] for c in crossers])) if crossers else 0.0,
            "crossings": len(all_crossings),
            "crossings_id_kept": sum(c["kept"] for c in all_crossings),
            "detail": crossers,
        },
        "double_binding": {
            "count": len(double),
            "detail": [{"frame": fi, "gid": g, "refs": rs} for fi, g, rs in double],
        },
        "_obs": obs,
        "_refs": refs,
        "_disagreements": disagreements,
    }


def merge_frames(refs, max_gap=MERGE_MAX_GAP, min_iou=MERGE_MIN_IOU):
    """{reference person: frames where someone else is hidden in the same box}.

    A reference track missing for at most ``max_gap`` frames between two
    frames where it is seen is taken to be where its box would be on a line
    between those two; a person whose box overlaps that at IoU ``min_iou``
    or more in a frame of the gap shares one detection with the missing one
    there (the detector gave one box for both, or one hides the other), so
    no tracker can tell from that frame which of the two the box is.
    """
    seen = defaultdict(list)
    for fi in sorted(refs):
        for rid in refs[fi]:
            seen[rid].append(fi)
    out = defaultdict(set)
    for rid, fis in seen.items():
        for a, b in zip(fis, fis[1:]):
            if not 1 < b - a <= max_gap + 1:
                continue
            ba, bb = np.asarray(refs[a][rid]), np.asarray(refs[b][rid])
            for fi in range(a + 1, b):
                if fi not in refs:
                    continue
                t = (fi - a) / (b - a)
                guess = list((1 - t) * ba + t * bb)
                for other, box in refs[fi].items():
                    if iou(guess, box) >= min_iou:
                        out[other].add(fi)
    return out


def crossing_events(rid, refs, obs):
    """Walks of reference person ``rid`` from one exclusive zone to the other.

    Zone of a frame: L (foot x < 288, only ``left`` sees it), R (x >= 480,
    only ``right``), O (overlap). A crossing is a last L frame followed, with
    only O frames (or frames without the person) in between, by an R frame,
    or R to L. ``kept``: the exclusive view's observation carries the same
    global id on both sides (both present).
    """
    seq = []
    for fi in sorted(refs):
        b = refs[fi].get(rid)
        if b is None:
            continue
        x = 0.5 * (b[0] + b[2])
        zone = "L" if x < LEFT_ONLY_X else "R" if x >= RIGHT_ONLY_X else "O"
        cam = {"L": "left", "R": "right"}.get(zone)
        gid = None
        if cam:
            for o in obs[fi]:
                if o["ref"] == rid and o["camera"] == cam:
                    gid = o["gid"]
        seq.append((fi, zone, gid))
    out = []
    last = None  # (frame, zone, gid) of the latest exclusive-zone frame
    for fi, zone, gid in seq:
        if zone == "O":
            continue
        if last is not None and zone != last[1]:
            out.append(
                {
                    "from": last[1], "to": zone, "frames": [last[0], fi], "gids": [last[2], gid],
                    "kept": last[2] is not None and last[2] == gid,
                }
            )
        last = (fi, zone, gid)
    return out


def reference_shard_sanity(run, refs):
    """IDF1 of the ``ref`` shard's global ids against the ``full`` camera tracks.

    The shard has one camera, so any difference is the spatial tracker
    re-labelling a single camera's tracks (identities split or merged).
    """
    hyps = {}
    for f in run.frames:
        fi = f["index"]
        cyc = run.cycle(SHARD_REF, f["ts_ns"])
        smap = source_map(cyc[1]) if cyc else {}
        h = defaultdict(set)
        for rid in refs[fi]:
            g = smap.get((REFERENCE, rid))
            if g:
                h[g[0]].add(rid)
        hyps[fi] = dict(h)
    out = idf1({fi: set(r) for fi, r in refs.items()}, hyps)
    gids = defaultdict(set)
    for fi, h in hyps.items():
        for g, rs in h.items():
            for r in rs:
                gids[r].add(g)
    out["ref_tracks_with_several_gids"] = sum(len(g) > 1 for g in gids.values())
    out["ref_gids"] = len({g for h in hyps.values() for g in h})
    return out


def public(m):
    """The metrics without the private per-observation tables."""
    return {k: v for k, v in m.items() if not k.startswith("_")}
