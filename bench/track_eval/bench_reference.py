"""Times Roboflow supervision's ByteTrack on a MOT detection file.

The input is the synthetic sequence written by the tracker crate's
`bench::write_mot(synthetic_sequence(...))` (e.g. `track_mot bench N F det.txt`),
so the reference sees exactly the detections our `bench_updates` times.
Prints one JSON line: {"objects": N, "updates_per_sec": X}.

Usage: bench_reference.py <det.txt> [--objects N] [--fps 5] [--repeat R]
"""

import argparse
import json
import sys
import time

import numpy as np
from supervision.tracker.byte_tracker.core import ByteTrack


def load(path):
    try:
        arr = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        sys.exit(f"bench_reference: cannot read MOT detections {path}: {e}")
    if arr.size == 0:
        sys.exit(f"bench_reference: {path} has no detections")
    last = int(arr[:, 0].max())
    frames = []
    for f in range(1, last + 1):
        rows = arr[arr[:, 0] == f]
        t = np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5], rows[:, 6]])
        frames.append(t.astype(np.float32).reshape(-1, 5))
    return frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dets")
    ap.add_argument("--objects", type=int, default=None,
                    help="objects in the scene (default: median detections per frame)")
    ap.add_argument("--fps", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1, help="run the sequence this many times, report the best")
    args = ap.parse_args()
    frames = load(args.dets)
    objects = args.objects if args.objects is not None else int(np.median([len(f) for f in frames]))
    best = 0.0
    for _ in range(max(1, args.repeat)):
        # Same configuration as the accuracy evaluation (5 fps, 3 s lost buffer).
        tracker = ByteTrack(track_activation_threshold=0.6, lost_track_buffer=90,
                            minimum_matching_threshold=0.8, frame_rate=args.fps)
        t0 = time.perf_counter()
        for t in frames:
            tracker.update_with_tensors(t)
        dt = time.perf_counter() - t0
        best = max(best, len(frames) / dt if dt > 0 else 0.0)
    print(json.dumps({"objects": objects, "updates_per_sec": round(best, 1)}))


if __name__ == "__main__":
    main()
