"""Writes the real-footage fixture of the per-camera tracker's crossing test.

From one saved run of ``run.py`` (its ``run<k>`` directory), the person
detections of one view over a range of source frames, as the detector
published them (score, box, colour embedding), go to a small JSON file:

    crossing_fixture.py RUN_DIR right 280 330 actors/src/track/testdata/vtest_right_280_330.json
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import publish  # noqa: E402


def main():
    run_dir, camera, first, last, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    meta = json.loads((Path(run_dir) / "meta.json").read_text())
    frame_of = {f["seq"]: f["index"] for f in meta["frames"]}
    frames = []
    for subject, _, m in publish.load_bus(Path(run_dir) / "bus.msgpack"):
        if subject != f"nvr.detections.{camera}":
            continue
        fi = frame_of.get(m["seq"])
        if fi is None or not first <= fi <= last:
            continue
        objects = [
            {
                "score": round(o["score"], 4),
                "bbox": [round(v, 5) for v in o["bbox"]],
                "embedding": [round(v, 4) for v in o.get("embedding") or []],
            }
            for o in m["objects"]
            if o["label"] == "person"
        ]
        frames.append({"frame": fi, "ts_ns": m["ts_ns"], "objects": objects})
    frames.sort(key=lambda f: f["frame"])
    t0 = frames[0]["ts_ns"] if frames else 0
    for f in frames:
        f["ts_ns"] -= t0
    doc = {
        "source": f"data/samples/vtest.avi at 5 fps, view {camera!r} of bench/real_footage, frames {first}-{last}",
        "width": 480,
        "height": 576,
        "frames": frames,
    }
    Path(out).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{out}: {len(frames)} frames, {sum(len(f['objects']) for f in frames)} detections")


if __name__ == "__main__":
    main()
