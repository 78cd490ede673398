"""Summary of several real-footage runs: spread per metric, Markdown, console.

:func:`summarise` puts the per-run metric dicts (``run.py``'s ``score_run``)
side by side: for each scalar metric the value of every run, the mean, the
min, the max and the spread (max - min); the time-free output fingerprints
tell whether the runs produced identical tracks and spatial output.
:func:`markdown` renders it with the definitions and the diagnosis of the
first run; :func:`console` is the short version printed at the end.
"""
import json

# (path in the per-run dict, label)
SCALARS = [
    ("overlap_agreement.fraction", "overlap agreement (same global id in both views)"),
    ("overlap_agreement.pairs", "overlap pairs (frame, ref person seen by both views)"),
    ("overlap_agreement.pairs_different_gids", "  of which different global ids"),
    ("overlap_agreement.pairs_missing_a_gid", "  of which a view without global id"),
    ("idf1_global.idf1", "IDF1 global identity"),
    ("idf1_global.idp", "  IDP"),
    ("idf1_global.idr", "  IDR"),
    ("idf1_global.num_switches", "  ID switches"),
    ("idf1_no_linking.idf1", "IDF1 no linking ((camera, track_id) ids)"),
    ("idf1_no_linking.idp", "  IDP"),
    ("idf1_no_linking.idr", "  IDR"),
    ("idf1_no_linking.num_switches", "  ID switches"),
    ("reference_shard_sanity.idf1", "IDF1 of the single-camera `ref` shard vs its own camera tracks"),
    ("reference_shard_sanity.ref_tracks_with_several_gids", "  ref tracks given several global ids"),
    ("identities.reference_tracks_min5", "reference tracks (>= 5 frames)"),
    ("identities.global_ids_on_person_obs", "distinct global ids on view person observations"),
    ("identities.global_ids_created_lobby", "global ids created in shard lobby (all labels)"),
    ("identities.view_camera_tracks", "per-camera person tracks of the two views"),
    ("crossers.count", "crossers (ref tracks seen at x<288 and x>=480)"),
    ("crossers.one_gid", "  keeping one global id throughout"),
    ("crossers.fraction_one_gid", "  fraction"),
    ("crossers.one_gid_outside_merges", "  keeping one global id outside frames shared with a hidden neighbour"),
    ("crossers.mean_majority_share", "  mean share of frames with their main global id"),
    ("crossers.crossings", "crossings (left-only zone -> right-only zone or back)"),
    ("crossers.crossings_id_kept", "  same global id on both sides"),
    ("double_binding.count", "double binding (cycle, global id) on 2+ ref people"),
    ("observations.view_person_obs", "view person observations (confirmed)"),
    ("observations.matched_fraction", "  matched to a reference track"),
    ("observations.with_global_id_fraction", "  carrying a global id"),
    ("observations.truncated", "  truncated at the crop border"),
    ("observations.truncated_matched", "  truncated and matched"),
    ("diagnosis.relabelling_lobby.per_100_source_frames", "relabellings per 100 source-frames, lobby (2 views)"),
    ("diagnosis.relabelling_ref.per_100_source_frames", "relabellings per 100 source-frames, ref (1 camera)"),
    ("diagnosis.relabelling_ref.existing_target_unseen_1s_within_0_5m", "  ref: rebinds to a leftover duplicate (unseen >= 1 s, within 0.5 m)"),
    ("diagnosis.overlap.median_feet_m", "disagreeing pairs: median floor distance of the two feet (m)"),
    ("diagnosis.overlap.median_cos_raw", "disagreeing pairs: median raw appearance cosine"),
    ("diagnosis.overlap.median_cos_debiased", "disagreeing pairs: median debiased cosine (emulated)"),
    ("diagnosis.overlap.median_cos_debiased_agreeing_pairs", "agreeing pairs: median debiased cosine (emulated)"),
    ("diagnosis.overlap.share_truncated", "disagreeing pairs: share with a truncated box"),
    ("diagnosis.appearance_stability_views.debiased.median", "frame-to-frame debiased cosine of one track, median"),
    ("diagnosis.appearance_stability_views.debiased.below_0_5", "  share below 0.5 (unbind_similarity)"),
    ("diagnosis.appearance_stability_views.raw.median", "frame-to-frame raw cosine of one track, median"),
    ("diagnosis.stale_observed_lobby.stale", "lobby tracks published `observed` but unseen >= 200 ms"),
    ("diagnosis.stale_observed_lobby.worst_age_ms", "  worst age (ms)"),
    ("session.detector.skipped_count", "detector skipped frames"),
    ("session.detector.processed_count", "detector processed frames"),
    ("session.log.counts.WARN", "nvr log WARN lines"),
    ("session.log.counts.ERROR", "nvr log ERROR lines"),
    ("session.publish_late_ms_max", "publish lateness max (ms)"),
]


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summarise(setup, runs):
    """The summary dict of ``runs`` (list of per-run metric dicts)."""
    table = []
    for path, label in SCALARS:
        vals = [get(r, path) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float))]
        row = {"metric": path, "label": label, "runs": vals}
        if nums:
            row.update(mean=sum(nums) / len(nums), min=min(nums), max=max(nums), spread=max(nums) - min(nums))
        table.append(row)
    fps = [r["fingerprint"] for r in runs]
    keys = sorted({k for f in fps for k in f})
    det = {k: len({f.get(k) for f in fps}) == 1 for k in keys}
    return {
        "reference": "the `full` camera's confirmed person tracks from nvr's own per-camera ByteTrack on the full frame"
        + (f" of the earlier run {setup['reference_from']}" if setup.get("reference_from") else "")
        + "; NOT hand-labelled ground truth",
        "setup": setup,
        "table": table,
        "identical_outputs": det,
        "runs": runs,
    }


def _strip(d):
    """``d`` without per-item lists (``detail``, ``episodes``, timelines)."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in ("detail", "episodes", "crosser_timelines")}
    return d


def compact(s):
    """The summary with the per-item details of run 1 only."""
    out = dict(s)
    out["runs"] = s["runs"][:1] + [_strip(r) for r in s["runs"][1:]]
    return out


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def markdown(s):
    """The Markdown report."""
    st = s["setup"]
    r0 = s["runs"][0]
    d = r0["diagnosis"]
    n = len(s["runs"])
    L = []
    L.append("# Real-footage check of cross-camera identity\n")
    env = "".join(f"{k}={v} " for k, v in (st.get("env") or {}).items())
    L.append(
        f"Command: `{env}data/pyenv/bin/python bench/real_footage/run.py --nvr target/release/nvr --out DIR"
        + (f" --frames {st['frames_arg']}" if st.get("frames_arg") else "")
        + (f" --runs {st['runs']}" if st.get("runs", 3) != 3 else "")
        + "`. Harness: `bench/real_footage/` (see its module docstrings).\n"
    )
    b = st["binary"]
    L.append(
        f"nvr binary: `{b['path']}` built {b['mtime']}, sha256 {b['sha256']}…, {b['version']}; repository HEAD {b['repo_head']}.  "
    )
    L.append(
        f"Input: `{st['video']}` at {st['fps']} fps = {st['source_frames']} source frames, each cut into "
        f"`left` x∈[0,480), `right` x∈[288,768) (floor `lobby`, the shard under test) and `full` (floor `ref`, "
        f"its own shard), published as JPEG `Frame`s with identical `seq`/`ts_ns`, in real time. "
        f"{n} runs of the same input. Runtime {st.get('runs_wall_s') or s.get('runtime_s', 0):.0f} s.\n"
    )
    L.append(f"**Reference**: {s['reference']}.\n")
    L.append("## Metrics\n")
    L.append("| metric | " + " | ".join(f"run {i + 1}" for i in range(n)) + " | mean | spread |")
    L.append("|---|" + "---|" * (n + 2))
    for row in s["table"]:
        L.append(
            f"| {row['label']} | " + " | ".join(_fmt(v) for v in row["runs"]) + f" | {_fmt(row.get('mean'))} | {_fmt(row.get('spread'))} |"
        )
    L.append("")
    same = [k for k, v in s["identical_outputs"].items() if v]
    diff = [k for k, v in s["identical_outputs"].items() if not v]
    L.append(
        f"Determinism (time-free digests of the published messages): identical in every run: {', '.join(same) or 'none'}; "
        f"different: {', '.join(diff) or 'none'}.\n"
    )
    L.append("## Definitions\n")
    L.append(
        "- Observations: confirmed `person` tracks of `left`/`right` (`CameraTracks`). A view box is converted to "
        "full-frame pixels (x·480 + offset) and paired one-to-one (Hungarian) with the reference boxes of the same "
        "frame on the IoU of the view box with the reference box CLIPPED to the view's window, IoU >= 0.5; the clip "
        "makes boxes cut by the crop border (edge within 4 px of x=480 / x=288) match on their visible part.\n"
        "- Global id of an observation: the `SpatialTracks` of shard `lobby` at the first cycle at or after the frame's "
        "`ts_ns` (frames are aligned to cycles, so the frame's own cycle); its (camera, track_id) in the `sources` of a "
        "track with state `observed`, or of a `duplicate` track: then the id in its `duplicate_of` (the person the "
        "shard says that second view is).\n"
        "- IDF1: motmetrics with precomputed distances (0 for a reference person and a hypothesis linked by a matched "
        "observation in that frame, nan otherwise). Global: hypotheses = distinct global ids of the frame's view "
        "observations (a person seen in both views under one id is one hypothesis, under two ids two, one of them a "
        "false positive; unmatched observations are false positives). No linking: hypotheses = (camera, track_id) of "
        "every view observation (a person in the overlap always counts twice).\n"
        "- Crossers: reference tracks whose foot point is seen at x<288 and at x>=480; one global id = every matched "
        "observation of it carries the same global id. Outside frames shared with a hidden neighbour: the same, "
        "leaving out the frames where another reference track, missing for at most 5 frames, would overlap the "
        "crosser's box at IoU 0.3 or more on a line between where it was seen before and after (one detection held "
        "both people there, so no tracker can tell from that frame which of the two the box is).\n"
        "- Double binding: (cycle, global id) whose matched observations in that cycle belong to 2+ reference people.\n"
        "- Relabelling: a confirmed camera track whose global id changes (kinds: `new` id created from it, `merge` "
        "of its old id, `existing` = unbound and rebound to another existing identity).\n"
        "- Debiased cosine: emulation of the spatial tracker's appearance input (the track's colour embedding minus the "
        "running mean of its camera's confirmed-track embeddings, prior 20, renormalised).\n"
    )
    L.append("## Diagnosis (run 1)\n")
    for key, name in (("relabelling_lobby", "lobby (left+right)"), ("relabelling_ref", "ref (full only)")):
        x = d[key]
        L.append(
            f"- Relabelling in {name}: {x['relabellings']} global-id changes of stable camera tracks over "
            f"{x['source_frames']} source-frames ({x['per_100_source_frames']:.1f} per 100), by kind {x['by_kind']}; "
            f"state of the `existing` target identity in the cycle before: {x.get('existing_target_state_before')}; "
            f"targets unseen >= 1 s yet within 0.5 m of the old identity (leftover duplicates carried along): "
            f"{x.get('existing_target_unseen_1s_within_0_5m')}."
        )
    a = d["appearance_stability_views"]
    L.append(
        f"- Appearance stability (views, same track, consecutive frames): raw cosine median {_fmt(get(a, 'raw.median'))}, "
        f"p10 {_fmt(get(a, 'raw.p10'))}; debiased median {_fmt(get(a, 'debiased.median'))}, p10 {_fmt(get(a, 'debiased.p10'))}, "
        f"below 0.5: {_fmt(get(a, 'debiased.below_0_5'))}."
    )
    o = d["overlap"]
    L.append(
        f"- Overlap disagreements (different global ids for one person in both views): {o['pairs_different_gids']} pairs; "
        f"median floor distance between the two views' feet {_fmt(o['median_feet_m'])} m "
        f"(share within 0.5 m {_fmt(o['share_feet_within_0_5m'])}), between the two ids' published positions "
        f"{_fmt(o['median_ids_m'])} m; raw cosine {_fmt(o['median_cos_raw'])}, debiased {_fmt(o['median_cos_debiased'])} "
        f"(agreeing pairs {_fmt(o['median_cos_debiased_agreeing_pairs'])}); truncated share {_fmt(o['share_truncated'])}; "
        f"median depth y {_fmt(o['median_foot_y_m'])} m."
    )
    so = d["stale_observed_lobby"]
    L.append(
        f"- State: {so['stale']} of {so['observed']} `observed` lobby tracks were unseen for >= 200 ms "
        f"({so['stale_without_sources']} with no source; worst {so['worst_age_ms']:.0f} ms)."
    )
    L.append(
        f"- Boxes beyond the frame by > 2% (dropped by the spatial guard as `bad_box`, which releases the source): "
        f"{d['guard_bad_box']['by_camera_state_label']}; tracks confirmed again after such a drop: "
        f"{d['guard_bad_box']['tracks_confirmed_again_after_drop']}."
    )
    L.append(f"- Lobby events: {d['lobby_handoffs']} handoffs, {d['lobby_global_ended']} global_ended (merges); confirmed labels {d['confirmed_labels']}.\n")
    L.append("Longest disagreement episodes (ref person, (left track, gid), (right track, gid), frames):\n")
    L.append("| ref | left (track, gid) | right (track, gid) | frames | count | feet m | ids m | cos raw | cos debiased | truncated |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for e in o["episodes"][:15]:
        L.append(
            f"| {e['ref']} | {tuple(e['left'])} | {tuple(e['right'])} | {e['first']}-{e['last']} | {e['frames']} | "
            f"{_fmt(e['feet_m'])} | {_fmt(e['ids_m'])} | {_fmt(e['cos_raw'])} | {_fmt(e['cos_debiased'])} | {e['trunc_frames']} |"
        )
    L.append("\nCrossers (run 1): global ids over time (`[frames] L<track>->g<gid> R<track>->g<gid>`):\n")
    for c in r0["crossers"]["detail"]:
        tl = d["crosser_timelines"].get(c["ref"]) or d["crosser_timelines"].get(str(c["ref"])) or []
        cr = "; ".join(f"{x['from']}->{x['to']} frames {x['frames'][0]}->{x['frames'][1]} g{x['gids'][0]}->g{x['gids'][1]}" for x in c.get("crossings", []))
        L.append(
            f"- ref {c['ref']} ({c['frames']} frames, ids {c['gids']}; crossings: {cr or 'none'}): "
            + " · ".join(tl[:25]) + (" …" if len(tl) > 25 else "")
        )
    L.append("\nDouble binding (run 1, first 20): " + ", ".join(
        f"frame {x['frame']} g{x['gid']}->refs {x['refs']}" for x in r0["double_binding"]["detail"][:20]
    ) + "\n")
    L.append("## nvr log (WARN/ERROR, per run)\n")
    for i, r in enumerate(s["runs"]):
        lg = r["session"]["log"]
        L.append(f"- run {i + 1}: {lg['counts']}")
        for m in lg["messages"][:10]:
            L.append(f"  - {m['count']}× {m['level']}: `{m['example']}`")
    L.append("\nDetector / spatial status at the end of run 1:\n")
    L.append("```json\n" + json.dumps({"detector": r0["session"]["detector"], "shards": r0["session"]["spatial_shards"]}, indent=1) + "\n```\n")
    return "\n".join(L)


def console(s):
    """Short text for the terminal."""
    lines = [f"reference: {s['reference']}"]
    for row in s["table"]:
        lines.append(
            f"{row['label'][:70]:70s} " + " ".join(f"{_fmt(v):>8s}" for v in row["runs"]) + f"   spread {_fmt(row.get('spread'))}"
        )
    lines.append("identical outputs across runs: " + json.dumps(s["identical_outputs"]))
    return "\n".join(lines)
