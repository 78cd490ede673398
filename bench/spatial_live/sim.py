"""Independent multi-camera people simulator for the live spatial evaluation.

Why: nvr's own simulator (`nvr sim`, actors/src/sim) shares the tracker's
assumptions (foot point = box bottom centre, exact homographies, additive
camera appearance bias). This one does not: it models a room seen by four
real pinhole cameras and produces what a person detector would publish.

World: a floor `floor_w` x `floor_h` metres, z up, with a door on the left
wall. Four pinhole cameras ~3 m high, tilted down, 1280x720 or 960x540,
with overlapping views and blind areas (see `CAMERAS`; `python sim.py`
prints the coverage). A second room (`rig` 1, `CAMERAS_RIG1`), on which
nothing was tuned, has three cameras 2.5-4.2 m high with other lenses and
image sizes. People walk between random waypoints (0.6-1.6 m/s, with a
little mutual avoidance), some stand still for long periods, some leave
through the door and come back 10-40 s later.

A person is a vertical cylinder (radius 0.2-0.25 m, height 1.5-1.9 m). Its
box is the bounding box of the projected cylinder, so the box bottom centre
is the cylinder's *front* edge, not the floor point of its axis; boxes are
clipped by the image border (truncation) and by nearer people (occlusion in
depth order; the detector box is the visible extent). A person is
*detectable* by a camera when at least `min_visible` of its full box is
visible and the visible box is at least `min_box_h_px` high. The floor
ground truth of the evaluation is every person in the room who is
detectable by at least one camera that has started (`Scene.floor_truth`).

Detector model (the difficulty): scores of true people (Beta, lowered by
occlusion and small size), the detector's `min_confidence` 0.5 cut applied
here (nvr applies it only in its own detectors), bursty misses (a Markov
on/off chain per person and camera), persistent ghosts at fixed image
places, box jitter, and one box around two people whose boxes overlap (now
and then, as a real detector gives when one person passes another: the box
bottom between them, the colours of both; `merge_iou`, `merge_p`).
Appearance: every person has clothing colours; the
embedding is nvr's colour descriptor (actors/src/detect/embed.rs
`colour_descriptor`: 2 x (8 hues x 2 saturations + 4 greys) = 40 values,
same sampling grid and bins) of synthetic pixels: body parts in depth order,
background leaking in, texture noise, then each camera's colour cast
(per-channel gain), brightness, a floor lighting gradient and sensor noise.
With `white_point` (off by default, as nvr's `cameras[].detection.white_point`)
each camera's white point is set as a user sets it: measured as nvr's
detection status does (the mean colour of the descriptor's samples over its
person boxes) on a separate recording of the same cameras with other people
(`white_point_s`), then every pixel the descriptor samples is scaled so that
the white point's channels become equal (actors/src/detect/white_balance.rs);
the config the evaluation writes carries those white points.
With `emb_dim` > 0 the embedding is a stand-in for a learned re-ID model
instead: per person a random unit vector (look-alike pairs close), per
camera a fixed random distortion of it, a box's vector mixing those of
what its pixels show (occluders, background) plus per-detection noise, with
the same-person and cross-camera cosines as knobs (`emb_same_cos`,
`emb_cam_cos`).
Calibration: the config gets 6-8 noisy image<->floor pairs per camera; the
truth stays the exact camera. Timing: 5 fps per camera, staggered starts,
per-camera clock offsets and timestamp jitter.

Every knob is a field of `Knobs`; `difficulty()` gives the three presets.
Deterministic for a (knobs, seed, people, duration).
"""
from __future__ import annotations

import argparse
import colorsys
import dataclasses
import math
import os
from dataclasses import dataclass, field

import numpy as np

# id, camera centre (x, y, z) m, yaw (deg, 0 = +x, 90 = +y), tilt below horizontal (deg),
# image (w, h), horizontal field of view (deg)
CAMERAS = [
    ("cam_sw", (0.3, 0.3, 3.0), 40.0, 40.0, (1280, 720), 84.0),
    ("cam_s", (11.0, 0.2, 3.2), 100.0, 40.0, (960, 540), 88.0),
    ("cam_ne", (19.7, 13.7, 3.0), 225.0, 36.0, (1280, 720), 80.0),
    ("cam_nw", (6.0, 13.8, 2.8), 245.0, 38.0, (960, 540), 86.0),
]
# A second room, never tuned on (`rig` 1): a smaller floor, three cameras
# of other heights, tilts, lenses and image sizes, the door on the left
# wall near the bottom. Its floor size and door replace the knobs'
# (`RIG_FLOORS`).
CAMERAS_RIG1 = [
    ("cam_a", (0.2, 0.2, 4.2), 35.0, 46.0, (1920, 1080), 92.0),
    ("cam_b", (17.8, 12.8, 2.5), 215.0, 30.0, (1280, 720), 76.0),
    ("cam_c", (9.0, 12.9, 3.6), 275.0, 44.0, (960, 540), 98.0),
]
RIGS = [CAMERAS, CAMERAS_RIG1]
# (floor_w, floor_h, door) of each rig.
RIG_FLOORS = [(20.0, 14.0, (0.0, 11.0)), (18.0, 13.0, (0.0, 2.5))]
EMB_LEN = 40


@dataclass
class Knobs:
    # scene
    floor_w: float = 20.0
    floor_h: float = 14.0
    door: tuple = (0.0, 11.0)
    fps: float = 5.0
    rig: int = 0                            # the room and cameras (`RIGS`): 0 tuned on, 1 never
    camera_pose_jitter_m: float = 0.15      # per-seed perturbation of the nominal camera poses
    camera_pose_jitter_deg: float = 2.0
    # people
    speed: tuple = (0.6, 1.6)
    radius: tuple = (0.2, 0.25)
    height: tuple = (1.5, 1.9)
    p_stander: float = 0.25                 # share of people who stand still for long periods
    long_stand_s: tuple = (15.0, 45.0)
    short_pause_s: tuple = (0.0, 3.0)
    p_leaver: float = 0.3                   # share of people who leave by the door once
    outside_s: tuple = (10.0, 40.0)
    lookalike_pairs: int = 3                # pairs with near-identical clothing
    lookalike_rgb_sd: float = 6.0
    # geometry realism
    foot_offset: bool = True                # box from the projected cylinder (else from its axis)
    truncation: bool = True                 # boxes cut by the image border are still detected
    occlusion: bool = True
    min_visible: float = 0.5
    min_box_h_px: float = 28.0
    # calibration written to the config
    calib_points: tuple = (6, 8)
    calib_floor_sd_m: float = 0.07
    calib_image_sd_px: float = 2.0
    # appearance
    cam_gain_sd: float = 0.12               # per-channel colour cast (gain), per camera
    cam_brightness: tuple = (0.75, 1.25)
    cam_noise_sd: tuple = (4.0, 12.0)       # sensor noise, 0..255 units
    light_gradient: float = 0.15            # brightness varies +-15% across the floor
    texture_sd: float = 0.08                # per-pixel multiplicative clothing texture
    bg_leak: float = 0.12                   # share of body pixels that show background
    # timing
    ts_jitter_ms: float = 20.0
    clock_offset_ms: float = 80.0
    start_spread_s: float = 5.0
    # detector quality
    score_lo: float = 0.0                   # score = lo + (hi - lo) * Beta(a, b) * penalties
    score_hi: float = 1.0
    score_a: float = 6.0
    score_b: float = 2.5
    occlusion_score_pen: float = 0.3        # score *= 1 - pen * (1 - visible fraction)
    small_score_pen: float = 0.2            # score *= 1 - pen * max(0, 1 - h / 120 px)
    min_confidence: float = 0.5             # the detector's cut
    miss_on: float = 0.0                    # P(detected -> missed) per frame (Markov)
    miss_off: float = 0.3                   # P(missed -> detected) per frame
    ghosts: int = 0                         # persistent false detections in the scene
    ghost_on: float = 0.8                   # stationary share of frames a ghost is there
    ghost_score: tuple = (5.0, 3.0)         # Beta of ghost scores (then the 0.5 cut)
    box_jitter: float = 0.02                # sd of each edge, fraction of box width / height
    merge_iou: float = 0.0                  # two people whose boxes overlap this much (IoU of
    merge_p: float = 0.0                    # the whole boxes) get one box around both, per frame
                                            # with this probability (0: never)
    # appearance model (0: nvr's colour descriptor of the pixels)
    emb_dim: int = 0                        # else a learned embedding of this length: per person a
                                            # random unit vector, mixed by the box's pixel shares
    emb_same_cos: float = 0.8               # expected cosine of two detections of one person, one camera
    emb_cam_cos: float = 0.85               # expected cosine of one person's vectors in two cameras
    emb_lookalike_cos: float = 0.9          # expected cosine of a look-alike pair's vectors
    # white point set per camera (nvr's `cameras[].detection.white_point`)
    white_point: bool = False               # measured from a recording of the same cameras with
    white_point_s: float = 60.0             # other people, this long; then a fixed gain per camera


def difficulty(name: str) -> Knobs:
    """The three presets: every realism knob on, detector quality differs.

    `NVR_SIM_KNOBS` (e.g. ``merge_p=0,ghosts=0``) overrides knobs of every
    preset, for measuring what one knob costs; the evaluation records the
    knobs it ran with."""
    if name == "perfect":
        k = Knobs(score_lo=0.75, score_hi=0.98, score_a=2.0, score_b=2.0,
                  occlusion_score_pen=0.0, small_score_pen=0.0, box_jitter=0.02)
    elif name == "decent":
        k = Knobs(score_a=8.5, score_b=3.4, miss_on=0.015, miss_off=0.3, ghosts=2,
                  box_jitter=0.05, merge_iou=0.4, merge_p=0.3)
    elif name == "poor":
        k = Knobs(score_a=6.0, score_b=3.0, miss_on=0.03, miss_off=0.25, ghosts=5,
                  box_jitter=0.08, merge_iou=0.4, merge_p=0.5)
    else:
        raise ValueError(f"unknown difficulty {name!r} (perfect, decent, poor)")
    for kv in filter(None, os.environ.get("NVR_SIM_KNOBS", "").split(",")):
        key, _, value = kv.partition("=")
        key = key.strip()
        if not hasattr(k, key) or not value or isinstance(getattr(k, key), tuple):
            raise ValueError(f"NVR_SIM_KNOBS: {kv!r} is not KNOB=VALUE with a number knob of sim.Knobs")
        cur = getattr(k, key)
        setattr(k, key, type(cur)(value) if not isinstance(cur, bool) else value.strip().lower() in ("1", "true"))
    if not 0 <= k.rig < len(RIGS):
        raise ValueError(f"NVR_SIM_KNOBS: rig {k.rig} does not exist (0 to {len(RIGS) - 1})")
    if k.rig != 0:
        k.floor_w, k.floor_h, k.door = RIG_FLOORS[k.rig]
    return k


def cameras(k: Knobs) -> list:
    """The nominal cameras of the knobs' rig."""
    return RIGS[k.rig]


class Camera:
    def __init__(self, cid, pos, yaw_deg, tilt_deg, size, hfov_deg):
        self.id, self.C = cid, np.asarray(pos, float)
        self.w, self.h = size
        self.f = (self.w / 2) / math.tan(math.radians(hfov_deg / 2))
        y, t = math.radians(yaw_deg), math.radians(tilt_deg)
        fwd = np.array([math.cos(y) * math.cos(t), math.sin(y) * math.cos(t), -math.sin(t)])
        right = np.array([fwd[1], -fwd[0], 0.0])
        right /= np.linalg.norm(right)
        self.R = np.stack([right, np.cross(fwd, right), fwd])   # rows: x right, y down, z forward

    def project(self, P):
        pc = (np.asarray(P, float) - self.C) @ self.R.T
        z = pc[..., 2]
        zs = np.where(z > 1e-6, z, 1e-6)
        return self.f * pc[..., 0] / zs + self.w / 2, self.f * pc[..., 1] / zs + self.h / 2, z


def fit_homography(img_pts, floor_pts):
    """Least-squares DLT (normalised) image px -> floor m, 3x3."""
    def norm(p):
        p = np.asarray(p, float)
        m, s = p.mean(0), np.sqrt(2) / max(np.linalg.norm(p - p.mean(0), axis=1).mean(), 1e-9)
        return np.array([[s, 0, -s * m[0]], [0, s, -s * m[1]], [0, 0, 1]])
    Ti, Tf = norm(img_pts), norm(floor_pts)
    a = (np.c_[img_pts, np.ones(len(img_pts))] @ Ti.T)
    b = (np.c_[floor_pts, np.ones(len(floor_pts))] @ Tf.T)
    rows = []
    for (x, y, _), (u, v, _) in zip(a, b):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    H = np.linalg.svd(np.array(rows))[2][-1].reshape(3, 3)
    H = np.linalg.inv(Tf) @ H @ Ti
    return H / H[2, 2]


def apply_h(H, uv):
    p = np.c_[np.asarray(uv, float).reshape(-1, 2), np.ones(len(np.asarray(uv).reshape(-1, 2)))] @ H.T
    return p[:, :2] / p[:, 2:3]


def _iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _hsv_bins(rgb_u8):
    """nvr's `bin_of` for an array of uint8 RGB pixels."""
    c = rgb_u8.astype(np.float32) / np.float32(255.0)
    r, g, b = c[:, 0], c[:, 1], c[:, 2]
    mx, mn = c.max(1), c.min(1)
    d = mx - mn
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1), 0).astype(np.float32)
    dd = np.where(d > 0, d, 1)
    h = np.where(mx == r, np.mod((g - b) / dd, 6.0), np.where(mx == g, (b - r) / dd + 2, (r - g) / dd + 4))
    h = np.where(d <= 0, 0.0, h)
    grey = (s < 0.25) | (mx < 0.15)
    gb = 16 + np.minimum((mx * 4).astype(int), 3)
    hb = np.minimum((h / 6.0 * 8).astype(int), 7)
    sb = np.minimum(((s - 0.25) / 0.75 * 2).astype(int), 1)
    return np.where(grey, gb, hb * 2 + sb)


def descriptor_grid(bbox_norm, w, h):
    """Sample pixel coordinates and half index of nvr's `colour_descriptor`."""
    # nvr multiplies in f32: so must this, or an edge near a whole pixel
    # lands one pixel off.
    cl = lambda v: np.float32(min(max(float(np.float32(v)), 0.0), 1.0))
    x0 = min(int(cl(min(bbox_norm[0], bbox_norm[2])) * np.float32(w)), w - 1)
    y0 = min(int(cl(min(bbox_norm[1], bbox_norm[3])) * np.float32(h)), h - 1)
    x1 = min(max(math.ceil(cl(max(bbox_norm[0], bbox_norm[2])) * np.float32(w)), x0 + 1), w)
    y1 = min(max(math.ceil(cl(max(bbox_norm[1], bbox_norm[3])) * np.float32(h)), y0 + 1), h)
    bw, bh = x1 - x0, y1 - y0
    cx0, cx1 = (x0 + bw // 5, x1 - bw // 5) if bw >= 5 else (x0, x1)
    xs, ys = min(cx1 - cx0, 48), min(bh, 96)
    iy, ix = np.arange(ys), np.arange(xs)
    yy = y0 + (iy * bh + bh // 2) // ys
    xx = cx0 + (ix * (cx1 - cx0) + (cx1 - cx0) // 2) // xs
    half = (yy - y0 >= -(-bh // 2)).astype(int)
    Y, X = np.meshgrid(np.minimum(yy, h - 1), np.minimum(xx, w - 1), indexing="ij")
    return X.ravel(), Y.ravel(), np.repeat(half, len(xx))


def colour_descriptor(rgb_u8, half):
    out = np.bincount(half * 20 + _hsv_bins(rgb_u8), minlength=EMB_LEN).astype(np.float32)
    for k in (0, 1):
        s = out[k * 20:(k + 1) * 20].sum()
        if s > 0:
            out[k * 20:(k + 1) * 20] /= s
    n = float(np.linalg.norm(out))
    return out / n if n > 0 else np.full(EMB_LEN, 1 / math.sqrt(EMB_LEN), np.float32)


def white_gain(white_point):
    """nvr's gain for a white point (`white_balance::gain_of`): R, G, B
    multipliers that make its channels equal to their average (the cast
    goes, the brightness stays)."""
    m = np.asarray(white_point, dtype=np.float64)
    grey = (m[0] + m[1] + m[2]) / 3.0
    return np.array([grey / v if v > 0 else 1.0 for v in m])


def balance(rgb_u8, gain):
    """Pixels scaled by a gain as nvr does (f64, rounded half to even)."""
    return np.clip(np.round(rgb_u8.astype(np.float64) * gain), 0, 255).astype(np.uint8)


def _body(b, us, vs):
    """Where pixel centres (us, vs) fall on the silhouette of a person whose
    amodal box is `b`: their height fraction down the box, and the mask of
    those inside (head narrower than torso, legs in between)."""
    ry = (vs + 0.5 - b[1]) / max(b[3] - b[1], 1e-6)
    rx = np.abs((us + 0.5 - (b[0] + b[2]) / 2) / max(b[2] - b[0], 1e-6))
    half = np.where(ry < 0.13, 0.2, np.where(ry < 0.5, 0.48, 0.38))
    return ry, (ry >= 0) & (ry <= 1) & (rx <= half)


def _rgb(hh, s, v):
    return np.array(colorsys.hsv_to_rgb(hh % 1.0, s, v)) * 255.0


def _clothes(rng, bottom=False):
    u = rng.random()
    if bottom and u < 0.4:
        return _rgb(rng.uniform(0.58, 0.64), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.55))
    if u < (0.75 if bottom else 0.35):
        return _rgb(0, rng.uniform(0, 0.15), rng.uniform(0.08, 0.95))
    return _rgb(rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.95))


@dataclass
class Person:
    pid: int
    radius: float
    height: float
    top: np.ndarray
    bottom: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    stander: bool = False
    leaver: bool = False


@dataclass
class Frame:
    k: int
    t: float                      # true capture time, scene seconds
    ts: float                     # reported time (clock offset + jitter), scene seconds
    dets: list = field(default_factory=list)   # dicts: score, bbox (px), emb, pid (-1 ghost)
    truth: list = field(default_factory=list)  # (pid, visible box px)


class Scene:
    def __init__(self, knobs: Knobs, seed: int, people: int = 20, duration: float = 60.0,
                 with_embeddings: bool = True, people_stream=None):
        self.k, self.seed, self.duration = knobs, seed, float(duration)
        rng = np.random.default_rng(seed)
        # A stream of its own, so that the merge knob's draws do not shift the others.
        self.merge_rng = np.random.default_rng([seed, 1])
        self.merged_boxes = 0                   # detections that are one box for two people
        self.merge_frames = set()               # (camera id, frame index) holding such a box
        self._make_cameras(rng)
        if people_stream is not None:   # the same cameras, other people
            rng = np.random.default_rng([seed, 3, people_stream])
        self.box_colours = {c.id: [] for c in self.cameras}   # raw mean colour of each box described
        self.wb_gain, self.white_point_cfg = {}, {}
        if knobs.white_point and knobs.emb_dim <= 0 and with_embeddings and people_stream is None:
            calib = Scene(dataclasses.replace(knobs, white_point=False), seed, people,
                          duration=knobs.white_point_s, people_stream=0)
            self.wb_gain = calib.white_gains()
            self.white_point_cfg = {c: [float(v) for v in m] for c, m in calib.white_points().items()}
        self._make_people(rng, people)
        self._walk(rng)
        self._make_detector_state(rng)
        self._make_embedding_model()
        self.frames = {c.id: self._camera_frames(rng, i, c, with_embeddings)
                       for i, c in enumerate(self.cameras)}

    # ---- world ---------------------------------------------------------
    def _make_cameras(self, rng):
        k = self.k
        self.cameras = []
        for cid, pos, yaw, tilt, size, fov in cameras(k):
            p = np.array(pos) + np.r_[rng.normal(0, k.camera_pose_jitter_m, 2), 0]
            self.cameras.append(Camera(cid, p, yaw + rng.normal(0, k.camera_pose_jitter_deg),
                                       tilt + rng.normal(0, k.camera_pose_jitter_deg / 2), size, fov))
        self.start = {c.id: rng.uniform(0, k.start_spread_s) for c in self.cameras}
        self.offset = {c.id: rng.uniform(-1, 1) * k.clock_offset_ms / 1000 for c in self.cameras}
        self.gain = {c.id: np.clip(1 + rng.normal(0, k.cam_gain_sd, 3), 0.6, 1.4) for c in self.cameras}
        self.bright = {c.id: rng.uniform(*k.cam_brightness) for c in self.cameras}
        self.noise = {c.id: rng.uniform(*k.cam_noise_sd) for c in self.cameras}
        self.bg = {c.id: np.array([_clothes(rng) * 0.5 + 90 for _ in range(3)]) for c in self.cameras}
        self.calib, self.H = {}, {}
        gx, gy = np.meshgrid(np.linspace(0.5, k.floor_w - 0.5, 39), np.linspace(0.5, k.floor_h - 0.5, 27))
        grid = np.c_[gx.ravel(), gy.ravel()]
        for c in self.cameras:
            u, v, z = c.project(np.c_[grid, np.zeros(len(grid))])
            ok = (z > 0.5) & (u > 20) & (u < c.w - 20) & (v > 20) & (v < c.h - 20)
            cand = grid[ok]
            n = int(rng.integers(k.calib_points[0], k.calib_points[1] + 1))
            chosen = [int(rng.integers(len(cand)))]
            while len(chosen) < n:   # farthest-point sampling: spread over the view
                d = np.min(np.linalg.norm(cand[:, None] - cand[chosen][None], axis=2), axis=1)
                chosen.append(int(np.argmax(d * rng.uniform(0.8, 1.0, len(d)))))
            fl = cand[chosen]
            u, v, _ = c.project(np.c_[fl, np.zeros(len(fl))])
            img = np.c_[u, v] + rng.normal(0, k.calib_image_sd_px, (n, 2))
            flo = fl + rng.normal(0, k.calib_floor_sd_m, (n, 2))
            self.calib[c.id] = [(np.round(i, 1).tolist(), np.round(f, 3).tolist()) for i, f in zip(img, flo)]
            self.H[c.id] = fit_homography(np.array([p[0] for p in self.calib[c.id]]),
                                          np.array([p[1] for p in self.calib[c.id]]))

    def _make_people(self, rng, n):
        k = self.k
        self.people = []
        for i in range(n):
            self.people.append(Person(
                i + 1, rng.uniform(*k.radius), rng.uniform(*k.height), _clothes(rng), _clothes(rng, True),
                _rgb(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95)),
                _rgb(rng.uniform(0.05, 0.1), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.6)),
                stander=rng.random() < k.p_stander, leaver=rng.random() < k.p_leaver))
        for j in range(min(k.lookalike_pairs, n // 2)):
            a, b = self.people[2 * j], self.people[2 * j + 1]
            for attr in ("top", "bottom", "hair"):
                setattr(b, attr, np.clip(getattr(a, attr) + rng.normal(0, k.lookalike_rgb_sd, 3), 0, 255))
            b.height = float(np.clip(a.height + rng.normal(0, 0.03), *k.height))
        self.lookalikes = [(2 * j + 1, 2 * j + 2) for j in range(min(k.lookalike_pairs, n // 2))]

    def _walk(self, rng, dt=0.05):
        k, n = self.k, len(self.people)
        T = int(math.ceil(self.duration / dt)) + 2
        self.dt, self.times = dt, np.arange(T) * dt
        pos = np.zeros((T, n, 2))
        present = np.zeros((T, n), bool)
        lo, hi = np.array([0.4, 0.4]), np.array([k.floor_w - 0.4, k.floor_h - 0.4])
        door = np.array(k.door, float) + [0.3, 0.0]
        p = np.zeros((n, 2))
        for i in range(n):
            for _ in range(100):
                p[i] = rng.uniform(lo, hi)
                if i == 0 or np.min(np.linalg.norm(p[:i] - p[i], axis=1)) > 1.0:
                    break
        target = rng.uniform(lo, hi, (n, 2))
        speed = rng.uniform(*k.speed, n)
        wait = np.array([rng.uniform(*k.long_stand_s) if q.stander and rng.random() < 0.5 else 0.0
                         for q in self.people])
        leave_at = np.array([rng.uniform(3, max(3.0, 0.6 * self.duration)) if q.leaver else np.inf for q in self.people])
        back_at = np.full(n, np.inf)
        state = np.zeros(n, int)   # 0 inside, 1 heading to the door, 2 outside, 3 done leaving
        self.door_events = []
        for ti, t in enumerate(self.times):
            for i, q in enumerate(self.people):
                if state[i] == 2:
                    if t >= back_at[i]:
                        state[i], p[i] = 3, door.copy()
                        target[i], wait[i] = rng.uniform(lo, hi), 0.0
                    continue
                if state[i] == 0 and t >= leave_at[i]:
                    state[i], target[i], wait[i] = 1, door, 0.0
                if wait[i] > 0:
                    wait[i] -= dt
                    continue
                d = target[i] - p[i]
                dist = np.linalg.norm(d)
                if dist < 0.15:
                    if state[i] == 1:
                        out = rng.uniform(*k.outside_s)
                        state[i], back_at[i] = 2, t + out
                        self.door_events.append((q.pid, float(t), float(t + out)))
                        continue
                    target[i] = rng.uniform(lo, hi)
                    speed[i] = rng.uniform(*k.speed)
                    long = q.stander and rng.random() < 0.6
                    wait[i] = rng.uniform(*(k.long_stand_s if long else k.short_pause_s))
                    continue
                v = d / dist * speed[i] * (1 + 0.1 * math.sin(0.7 * t + i))
                others = np.array([j for j in range(n) if j != i and state[j] != 2], int)
                if len(others):
                    off = p[i] - p[others]
                    dd = np.linalg.norm(off, axis=1)
                    near = dd < 0.8
                    if near.any():
                        v = v + (off[near] / np.maximum(dd[near], 1e-3)[:, None]
                                 * (0.8 - dd[near])[:, None] * 2.5).sum(0)
                step = v * dt
                p[i] = p[i] + (step if np.linalg.norm(step) <= dist else d)
                if state[i] != 1:
                    p[i] = np.clip(p[i], lo, hi)
            pos[ti] = p
            present[ti] = state != 2
        self.pos, self.present = pos, present

    def positions(self, t):
        """(pid, x, y) of everyone in the room at scene time t (interpolated)."""
        f = min(max(t / self.dt, 0.0), len(self.times) - 1.001)
        i, a = int(f), f - int(f)
        ok = self.present[i] & self.present[i + 1]
        xy = self.pos[i] * (1 - a) + self.pos[i + 1] * a
        return [(q.pid, xy[j, 0], xy[j, 1]) for j, q in enumerate(self.people) if ok[j]]

    # ---- rendering -----------------------------------------------------
    def render(self, cam, people_xy):
        """Per person in the room: amodal box, visible box, visible fraction, depth."""
        k = self.k
        out = {}
        if not people_xy:
            return out
        pids = [p[0] for p in people_xy]
        xy = np.array([[p[1], p[2]] for p in people_xy])
        rad = np.array([self.people[i - 1].radius for i in pids])
        hgt = np.array([self.people[i - 1].height for i in pids])
        a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        ring = xy[:, None, :] + rad[:, None, None] * np.stack([np.cos(a), np.sin(a)], -1)[None]
        P = np.concatenate([np.dstack([ring, np.zeros(ring.shape[:2])]),
                            np.dstack([ring, np.broadcast_to(hgt[:, None], ring.shape[:2])])], 1)
        u, v, z = cam.project(P)
        box = np.stack([u.min(1), v.min(1), u.max(1), v.max(1)], 1)
        if not k.foot_offset:
            ub, vb, _ = cam.project(np.c_[xy, np.zeros(len(xy))])
            _, vt, _ = cam.project(np.c_[xy, hgt])
            hw = (box[:, 2] - box[:, 0]) / 2
            box = np.stack([ub - hw, vt, ub + hw, vb], 1)
        _, _, depth = cam.project(np.c_[xy, hgt / 2])
        order = np.argsort(depth)
        nearer = []
        gx, gy = (np.arange(12) + 0.5) / 12, (np.arange(32) + 0.5) / 32
        for j in order:
            if not (z[j] > 0.3).all():
                continue
            b = box[j]
            bw, bh = b[2] - b[0], b[3] - b[1]
            cu, cv = b[0] + gx * bw, b[1] + gy * bh
            inside = ((cv[:, None] >= 0) & (cv[:, None] < cam.h)) & ((cu[None] >= 0) & (cu[None] < cam.w))
            vis = inside.copy()
            if k.occlusion:
                for o in nearer:
                    ow = 0.12 * (o[2] - o[0])
                    vis &= ~((cv[:, None] >= o[1]) & (cv[:, None] <= o[3]) & (cu[None] >= o[0] + ow) & (cu[None] <= o[2] - ow))
            nearer.append(b)
            frac = vis.mean()
            if not inside.all() and not k.truncation:
                frac = 0.0
            if frac <= 0:
                continue
            rows, cols = np.where(vis.any(1))[0], np.where(vis.any(0))[0]
            vb = np.array([b[0] + cols[0] / 12 * bw, b[1] + rows[0] / 32 * bh,
                           b[0] + (cols[-1] + 1) / 12 * bw, b[1] + (rows[-1] + 1) / 32 * bh])
            vb = np.clip(vb, [0, 0, 0, 0], [cam.w, cam.h, cam.w, cam.h])
            ok = frac >= k.min_visible and vb[3] - vb[1] >= k.min_box_h_px
            out[pids[j]] = dict(box=b, vbox=vb, frac=float(frac), depth=float(depth[j]),
                                xy=xy[j], detectable=bool(ok))
        return out

    def floor_truth(self, t):
        """Ground truth at scene time t: (pid, x, y) of people in the room that are
        detectable (min_visible, min_box_h_px) by at least one started camera."""
        ppl = self.positions(t)
        seen = set()
        for c in self.cameras:
            if t >= self.start[c.id]:
                seen |= {pid for pid, r in self.render(c, ppl).items() if r["detectable"]}
        return [p for p in ppl if p[0] in seen]

    def palette(self, pid):
        q = self.people[pid - 1]
        return np.stack([q.hair, q.skin, q.top, q.bottom, np.array([30.0, 28, 26])])

    def pixels(self, cam, items, us, vs, light_xy, rng):
        """Synthetic RGB (uint8) at pixel centres (us, vs) of camera `cam`;
        items: (amodal box, depth, palette hair/skin/top/bottom/shoes)."""
        k = self.k
        n = len(us)
        col = np.full((n, 3), np.nan)
        free = rng.random(n) >= k.bg_leak
        tex = 1 + rng.normal(0, k.texture_sd, (n, 1))
        u0, u1, v0, v1 = us.min(), us.max() + 1, vs.min(), vs.max() + 1
        for b, _, pal in sorted(items, key=lambda it: it[1]):
            if b[0] > u1 or b[2] < u0 or b[1] > v1 or b[3] < v0:
                continue
            ry, body = _body(b, us, vs)
            m = free & body
            free &= ~m
            part = np.where(ry < 0.04, 0, np.where(ry < 0.13, 1, np.where(ry < 0.5, 2, np.where(ry < 0.95, 3, 4))))
            col[m] = pal[part[m]] * tex[m]
        bgm = np.isnan(col[:, 0])
        tile = ((us // 64).astype(int) + (vs // 48).astype(int)) % 3
        col[bgm] = self.bg[cam.id][tile[bgm]] * (1 + rng.normal(0, 0.05, (bgm.sum(), 1)))
        light = 1 + k.light_gradient * math.sin(light_xy[0] / self.k.floor_w * 2.5 + light_xy[1] / self.k.floor_h * 1.3)
        col = col * self.gain[cam.id] * self.bright[cam.id] * light + rng.normal(0, self.noise[cam.id], (n, 3))
        return np.clip(np.round(col), 0, 255).astype(np.uint8)

    # ---- detector ------------------------------------------------------
    def _make_detector_state(self, rng):
        k = self.k
        self.ghost_list = []
        for g in range(k.ghosts):
            c = self.cameras[g % len(self.cameras)]
            for _ in range(200):
                xy = rng.uniform([1, 1], [k.floor_w - 1, k.floor_h - 1])
                r = self.render(c, [(1, xy[0], xy[1])])
                if 1 in r and r[1]["detectable"] and r[1]["frac"] > 0.99:
                    break
            b = r[1]["box"].copy()
            b[1] += (b[3] - b[1]) * rng.uniform(0, 0.3)
            self.ghost_list.append(dict(cam=c.id, box=b, xy=xy, on=True,
                                        top=_clothes(rng), bottom=_clothes(rng, True)))

    def _make_embedding_model(self):
        """A stand-in for a learned re-ID model (`emb_dim` > 0): each person and
        ghost a random unit vector (look-alike pairs `emb_lookalike_cos` apart),
        each camera a fixed random linear distortion of it (`emb_cam_cos`), the
        background a vector per camera. A box's embedding mixes the vectors of
        what its pixels show, by pixel share, plus per-detection noise
        (`emb_same_cos`). Its own random stream: the scene is otherwise the
        same as with the colour descriptor."""
        k = self.k
        if k.emb_dim <= 0:
            return
        r = np.random.default_rng([self.seed, 2])
        d = k.emb_dim

        def unit(v):
            return v / np.linalg.norm(v)

        spread = lambda c: math.sqrt(max(1.0 / c - 1.0, 0.0))
        base = {q.pid: unit(r.normal(size=d)) for q in self.people}
        for a, b in self.lookalikes:
            base[b] = unit(base[a] + spread(k.emb_lookalike_cos) * unit(r.normal(size=d)))
        for g, gh in enumerate(self.ghost_list):
            base[-(g + 1)] = unit(r.normal(size=d))
        eps = spread(k.emb_cam_cos)
        self.emb_vec, self.emb_bg = {}, {}
        for c in self.cameras:
            G = r.normal(0, 1 / math.sqrt(d), (d, d))
            self.emb_vec[c.id] = {pid: unit(v + eps * (G @ v)) for pid, v in base.items()}
            self.emb_bg[c.id] = unit(r.normal(size=d))
        self.emb_noise = math.sqrt(max(1.0 / k.emb_same_cos - 1.0, 0.0) / d)

    def learned_embedding(self, cam, items, us, vs, rng):
        """The stand-in learned embedding of a box sampled at (us, vs); items:
        (amodal box, depth, key into emb_vec) nearest first or not."""
        n = len(us)
        owner = np.full(n, -1)
        free = np.ones(n, bool)
        for j, (b, _, _) in sorted(enumerate(items), key=lambda it: it[1][1]):
            m = free & _body(b, us, vs)[1]
            owner[m] = j
            free &= ~m
        v = self.emb_bg[cam.id] * float((owner < 0).mean())
        for j, (_, _, key) in enumerate(items):
            share = float((owner == j).mean())
            if share > 0:
                v = v + share * self.emb_vec[cam.id][key]
        v = v / max(np.linalg.norm(v), 1e-9) + rng.normal(0, self.emb_noise, len(v))
        return (v / np.linalg.norm(v)).astype(np.float32)

    def _score(self, rng, r):
        k = self.k
        s = k.score_lo + (k.score_hi - k.score_lo) * rng.beta(k.score_a, k.score_b)
        h = r["vbox"][3] - r["vbox"][1]
        return s * (1 - k.occlusion_score_pen * (1 - r["frac"])) * (1 - k.small_score_pen * max(0.0, 1 - h / 120))

    def _camera_frames(self, rng, ci, cam, with_emb):
        k = self.k
        frames, miss = [], {q.pid: False for q in self.people}
        W, Hh = cam.w, cam.h
        t, kk = self.start[cam.id], 0
        while t <= self.duration:
            fr = Frame(kk, t, t + self.offset[cam.id] + rng.uniform(-1, 1) * k.ts_jitter_ms / 1000)
            rend = self.render(cam, self.positions(t))
            boxes = []
            for pid, r in rend.items():
                miss[pid] = (rng.random() >= k.miss_off) if miss[pid] else (rng.random() < k.miss_on)
                if not r["detectable"]:
                    continue
                fr.truth.append((pid, r["vbox"].copy()))
                s = self._score(rng, r)
                if miss[pid] or s < k.min_confidence:
                    continue
                boxes.append((pid, r["vbox"], s, r["xy"]))
            if k.merge_iou > 0 and k.merge_p > 0:
                boxes, merged = self._merge_overlapping(rend, boxes)
                if merged:
                    self.merge_frames.add((cam.id, kk))
            for g in self.ghost_list:
                if g["cam"] != cam.id:
                    continue
                p_off = k.miss_off * (1 - k.ghost_on) / max(k.ghost_on, 1e-6)
                g["on"] = (rng.random() >= p_off) if g["on"] else (rng.random() < k.miss_off)
                s = rng.beta(*k.ghost_score)
                if g["on"] and s >= k.min_confidence:
                    boxes.append((-1, g["box"], s, g["xy"]))
            # Box jitter, pixels and order from a stream of this frame's own, so
            # that a knob acting on some frames (merge) leaves the others as they were.
            frng = np.random.default_rng([self.seed, ci, kk])
            for pid, vb, s, xy in boxes:
                bw, bh = vb[2] - vb[0], vb[3] - vb[1]
                jb = vb + frng.normal(0, k.box_jitter, 4) * np.array([bw, bh, bw, bh])
                jb = np.clip(jb, 0, [W, Hh, W, Hh])
                if jb[2] - jb[0] < 2 or jb[3] - jb[1] < 4:
                    continue
                det = dict(pid=pid, score=float(min(s, 0.999)), bbox=jb)
                if with_emb:
                    bn = [jb[0] / W, jb[1] / Hh, jb[2] / W, jb[3] / Hh]
                    X, Y, half = descriptor_grid(bn, W, Hh)
                    if pid < 0:
                        g = next(g for g in self.ghost_list if g["cam"] == cam.id and g["box"] is vb)
                        items = [(g["box"], 1.0, np.stack([g["top"]] * 3 + [g["bottom"]] * 2))]
                    else:
                        items = [(r["box"], r["depth"], self.palette(p)) for p, r in rend.items()]
                    if k.emb_dim > 0:
                        if pid < 0:
                            gi = next(i for i, h in enumerate(self.ghost_list) if h is g)
                            keys = [(g["box"], 1.0, -(gi + 1))]
                        else:
                            keys = [(r["box"], r["depth"], p) for p, r in rend.items()]
                        det["emb"] = self.learned_embedding(cam, keys, X, Y, frng)
                    else:
                        px = self.pixels(cam, items, X, Y, xy, frng)
                        self.box_colours[cam.id].append(px.astype(np.float64).mean(0))
                        if cam.id in self.wb_gain:
                            px = balance(px, self.wb_gain[cam.id])
                        det["emb"] = colour_descriptor(px, half)
                fr.dets.append(det)
            frng.shuffle(fr.dets)
            frames.append(fr)
            kk += 1
            t = self.start[cam.id] + kk / k.fps
        return frames

    def white_points(self):
        """Each camera's white point: the mean of its boxes' mean colours
        (descriptor samples, before any gain), rounded as nvr prints it."""
        return {c: np.round(np.mean(v, 0), 1) for c, v in self.box_colours.items() if v}

    def white_gains(self):
        """The gain of each camera's white point (`white_gain`)."""
        return {c: white_gain(m) for c, m in self.white_points().items()}

    def _merge_overlapping(self, rend, boxes):
        """What a real detector does with two people whose boxes overlap: now and
        then one box around both instead of two (or of the nearer one alone).

        Pairs of people in the image whose whole boxes overlap by `merge_iou` or
        more, at least one of them detected, most overlapping first, each person
        in one pair at most: with probability `merge_p` the pair's detections
        become one box, the union of their visible boxes, with the higher of
        their scores, labelled as the nearer person (whose foot point the box
        bottom is nearest to). Its descriptor is computed from the pixels of
        the union box, so it mixes both people's colours. Returns the boxes
        and how many of them are merged."""
        k = self.k
        det = {b[0]: b for b in boxes}
        pids = sorted(rend)
        pairs = []
        for i, a in enumerate(pids):
            for b in pids[i + 1:]:
                if a not in det and b not in det:
                    continue
                o = _iou(rend[a]["box"], rend[b]["box"])
                if o >= k.merge_iou:
                    pairs.append((o, a, b))
        pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
        used, merged = set(), []
        for _, a, b in pairs:
            if a in used or b in used or self.merge_rng.random() >= k.merge_p:
                continue
            used |= {a, b}
            front = a if rend[a]["depth"] <= rend[b]["depth"] else b
            va, vb = rend[a]["vbox"], rend[b]["vbox"]
            box = np.array([min(va[0], vb[0]), min(va[1], vb[1]), max(va[2], vb[2]), max(va[3], vb[3])])
            s = max(det[p][2] for p in (a, b) if p in det)
            merged.append((front, box, s, rend[front]["xy"]))
        self.merged_boxes += len(merged)
        return [d for d in boxes if d[0] not in used] + merged, len(merged)

    # ---- summary -------------------------------------------------------
    def stats(self):
        tp = sum(1 for fs in self.frames.values() for f in fs for d in f.dets if d["pid"] > 0)
        gh = sum(1 for fs in self.frames.values() for f in fs for d in f.dets if d["pid"] < 0)
        vis = sum(len(f.truth) for fs in self.frames.values() for f in fs)
        sc = np.array([d["score"] for fs in self.frames.values() for f in fs for d in f.dets if d["pid"] > 0])
        return dict(recall=tp / max(vis, 1), true_dets=tp, ghost_dets=gh, visible_boxes=vis,
                    true_scores_below_0_7=float((sc < 0.7).mean()) if len(sc) else 0.0,
                    door_leaves=len(self.door_events), standers=sum(q.stander for q in self.people),
                    lookalike_pairs=len(self.lookalikes), merged_boxes=self.merged_boxes)

    def calib_error(self, cam):
        """Median floor error (m) of the config's calibration over the floor in view."""
        u, v = np.meshgrid(np.linspace(0, cam.w, 17), np.linspace(0, cam.h, 11))
        d = np.c_[(u.ravel() - cam.w / 2) / cam.f, (v.ravel() - cam.h / 2) / cam.f, np.ones(u.size)] @ cam.R
        t = -cam.C[2] / np.where(d[:, 2] < -1e-6, d[:, 2], np.nan)
        xy = cam.C[:2] + t[:, None] * d[:, :2]
        ok = (xy[:, 0] >= 0) & (xy[:, 0] <= self.k.floor_w) & (xy[:, 1] >= 0) & (xy[:, 1] <= self.k.floor_h)
        return float(np.median(np.linalg.norm(apply_h(self.H[cam.id], np.c_[u.ravel(), v.ravel()][ok]) - xy[ok], axis=1)))

    def coverage(self, step=0.5, show=False):
        """Share of the floor seen by 0, 1, 2+ cameras (a lone 1.7 m person)."""
        xs = np.arange(step / 2, self.k.floor_w, step)
        ys = np.arange(step / 2, self.k.floor_h, step)
        saved = self.people
        self.people = [Person(1, 0.22, 1.7, *(np.zeros(3),) * 4)]
        cnt = np.array([[sum(bool(self.render(c, [(1, x, y)]).get(1, {}).get("detectable"))
                             for c in self.cameras) for x in xs] for y in ys])
        self.people = saved
        if show:
            for row in cnt[::-1]:
                print("".join(".123456789"[v] for v in row))
        return dict(blind=float((cnt == 0).mean()), one=float((cnt == 1).mean()), two_plus=float((cnt >= 2).mean()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--difficulty", default="decent")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30)
    a = ap.parse_args()
    import time
    t0 = time.time()
    s = Scene(difficulty(a.difficulty), a.seed, a.people, a.duration)
    print(f"generated in {time.time() - t0:.1f} s")
    print("stats", s.stats())
    print("coverage", s.coverage(show=True))
    for c in s.cameras:
        print(c.id, "start", round(s.start[c.id], 2), "s, clock offset", round(s.offset[c.id] * 1000), "ms, "
              "calibration error (median m over the floor in view)", round(s.calib_error(c), 3))


if __name__ == "__main__":
    main()
