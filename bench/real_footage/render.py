"""Draws what one real-footage run saw on the source frames, to check by eye.

Usage::

    data/pyenv/bin/python bench/real_footage/render.py --run DIR/run1 \\
        --frames 235-240 [--crop X0,Y0,X1,Y1] [--scale 2] [--out FILE.png] \\
        [--video data/samples/vtest.avi]

For each frame (``A-B`` or a comma list, indices at 5 fps as in ``run.py``)
it draws, on the full frame:

* the reference's person tracks (camera ``full``) in green, ``R<track>``;
* the ``left`` view's confirmed person tracks in blue and the ``right``
  view's in red, each ``l<track>:g<global id>`` / ``r<track>:g<global id>``
  (the id the ``lobby`` shard gave that camera track in the cycle the frame
  belongs to, ``gNone`` when it had none), mapped to full-frame pixels;
* the two crop borders (x = 288 and 480) in yellow and the frame index.

The frames are tiled three to a row into one PNG (``--out``, default
``frames.png``), cut to ``--crop`` (full-frame pixels) and enlarged
``--scale`` times. It also prints the same boxes as text, with the
reference track each view track is matched to (``metrics.py``) and the IoU.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

import frames as frames_mod  # noqa: E402
import metrics  # noqa: E402
import nvrproc  # noqa: E402
import publish  # noqa: E402

GREEN, BLUE, RED, YELLOW = (0, 255, 0), (80, 160, 255), (255, 80, 80), (255, 255, 0)


def parse_frames(spec):
    """``"3-5,9"`` -> [3, 4, 5, 9]."""
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def read_frames(video, wanted):
    """{index: HxWx3 array} for the wanted indices of ``video`` decoded at 5 fps."""
    out = {}
    for i, img in enumerate(frames_mod.raw_frames(video, max_frames=max(wanted) + 1)):
        if i in wanted:
            out[i] = img
    missing = sorted(set(wanted) - set(out))
    if missing:
        raise SystemExit(f"{video} has no frame {missing[0]} at 5 fps")
    return out


def draw(img, fi, refs, obs, scale, crop):
    """One annotated tile."""
    tile = Image.fromarray(np.ascontiguousarray(img)).convert("RGB")
    tile = tile.resize((tile.width * scale, tile.height * scale))
    d = ImageDraw.Draw(tile)
    for rid, b in refs.get(fi, {}).items():
        d.rectangle([v * scale for v in b], outline=GREEN, width=1)
        d.text((b[0] * scale + 2, b[3] * scale - 12), f"R{rid}", fill=GREEN)
    for o in obs.get(fi, []):
        b, left = o["box"], o["camera"] == "left"
        col = BLUE if left else RED
        d.rectangle([v * scale for v in b], outline=col, width=1)
        d.text((b[0] * scale + 2, b[1] * scale + (2 if left else 14)), f"{o['camera'][0]}{o['track_id']}:g{o['gid']}", fill=col)
    for x in (frames_mod.VIEWS["right"][0], frames_mod.VIEWS["left"][1]):
        d.line([(x * scale, 0), (x * scale, tile.height)], fill=YELLOW)
    if crop:
        tile = tile.crop([v * scale for v in crop])
    ImageDraw.Draw(tile).text((4, 4), f"f{fi}", fill=YELLOW)
    return tile


def describe(fi, refs, obs, crop):
    """The frame's boxes as text lines, those within ``crop`` only."""

    def inside(b):
        return not crop or (b[0] < crop[2] and b[2] > crop[0] and b[1] < crop[3] and b[3] > crop[1])

    lines = [f"frame {fi}: reference " + ", ".join(f"R{r} {[round(v) for v in b]}" for r, b in refs.get(fi, {}).items() if inside(b))]
    for o in obs.get(fi, []):
        if inside(o["box"]):
            lines.append(
                f"    {o['camera']:5} track {o['track_id']:3} g{o['gid']}  {[round(v) for v in o['box']]}"
                f"  -> R{o['ref']} (IoU {o['iou']:.2f})"
            )
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run<k> directory of run.py")
    ap.add_argument("--frames", required=True, help="frame indices: A-B or a comma list")
    ap.add_argument("--crop", help="X0,Y0,X1,Y1 in full-frame pixels")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--out", default="frames.png")
    ap.add_argument("--video", default=str(nvrproc.REPO / "data" / "samples" / "vtest.avi"))
    args = ap.parse_args(argv)
    run_dir = Path(args.run)
    for name in ("bus.msgpack", "meta.json"):
        if not (run_dir / name).is_file():
            raise SystemExit(f"{run_dir} has no {name}: pass a run<k> directory written by run.py")
    wanted = parse_frames(args.frames)
    crop = [int(v) for v in args.crop.split(",")] if args.crop else None
    if crop and len(crop) != 4:
        raise SystemExit(f"--crop wants X0,Y0,X1,Y1, got {args.crop}")
    run = metrics.Run(publish.load_bus(run_dir / "bus.msgpack"), json.loads((run_dir / "meta.json").read_text()))
    refs, obs = metrics.build_observations(run)
    imgs = read_frames(args.video, set(wanted))
    tiles = []
    for fi in wanted:
        print("\n".join(describe(fi, refs, obs, crop)))
        tiles.append(draw(imgs[fi], fi, refs, obs, args.scale, crop))
    w, h = tiles[0].size
    cols = min(3, len(tiles))
    canvas = Image.new("RGB", (w * cols, h * ((len(tiles) + cols - 1) // cols)))
    for i, t in enumerate(tiles):
        canvas.paste(t, ((i % cols) * w, (i // cols) * h))
    canvas.save(args.out)
    print(f"written: {args.out} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
