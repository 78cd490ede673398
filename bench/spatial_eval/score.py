"""Scores predicted floor tracks against the simulator's floor ground truth.

Usage: score.py <outdir> [<results dir>] [--seeds <dir>]

<outdir> holds one folder per preset (floor_gt.txt, ours.txt, baseline.txt,
run.json, all `frame,id,x,y` in metres) and runs.json, as written by the
`spatial_eval` example. Metrics: MOTA, IDF1 and ID switches from motmetrics
with a 1 m gate (squared distance <= 1), HOTA from trackeval on similarity
max(0, 1 - d / 1 m). Writes spatial.md and spatial.json to the results dir.
With --seeds, <dir> holds one such outdir per extra simulator seed (`s<N>`);
their scores are summarised per preset (mean, worst) next to the main table.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
for _name, _typ in (("float", float), ("int", int), ("bool", bool)):
    if not hasattr(np, _name):
        setattr(np, _name, _typ)

import motmetrics as mm  # noqa: E402
from trackeval.metrics import HOTA  # noqa: E402

PRESETS = ["clean", "default", "hard"]
METHODS = ["ours", "baseline"]


def load(path):
    frames = defaultdict(list)
    text = Path(path).read_text()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < 4:
            raise SystemExit(f"{path}:{n}: expected frame,id,x,y, got {line!r}")
        frames[int(parts[0])].append((int(parts[1]), float(parts[2]), float(parts[3])))
    return frames


def score(gt, pred):
    acc = mm.MOTAccumulator(auto_id=False)
    all_frames = sorted(set(gt) | set(pred))
    gt_ids, tr_ids = {}, {}
    hota_data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    num_gt_dets = num_tr_dets = 0
    for f in all_frames:
        g = gt.get(f, [])
        p = pred.get(f, [])
        gp = np.array([[x, y] for _, x, y in g], dtype=float).reshape(-1, 2)
        pp = np.array([[x, y] for _, x, y in p], dtype=float).reshape(-1, 2)
        d2 = mm.distances.norm2squared_matrix(gp, pp, max_d2=1.0)
        acc.update([i for i, _, _ in g], [i for i, _, _ in p], d2, frameid=f)
        gi = np.array([gt_ids.setdefault(i, len(gt_ids)) for i, _, _ in g], dtype=int)
        ti = np.array([tr_ids.setdefault(i, len(tr_ids)) for i, _, _ in p], dtype=int)
        if len(g) and len(p):
            d = np.sqrt(((gp[:, None, :] - pp[None, :, :]) ** 2).sum(-1))
            sim = np.maximum(0.0, 1.0 - d / 1.0)
        else:
            sim = np.zeros((len(g), len(p)))
        hota_data["gt_ids"].append(gi)
        hota_data["tracker_ids"].append(ti)
        hota_data["similarity_scores"].append(sim)
        num_gt_dets += len(g)
        num_tr_dets += len(p)
    hota_data.update(
        num_timesteps=len(all_frames),
        num_gt_ids=len(gt_ids),
        num_tracker_ids=len(tr_ids),
        num_gt_dets=num_gt_dets,
        num_tracker_dets=num_tr_dets,
    )
    mh = mm.metrics.create()
    s = mh.compute(acc, metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses"], name="x")
    h = HOTA().eval_sequence(hota_data)
    return {
        "mota": 100.0 * float(s["mota"].iloc[0]),
        "idf1": 100.0 * float(s["idf1"].iloc[0]),
        "hota": 100.0 * float(np.mean(h["HOTA"])),
        "id_switches": int(s["num_switches"].iloc[0]),
        "false_positives": int(s["num_false_positives"].iloc[0]),
        "misses": int(s["num_misses"].iloc[0]),
        "gt_ids": len(gt_ids),
        "pred_ids": len(tr_ids),
    }


def score_seeds(seeds_dir):
    """{preset: [(seed, scores of ours)]} over the seed folders."""
    per = defaultdict(list)
    for d in sorted(Path(seeds_dir).glob("s*"), key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else -1):
        runs_path = d / "runs.json"
        if not runs_path.exists():
            raise SystemExit(f"{runs_path} missing")
        for run in json.loads(runs_path.read_text())["runs"]:
            preset = run["preset"]
            gt = load(d / preset / "floor_gt.txt")
            per[preset].append((run["seed"], score(gt, load(d / preset / "ours.txt"))))
    return per


def main():
    args = sys.argv[1:]
    seeds_dir = None
    if "--seeds" in args:
        i = args.index("--seeds")
        if i + 1 >= len(args):
            raise SystemExit("--seeds needs a directory")
        seeds_dir = args[i + 1]
        del args[i:i + 2]
    if not args:
        raise SystemExit("usage: score.py <outdir> [<results dir>] [--seeds <dir>]")
    out = Path(args[0])
    res_dir = Path(args[1]) if len(args) > 1 else Path("bench/results")
    runs_path = out / "runs.json"
    if not runs_path.exists():
        raise SystemExit(f"{runs_path} missing: run the spatial_eval example first")
    runs = json.loads(runs_path.read_text())
    results = {"metric_notes": "floor plane, 1 m threshold; MOTA/IDF1/IDs from motmetrics, HOTA from trackeval (similarity max(0, 1 - d/1m))",
               "presets": {}, "bench": runs.get("bench", [])}
    lines = ["| preset | method | MOTA | IDF1 | HOTA | ID sw. | FP | FN | GT ids | pred ids |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs["runs"]:
        preset = run["preset"]
        gt = load(out / preset / "floor_gt.txt")
        entry = {"run": run}
        for m in METHODS:
            r = score(gt, load(out / preset / f"{m}.txt"))
            entry[m] = r
            lines.append(f"| {preset} | {m} | {r['mota']:.1f} | {r['idf1']:.1f} | {r['hota']:.1f} | {r['id_switches']} | "
                         f"{r['false_positives']} | {r['misses']} | {r['gt_ids']} | {r['pred_ids']} |")
        results["presets"][preset] = entry
    table = "\n".join(lines)
    print(table)
    md = ["# Spatial (cross-camera) tracking evaluation", "",
          "Simulated 20 x 12 m floor, 4 pinhole cameras (1280x720) with overlaps and blind gaps, "
          "10 fps, 120 s per preset. Detections -> per-camera tracker -> spatial tracker, offline on message time. "
          "`ours` reports the identities observed in a frame plus those unobserved for up to 1 s whose predicted "
          "position is still inside a camera's view (missed or occluded), and for up to 10 s those carried along by the identity they vanished next to (a group member hidden behind another; `SpatialTracker::coasting_tracks`). "
          "`baseline`: no cross-camera association (each camera track is its own identity). "
          "Ground truth: people seen by at least one camera. Distances on the floor, 1 m threshold.", "",
          "Reproduce: `scripts/eval-spatial`.", "", table, ""]
    targets = {"default": 95.0, "hard": 85.0}
    md.append("Targets (global IDF1): " + ", ".join(
        f"{k} >= {v:.0f}: {'met' if results['presets'].get(k, {}).get('ours', {}).get('idf1', 0.0) >= v else 'NOT met'}"
        for k, v in targets.items()) + ".")
    md.append("")
    if seeds_dir:
        per = score_seeds(seeds_dir)
        results["seeds"] = {p: [{"seed": sd, **r} for sd, r in v] for p, v in per.items()}
        md += ["## Over simulator seeds", "",
               "The same evaluation on other simulator seeds (different people, paths, noise draws).", "",
               "| preset | seeds | IDF1 mean | IDF1 worst (seed) | MOTA mean | HOTA mean | target met at every seed |",
               "|---|---:|---:|---:|---:|---:|---|"]
        for preset in PRESETS:
            v = per.get(preset, [])
            if not v:
                continue
            idf1 = [r["idf1"] for _, r in v]
            worst = min(v, key=lambda x: x[1]["idf1"])
            tgt = targets.get(preset)
            met = "-" if tgt is None else ("yes" if min(idf1) >= tgt else "no")
            md.append(f"| {preset} | {len(v)} | {sum(idf1) / len(idf1):.1f} | {worst[1]['idf1']:.1f} ({worst[0]}) | "
                      f"{sum(r['mota'] for _, r in v) / len(v):.1f} | {sum(r['hota'] for _, r in v) / len(v):.1f} | {met} |")
        md.append("")
        md.append("Seeds: " + ", ".join(str(sd) for sd, _ in per.get("default", [])) + ".")
        md.append("")
        print("\n".join(md[-(len(PRESETS) + 4):]))
    if results["bench"]:
        md += ["## Matching cycle benchmark", "",
               "Synthetic floor tiled by overlapping cameras; one cycle = ingest of every camera message + `step`.", "",
               "| active tracks | cycles | mean ms | p99 ms | re-id mean ms |", "|---:|---:|---:|---:|---:|"]
        for b in results["bench"]:
            md.append(f"| {b['active_tracks']} | {b['cycles']} | {b['mean_ms']:.3f} | {b['p99_ms']:.3f} | {b['reid_mean_ms']:.3f} |")
        md.append("")
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "spatial.md").write_text("\n".join(md))
    (res_dir / "spatial.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
