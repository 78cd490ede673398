"""Why cross-camera identity goes wrong: evidence from one run's messages.

Everything here is read from what nvr published (``CameraTracks``,
``SpatialTracks``, events), nothing from nvr's internals:

* **relabelling**: for every camera track (a "source"), the global id its
  spatial shard gave it in each cycle; a change of a confirmed track's
  global id while it stays the same camera track is a relabelling. Each is
  classified by what the new id is: ``new`` (created in that cycle from this
  source: a ``global_started`` event names it), ``merge`` (the old id ended
  in that cycle: ``global_ended``; no id expires by TTL within a run, so an
  end is a merge), or ``existing`` (the source was unbound and rebound to
  another identity that already existed; its state in the cycle before,
  how long it had been unseen and how far it was from the old identity are
  kept: an identity unseen for over 1 s yet within 0.5 m of the person is a
  leftover duplicate carried along with it). The single-camera ``ref`` shard
  gets the same treatment: there, every relabelling is the spatial tracker's
  own doing, no other camera is involved.
* **overlap disagreements**: (frame, reference person) pairs seen by both
  views under two different global ids, grouped into episodes, each with
  the floor distance between the two views' foot points (projected through
  the calibration, as the tracker does), the raw cosine similarity of their
  appearance embeddings, the cosine after the per-camera mean is taken out
  (an emulation of the tracker's ``debias``: running mean of each camera's
  confirmed-track embeddings with a prior of 20 zero vectors), whether a box
  is truncated at the crop border, and the distance between the two ids'
  published floor positions.
"""
from collections import Counter, defaultdict

import numpy as np

from frames import LINKED, REFERENCE, calibration_points, homography, project
from metrics import LABEL, SHARD_LINKED, SHARD_REF, source_map

CAMERA_MEAN_PRIOR = 20.0
CAMERA_MEAN_WINDOW = 2000.0


def debiased_embeddings(run, cameras):
    """{(camera, frame, track_id): debiased unit embedding}, emulating the tracker."""
    out = {}
    for cam in cameras:
        s, n = None, 0.0
        for fi in sorted(run.tracks[cam]):
            for t in run.tracks[cam][fi]:
                e = t.get("embedding")
                if not e:
                    continue
                e = np.asarray(e, dtype=float)
                if s is None or len(s) != len(e):
                    s, n = np.zeros(len(e)), 0.0
                if t["state"] == "confirmed":
                    if n >= CAMERA_MEAN_WINDOW:
                        s *= (CAMERA_MEAN_WINDOW - 1) / CAMERA_MEAN_WINDOW
                        n = CAMERA_MEAN_WINDOW - 1
                    s += e
                    n += 1
                v = e - s / (n + CAMERA_MEAN_PRIOR)
                nv = np.linalg.norm(v)
                out[(cam, fi, t["track_id"])] = v / nv if nv > 0 else v
    return out


def cos(a, b):
    """Cosine similarity (0 when either is missing or zero)."""
    if a is None or b is None:
        return None
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else None


def relabelling(run, shard, cameras):
    """Global-id changes of confirmed person camera tracks within ``shard``."""
    started = {
        (e["ts_ns"], e.get("camera"), e.get("track_id")): e["global_id"]
        for e in run.events
        if e["kind"] == "global_started" and e.get("shard") == shard
    }
    ended = {(e["ts_ns"], e["global_id"]) for e in run.events if e["kind"] == "global_ended" and e.get("shard") == shard}
    cycles = run.spatial[shard]
    index = {ts: i for i, (ts, _) in enumerate(cycles)}
    last = {}
    kinds = Counter()
    targets = Counter()
    carried = 0
    source_frames = 0
    lost_binding = 0
    detail = []
    for f in run.frames:
        fi = f["index"]
        cyc = run.cycle(shard, f["ts_ns"])
        if not cyc:
            continue
        cts, tracks = cyc
        smap = source_map(tracks)
        for cam in cameras:
            for t in run.persons(cam, fi):
                key = (cam, t["track_id"])
                g = smap.get(key)
                gid = g[0] if g else None
                source_frames += 1
                prev = last.get(key)
                if prev is not None and gid is None:
                    lost_binding += 1
                if prev is not None and gid is not None and gid != prev:
                    if started.get((cts, cam, t["track_id"])) == gid:
                        kind = "new"
                    elif (cts, prev) in ended:
                        kind = "merge"
                    else:
                        kind = "existing"
                    kinds[kind] += 1
                    row = {"frame": fi, "camera": cam, "track_id": t["track_id"], "from": prev, "to": gid, "kind": kind}
                    if kind == "existing" and index.get(cts, 0) > 0:
                        before = {x["global_id"]: x for x in cycles[index[cts] - 1][1]}
                        tb, ta = before.get(gid), before.get(prev)
                        if tb is None:
                            row["target"] = "absent"
                        else:
                            row["target"] = tb.get("state", "observed") + ("+sources" if tb["sources"] else "-no-sources")
                            row["target_unseen_ms"] = (cycles[index[cts] - 1][0] - tb["last_seen_ns"]) / 1e6
                            if ta is not None:
                                row["target_dist_m"] = float(np.hypot(tb["x_m"] - ta["x_m"], tb["y_m"] - ta["y_m"]))
                                if row["target_unseen_ms"] >= 1000 and row["target_dist_m"] < 0.5:
                                    carried += 1
                        targets[row["target"]] += 1
                    detail.append(row)
                if gid is not None:
                    last[key] = gid
    total = sum(kinds.values())
    return {
        "source_frames": source_frames,
        "relabellings": total,
        "per_100_source_frames": 100.0 * total / source_frames if source_frames else 0.0,
        "by_kind": dict(kinds),
        "existing_target_state_before": dict(targets),
        "existing_target_unseen_1s_within_0_5m": carried,
        "bound_then_unbound_frames": lost_binding,
        "detail": detail,
    }


def overlap_episodes(run, m):
    """Disagreement episodes of the overlap (see the module docstring)."""
    hom = homography(calibration_points(REFERENCE))
    deb = debiased_embeddings(run, LINKED)

    def foot(o):
        b = o["box"]
        return project(hom, 0.5 * (b[0] + b[2]), b[3])

    rows = []
    for fi, rid, lo, ro in m["_disagreements"]:
        if lo["gid"] is None or ro["gid"] is None:
            continue
        fl, fr = foot(lo), foot(ro)
        rows.append(
            {
                "frame": fi,
                "ref": rid,
                "left": (lo["track_id"], lo["gid"]),
                "right": (ro["track_id"], ro["gid"]),
                "feet_m": float(np.hypot(fl[0] - fr[0], fl[1] - fr[1])),
                "ids_m": float(np.hypot(lo["gpos"][0] - ro["gpos"][0], lo["gpos"][1] - ro["gpos"][1])),
                "cos_raw": cos(lo["emb"], ro["emb"]),
                "cos_debiased": cos(deb.get(("left", fi, lo["track_id"])), deb.get(("right", fi, ro["track_id"]))),
                "trunc": bool(lo["trunc"] or ro["trunc"]),
                "foot_y_m": 0.5 * (fl[1] + fr[1]),
            }
        )
    # debiased cosine also for the agreeing pairs, for comparison
    agree_cos = []
    for fi, fo in m["_obs"].items():
        by_ref = defaultdict(dict)
        for o in fo:
            if o["ref"] is not None:
                by_ref[o["ref"]][o["camera"]] = o
        for d in by_ref.values():
            if len(d) == 2 and d["left"]["gid"] is not None and d["left"]["gid"] == d["right"]["gid"]:
                c = cos(deb.get(("left", fi, d["left"]["track_id"])), deb.get(("right", fi, d["right"]["track_id"])))
                if c is not None:
                    agree_cos.append(c)
    episodes = []
    for r in sorted(rows, key=lambda r: (r["ref"], r["left"], r["right"], r["frame"])):
        e = episodes[-1] if episodes else None
        if e and e["ref"] == r["ref"] and e["left"] == r["left"] and e["right"] == r["right"] and r["frame"] <= e["last"] + 2:
            e["last"] = r["frame"]
            e["rows"].append(r)
        else:
            episodes.append({"ref": r["ref"], "left": r["left"], "right": r["right"], "first": r["frame"], "last": r["frame"], "rows": [r]})
    out = []
    for e in episodes:
        rs = e.pop("rows")
        e["frames"] = len(rs)
        for k in ("feet_m", "ids_m", "cos_raw", "cos_debiased", "foot_y_m"):
            vals = [r[k] for r in rs if r[k] is not None]
            e[k] = float(np.median(vals)) if vals else None
        e["trunc_frames"] = sum(r["trunc"] for r in rs)
        out.append(e)
    out.sort(key=lambda e: -e["frames"])

    def med(k):
        vals = [r[k] for r in rows if r[k] is not None]
        return float(np.median(vals)) if vals else None

    return {
        "pairs_different_gids": len(rows),
        "median_feet_m": med("feet_m"),
        "share_feet_within_0_5m": (sum(r["feet_m"] < 0.5 for r in rows) / len(rows)) if rows else None,
        "median_ids_m": med("ids_m"),
        "median_cos_raw": med("cos_raw"),
        "median_cos_debiased": med("cos_debiased"),
        "median_cos_debiased_agreeing_pairs": float(np.median(agree_cos)) if agree_cos else None,
        "share_truncated": (sum(r["trunc"] for r in rows) / len(rows)) if rows else None,
        "median_foot_y_m": med("foot_y_m"),
        "episodes": out,
    }


def crosser_timelines(run, m):
    """For each crosser: its runs of (view set, global ids) over time, compressed."""
    out = {}
    refs_of = {c["ref"] for c in m["crossers"]["detail"]}
    for fi in sorted(m["_obs"]):
        for o in m["_obs"][fi]:
            if o["ref"] in refs_of:
                out.setdefault(o["ref"], defaultdict(dict))[fi][o["camera"][0].upper()] = (o["track_id"], o["gid"])
    text = {}
    for rid, frames in out.items():
        parts, cur, start = [], None, None
        for fi in sorted(frames):
            d = frames[fi]
            label = " ".join(f"{c}{tid}->g{g}" for c, (tid, g) in sorted(d.items()))
            if label != cur:
                if cur is not None:
                    parts.append(f"[{start}-{prev}] {cur}")
                cur, start = label, fi
            prev = fi
        if cur is not None:
            parts.append(f"[{start}-{prev}] {cur}")
        text[rid] = parts
    return text


def appearance_stability(run, cameras, deb):
    """Frame-to-frame cosine of the same confirmed person track, raw and debiased.

    The spatial tracker unbinds a source whose (debiased) appearance falls
    below ``unbind_similarity`` (0.5) against its identity for
    ``unbind_cycles`` (1) cycle; a descriptor that is unstable from one frame
    to the next therefore unbinds sources of a perfectly stable camera track.
    """
    raw, dbs = [], []
    for cam in cameras:
        prev = {}
        for fi in sorted(run.tracks[cam]):
            cur = {}
            for t in run.tracks[cam][fi]:
                if t["state"] != "confirmed" or t["label"] != LABEL or not t.get("embedding"):
                    continue
                cur[t["track_id"]] = t["embedding"]
                if t["track_id"] in prev and prev[t["track_id"]][0] == fi - 1:
                    raw.append(cos(t["embedding"], prev[t["track_id"]][1]))
                    dbs.append(cos(deb[(cam, fi, t["track_id"])], deb[(cam, fi - 1, t["track_id"])]))
            for k, e in cur.items():
                prev[k] = (fi, e)
    raw = np.array([x for x in raw if x is not None])
    dbs = np.array([x for x in dbs if x is not None])

    def q(a):
        if not len(a):
            return None
        return {
            "n": int(len(a)),
            "p10": float(np.percentile(a, 10)),
            "median": float(np.median(a)),
            "below_0_5": float(np.mean(a < 0.5)),
            "below_0_3": float(np.mean(a < 0.3)),
        }

    return {"raw": q(raw), "debiased": q(dbs)}


def stale_observed(run, shard):
    """Tracks published as ``observed`` whose ``last_seen_ns`` is over one cycle old."""
    n = total = 0
    worst = 0
    no_src = 0
    for ts, tracks in run.spatial[shard]:
        for t in tracks:
            if t.get("state", "observed") != "observed":
                continue
            total += 1
            age = ts - t["last_seen_ns"]
            if age >= 200_000_000:
                n += 1
                worst = max(worst, age)
                no_src += not t["sources"]
    return {"observed": total, "stale": n, "stale_without_sources": no_src, "worst_age_ms": worst / 1e6}


def guard_refusals(run, tol=0.02):
    """Track boxes the spatial guard drops as ``bad_box`` (beyond the frame by > ``tol``).

    A dropped track is absent from what the spatial tracker ingests, which
    releases its source (binding) as if the camera track had ended; counted
    by (camera, state), plus how many such tracks were confirmed again later.
    """
    lo, hi = np.float32(-tol), np.float32(1.0) + np.float32(tol)  # the guard's f32 arithmetic
    dropped = Counter()
    later = set()
    seen_dropped = {}
    for cam in run.tracks:
        for fi in sorted(run.tracks[cam]):
            for t in run.tracks[cam][fi]:
                b = [np.float32(v) for v in t["bbox"]]
                c = [min(max(v, 0.0), 1.0) for v in b]  # clamped, must keep a positive area
                bad = (
                    b[0] >= b[2] or b[1] >= b[3] or any(v < lo or v > hi for v in b)
                    or not (c[0] < c[2] and c[1] < c[3]) or not 0.0 <= t["score"] <= 1.0
                )
                key = (cam, t["track_id"])
                if bad:
                    dropped[f"{cam}/{t['state']}/{t['label']}"] += 1
                    seen_dropped[key] = fi
                elif key in seen_dropped and t["state"] == "confirmed":
                    later.add(key)
    return {"by_camera_state_label": dict(dropped), "tracks_confirmed_again_after_drop": len(later)}


def diagnose(run, m):
    """The evidence, as a JSON-ready dict."""
    lobby = relabelling(run, SHARD_LINKED, LINKED)
    ref = relabelling(run, SHARD_REF, (REFERENCE,))
    labels = Counter(t["label"] for cam in run.tracks for fr in run.tracks[cam].values() for t in fr if t["state"] == "confirmed")
    merges = sum(1 for e in run.events if e["kind"] == "global_ended" and e.get("shard") == SHARD_LINKED)
    handoffs = sum(1 for e in run.events if e["kind"] == "handoff" and e.get("shard") == SHARD_LINKED)
    deb = debiased_embeddings(run, LINKED + (REFERENCE,))
    return {
        "appearance_stability_views": appearance_stability(run, LINKED, deb),
        "appearance_stability_ref": appearance_stability(run, (REFERENCE,), deb),
        "stale_observed_lobby": stale_observed(run, SHARD_LINKED),
        "stale_observed_ref": stale_observed(run, SHARD_REF),
        "guard_bad_box": guard_refusals(run),
        "relabelling_lobby": lobby,
        "relabelling_ref": ref,
        "overlap": overlap_episodes(run, m),
        "crosser_timelines": crosser_timelines(run, m),
        "lobby_global_ended": merges,
        "lobby_handoffs": handoffs,
        "confirmed_labels": dict(labels),
        "label_scored": LABEL,
    }
