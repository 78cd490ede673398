"""Source frames of the real-footage check: decoding, cropping, calibration.

The sample video (768x576 pedestrians) is decoded with ffmpeg at a fixed
rate (5 fps by default) into raw RGB, and every source frame is cut into
three camera images:

* ``left``  = x in [0, 480), full height (crop offset ``ox`` = 0),
* ``right`` = x in [288, 768), full height (``ox`` = 288),
* ``full``  = the whole frame, the reference camera.

The two views overlap in x in [288, 480). Each image is encoded as a
baseline JPEG (Pillow, fixed quality), so the bytes, and therefore the
detector's input, are identical from run to run.

One floor calibration serves all three cameras: the sample calibration of
``config/config.yaml`` maps image (0,576)->(0,0), (768,576)->(12,0),
(768,150)->(12,9), (0,150)->(0,9) metres. A crop with offset ``ox`` uses the
same floor points with the image x shifted by ``-ox``; points may lie outside
the crop (``nvr config check`` accepts that: the homography is fitted from
the correspondences, not checked against the image size).
"""
import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from PIL import Image

SRC_W, SRC_H = 768, 576

# name -> (x0, x1) of the crop in full-frame pixels
VIEWS = {
    "left": (0, 480),
    "right": (288, 768),
    "full": (0, 768),
}
# cameras whose identities are linked by the spatial shard under test
LINKED = ("left", "right")
REFERENCE = "full"

# sample calibration of config/config.yaml (full frame pixels -> floor metres)
CALIBRATION = [
    ((0.0, 576.0), (0.0, 0.0)),
    ((768.0, 576.0), (12.0, 0.0)),
    ((768.0, 150.0), (12.0, 9.0)),
    ((0.0, 150.0), (0.0, 9.0)),
]

JPEG_QUALITY = 90


@dataclass
class SourceFrame:
    """One decoded source frame and the JPEG of each camera cut from it."""

    index: int
    jpeg: dict  # camera -> bytes


def calibration_points(camera):
    """The calibration points of ``camera`` (image x shifted by the crop offset)."""
    ox = VIEWS[camera][0]
    return [
        {"image": [u - ox, v], "floor": [x, y]} for (u, v), (x, y) in CALIBRATION
    ]


def homography(points):
    """3x3 image->floor homography fitted (DLT) to ``points`` as in the config."""
    rows = []
    for p in points:
        u, v = p["image"]
        x, y = p["floor"]
        rows.append([u, v, 1, 0, 0, 0, -x * u, -x * v, -x])
        rows.append([0, 0, 0, u, v, 1, -y * u, -y * v, -y])
    _, _, vt = np.linalg.svd(np.asarray(rows, dtype=float))
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def project(h, u, v):
    """Floor position (metres) of image pixel (u, v) through ``h``."""
    p = h @ np.array([u, v, 1.0])
    return float(p[0] / p[2]), float(p[1] / p[2])


def encode_jpeg(rgb):
    """Baseline JPEG bytes of an HxWx3 uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def raw_frames(video, fps=5.0, max_frames=None):
    """Yields the frames of ``video`` decoded at ``fps`` as HxWx3 RGB arrays.

    Raises RuntimeError with ffmpeg's message when decoding fails, or when
    the video is not SRC_W x SRC_H.
    """
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is not installed")
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(video), "-vf", f"fps={fps}"]
    if max_frames:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    size = SRC_W * SRC_H * 3
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        while True:
            raw = proc.stdout.read(size)
            if len(raw) == size:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(SRC_H, SRC_W, 3)
                continue
            err = proc.stderr.read().decode()
            if proc.wait() != 0:
                raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err[-2000:]}")
            if raw:
                raise RuntimeError(
                    f"ffmpeg output ends in a partial frame of {len(raw)} bytes, not a {SRC_W}x{SRC_H} frame "
                    f"(is {video} {SRC_W}x{SRC_H}?)"
                )
            return


def decode(video, fps=5.0, max_frames=None):
    """Decodes ``video`` at ``fps`` and returns a list of :class:`SourceFrame`.

    Raises RuntimeError with ffmpeg's message when decoding fails.
    """
    frames = []
    for i, img in enumerate(raw_frames(video, fps, max_frames)):
        jpeg = {cam: encode_jpeg(np.ascontiguousarray(img[:, x0:x1])) for cam, (x0, x1) in VIEWS.items()}
        frames.append(SourceFrame(index=i, jpeg=jpeg))
    if not frames:
        raise RuntimeError(f"ffmpeg decoded no frames from {video}")
    return frames


def view_size(camera):
    """(width, height) in pixels of ``camera``'s image."""
    x0, x1 = VIEWS[camera]
    return x1 - x0, SRC_H
