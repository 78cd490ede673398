//! What a cycle publishes: every identity within `max_gap_seconds` with its
//! state (observed, coasting while predicted in a camera's view, lost,
//! static, duplicate).

use std::collections::{BTreeMap, BTreeSet};

use nvr_subjects::{SpatialState, SpatialTrack, TrackSource};

use super::grid::{dist, Grid};
use super::{
    CamView, Global, SpatialTracker, DUPLICATE_HOLD, OCCLUDER_M, SEEN_NOW_NS, STATIC_IMG_DISP,
    STATIC_MIN_FRAMES, STATIC_MIN_OBS, STATIC_SPOT_TTL_NS, VIEW_MARGIN,
};

impl SpatialTracker {
    /// What a cycle publishes: every identity seen within `max_gap_seconds`
    /// with its state. `observed`: seen within the last matching interval;
    /// `coasting`: unseen but predicted in a camera's view (see
    /// [`Self::coasting_tracks`]), at the predicted position; `lost`: kept
    /// for re-identification, at its last position.
    pub(super) fn published_tracks(&self, ts_ns: u64) -> Vec<SpatialTrack> {
        self.published_with_duplicates(ts_ns).0
    }

    /// [`Self::published_tracks`] and the `duplicate` pairs it marked
    /// (duplicate id to the older id it duplicates).
    pub(super) fn published_with_duplicates(
        &self,
        ts_ns: u64,
    ) -> (Vec<SpatialTrack>, BTreeMap<u64, u64>) {
        let interval = self.cycle_ns();
        let coasting = self.coasting_positions(ts_ns, self.params.max_coast_seconds, interval);
        let mut out = self.tracks_at(ts_ns);
        for t in &mut out {
            if t.last_seen_ns + interval > ts_ns {
                if let Some(g) = self.globals.get(&t.global_id) {
                    if self.is_static(g, ts_ns) {
                        t.state = SpatialState::Static;
                    } else {
                        // Where it is at the cycle's time: the latest
                        // observation can be most of a cycle old.
                        let dt = (ts_ns.saturating_sub(g.pos_ts) as f64 / 1e9).min(0.5);
                        let p = g.carry(g.pos, dt);
                        t.x_m = p[0] as f32;
                        t.y_m = p[1] as f32;
                    }
                }
                continue;
            }
            // A fixed false detection that flickers stays what it is, for
            // as long as a person missed there would coast: its detector
            // misses are no person walking on.
            if let Some(g) = self.globals.get(&t.global_id) {
                let recent = t.last_seen_ns + 2 * interval > ts_ns;
                if (recent || coasting.contains_key(&t.global_id)) && self.is_static(g, ts_ns) {
                    t.state = SpatialState::Static;
                    continue;
                }
            }
            match coasting.get(&t.global_id) {
                Some(p) => {
                    t.state = SpatialState::Coasting;
                    t.x_m = p[0] as f32;
                    t.y_m = p[1] as f32;
                }
                None => t.state = SpatialState::Lost,
            }
        }
        let dups = self.mark_duplicates(&mut out);
        (out, dups)
    }

    /// Marks `duplicate` each identity on the floor (observed or coasting)
    /// within `merge_m` of an identity on the floor with a smaller id, same
    /// floor and label, no camera in common: the pairs `merge_coinciding`
    /// merges if they stay together. Cameras that have learned they agree
    /// more closely use their narrower radius ([`Self::merge_radius`]). A
    /// pair marked in the previous cycle stays marked up to
    /// [`DUPLICATE_HOLD`] times that radius apart.
    /// Appearance is not consulted: two cameras often see one person quite
    /// differently, and the marking only decides what is counted on the
    /// floor while the merge waits. One person seen by two cameras whose
    /// tracks have not been linked yet is then one person on the floor, not
    /// two. Returns the marked pairs (duplicate id to the older id).
    fn mark_duplicates(&self, out: &mut [SpatialTrack]) -> BTreeMap<u64, u64> {
        let mut marked = BTreeMap::new();
        let radius = self.params.merge_m;
        if radius <= 0.0 {
            return marked;
        }
        let hold = radius * DUPLICATE_HOLD;
        let on_floor =
            |t: &SpatialTrack| matches!(t.state, SpatialState::Observed | SpatialState::Coasting);
        let items: Vec<(usize, [f64; 2], u64)> = out
            .iter()
            .enumerate()
            .filter(|(_, t)| on_floor(t))
            .filter_map(|(i, t)| {
                let g = self.globals.get(&t.global_id)?;
                Some((g.floor_idx, [t.x_m as f64, t.y_m as f64], i as u64))
            })
            .collect();
        if items.len() < 2 {
            return marked;
        }
        let grid = Grid::build(hold, items.iter().copied());
        let mut cand = Vec::new();
        for &(floor, p, i) in &items {
            let i = i as usize;
            let id = out[i].global_id;
            let Some(gi) = self.globals.get(&id) else {
                continue;
            };
            let held = self.duplicates.get(&id).copied();
            grid.query_near_any_order(floor, p, hold, &mut cand);
            // The nearest older identity it may duplicate (the one of the
            // previous cycle within the hold radius), ties by id.
            let older = cand
                .iter()
                .map(|j| *j as usize)
                .filter(|j| out[*j].global_id < id)
                .filter_map(|j| {
                    let q = [out[j].x_m as f64, out[j].y_m as f64];
                    let d = dist(p, q);
                    (d <= hold).then_some((d, out[j].global_id))
                })
                .filter(|(d, jd)| {
                    self.globals.get(jd).is_some_and(|gj| {
                        if !self.mergeable(gj, gi, false) {
                            return false;
                        }
                        let r = self.merge_radius(gj, gi);
                        let reach = if held == Some(*jd) {
                            r * DUPLICATE_HOLD
                        } else {
                            r
                        };
                        *d <= reach
                    })
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            if let Some((_, jd)) = older {
                marked.insert(id, jd);
            }
        }
        for t in out.iter_mut() {
            if let Some(mut of) = marked.get(&t.global_id).copied() {
                // A duplicate of a duplicate stands for the same person as
                // the older one (ids strictly decrease along the chain).
                while let Some(o) = marked.get(&of) {
                    of = *o;
                }
                t.state = SpatialState::Duplicate;
                t.duplicate_of = Some(of);
            }
        }
        marked
    }

    pub(super) fn tracks_at(&self, ts_ns: u64) -> Vec<SpatialTrack> {
        let gap_ns = (self.params.max_gap_seconds.max(0.0) * 1e9) as u64;
        self.globals
            .iter()
            .filter(|(_, g)| ts_ns.saturating_sub(g.last_seen) <= gap_ns)
            .map(|(id, g)| {
                let unseen_s = ts_ns.saturating_sub(g.last_seen) as f64 / 1e9;
                SpatialTrack {
                    global_id: *id,
                    floor: self.floors[g.floor_idx].clone(),
                    x_m: g.pos[0] as f32,
                    y_m: g.pos[1] as f32,
                    vx: g.vel[0] as f32,
                    vy: g.vel[1] as f32,
                    label: g.label.clone(),
                    confidence: (g.score as f64 * (-unseen_s / 5.0).exp()).clamp(0.0, 1.0) as f32,
                    sources: g
                        .sources
                        .iter()
                        .map(|k| TrackSource {
                            camera: self.cams[k.0].geom.id.clone(),
                            track_id: k.1,
                        })
                        .collect(),
                    last_seen_ns: g.last_seen,
                    state: SpatialState::Observed,
                    duplicate_of: None,
                }
            })
            .collect()
    }

    /// Whether identity `g` looks like a fixed false detection: within
    /// `static_m` of where it appeared for at least `static_after_s`, seen
    /// by one camera only although another camera looks at that place (a
    /// person standing there would be seen by both; one standing where a
    /// single camera looks stays a person).
    ///
    /// Not moving: within `static_m` on the floor, or, on the image of the
    /// camera it appeared on, within [`STATIC_IMG_DISP`] box heights (far
    /// from a camera the floor position of a fixed box jitters by metres)
    /// when that camera is the one that sees it. Seen by: cameras
    /// with at least [`STATIC_MIN_OBS`] observations of it. A camera
    /// [sure of it](Self::sure_of) sees a person standing still, not a
    /// false detection.
    fn is_static(&self, g: &Global, ts_ns: u64) -> bool {
        let after = self.params.static_after_s;
        if after <= 0.0
            || ((ts_ns.saturating_sub(g.born_ts) as f64 / 1e9) < after && !self.at_static_spot(g))
        {
            return false;
        }
        let floor_still = g.max_disp <= self.params.static_m;
        if !floor_still && g.img_disp > STATIC_IMG_DISP {
            return false;
        }
        let mut seen = g.views.iter().filter(|v| v.obs >= STATIC_MIN_OBS);
        let only = seen.next();
        if seen.next().is_some() || only.is_some_and(|v| self.sure_of(g, v)) {
            return false;
        }
        // The image test holds only on the camera that measured it: an
        // identity another camera has followed since may have walked
        // anywhere in that camera's view.
        if !floor_still && only.is_some_and(|v| v.cam != g.img_origin.0) {
            return false;
        }
        let seen_by: BTreeSet<usize> = only.map(|v| v.cam).into_iter().collect();
        self.in_view_except(g.floor_idx, g.pos, &seen_by)
    }

    /// Whether camera view `v` of identity `g` is sure it sees a person:
    /// its detections average `static_max_score` or more, or one of its
    /// camera tracks has had a detection in `static_max_detected` of its
    /// frames (over [`STATIC_MIN_FRAMES`] or more).
    fn sure_of(&self, g: &Global, v: &CamView) -> bool {
        if v.score_sum / f64::from(v.obs) >= self.params.static_max_score {
            return true;
        }
        g.sources
            .iter()
            .filter(|k| k.0 == v.cam)
            .filter_map(|k| self.sources.get(k))
            .any(|s| {
                s.frames >= STATIC_MIN_FRAMES
                    && f64::from(s.detected_frames)
                        >= self.params.static_max_detected * f64::from(s.frames)
            })
    }

    /// Whether `g` appeared where an identity was `static` before (same
    /// camera, within [`STATIC_IMG_DISP`] box heights).
    fn at_static_spot(&self, g: &Global) -> bool {
        let (cam, foot, _) = g.img_origin;
        self.static_spots
            .iter()
            .any(|(c, p, h, _)| *c == cam && dist(*p, foot) / h <= STATIC_IMG_DISP)
    }

    /// Keeps the places of this cycle's `static` identities; forgets those
    /// unused for [`STATIC_SPOT_TTL_NS`].
    pub(super) fn remember_static_spots(&mut self, tracks: &[SpatialTrack], ts_ns: u64) {
        for t in tracks.iter().filter(|t| t.state == SpatialState::Static) {
            let Some(g) = self.globals.get(&t.global_id) else {
                continue;
            };
            let (cam, foot, h) = g.img_origin;
            match self
                .static_spots
                .iter_mut()
                .find(|(c, p, sh, _)| *c == cam && dist(*p, foot) / sh <= STATIC_IMG_DISP)
            {
                Some(s) => s.3 = ts_ns,
                None => self.static_spots.push((cam, foot, h, ts_ns)),
            }
        }
        self.static_spots
            .retain(|s| ts_ns.saturating_sub(s.3) <= STATIC_SPOT_TTL_NS);
    }

    /// Whether floor point `p` of floor `floor_idx` lies inside the image of
    /// one of the shard's cameras (away from the border).
    pub(super) fn in_view(&self, floor_idx: usize, p: [f64; 2]) -> bool {
        self.in_view_except(floor_idx, p, &BTreeSet::new())
    }

    /// Whether floor point `p` lies inside the image of a camera of floor
    /// `floor_idx` other than those in `except`.
    fn in_view_except(&self, floor_idx: usize, p: [f64; 2], except: &BTreeSet<usize>) -> bool {
        self.cams.iter().enumerate().any(|(ci, c)| {
            let Some((w, h)) = c.size else {
                return false;
            };
            if c.floor_idx != floor_idx || except.contains(&ci) {
                return false;
            }
            let (w, h) = (w as f64, h as f64);
            c.geom.homography.to_image(p[0], p[1]).is_some_and(|q| {
                q[0] >= VIEW_MARGIN * w
                    && q[0] <= (1.0 - VIEW_MARGIN) * w
                    && q[1] >= VIEW_MARGIN * h
                    && q[1] <= (1.0 - VIEW_MARGIN) * h
            })
        })
    }

    /// Identities not observed at `ts_ns` whose predicted position is still
    /// inside a camera's view: a person missed by the detector or occluded
    /// rather than gone. An identity with another observed identity within
    /// `OCCLUDER_M` (a likely occluder) coasts up to `max_coast_s` seconds,
    /// others up to a third of it, but at least two and a half frame
    /// windows of the camera that saw it last (a missed frame: one cycle at
    /// the cycle's rate, the camera's frame interval where it is slower,
    /// which lengthens `max_coast_s` by as much); one
    /// carried along by the companion it vanished next to (see
    /// `follow_companions`) as long as that one is observed, up to
    /// `companion_max_s`. Positions are extrapolated along
    /// the identity's velocity; `last_seen_ns` stays the last observation.
    /// Sorted by `global_id`.
    pub fn coasting_tracks(&self, ts_ns: u64, max_coast_s: f64) -> Vec<SpatialTrack> {
        let pos = self.coasting_positions(ts_ns, max_coast_s, 1);
        let mut out = self.tracks_at(ts_ns);
        out.retain_mut(|t| match pos.get(&t.global_id) {
            Some(p) => {
                t.x_m = p[0] as f32;
                t.y_m = p[1] as f32;
                t.state = SpatialState::Coasting;
                true
            }
            None => false,
        });
        out
    }

    /// The predicted positions of the identities [`Self::coasting_tracks`]
    /// reports, by `global_id`, among those unseen for at least `unseen_ns`
    /// (only these are examined, so an all-observed floor costs nothing).
    pub(super) fn coasting_positions(
        &self,
        ts_ns: u64,
        max_coast_s: f64,
        unseen_ns: u64,
    ) -> BTreeMap<u64, [f64; 2]> {
        let max_ns = (max_coast_s.max(0.0) * 1e9) as u64;
        let cycle_ns = self.cycle_ns();
        // Per identity, from the frame window `w` of the camera that saw
        // it last (one matching cycle at the default rates): the longest
        // coast, `max_coast_s` plus what a frame slower than the cycle adds
        // to two and a half windows; the shorter one, at least one missed
        // frame plus the camera's clock jitter (two and a half windows);
        // and how recently an identity counts as seen now.
        let limits = |g: &Global| {
            let w = self.frame_window_ns(g.last_camera);
            let slower = w.saturating_sub(cycle_ns);
            let max = if max_ns == 0 {
                0
            } else {
                max_ns + slower * 5 / 2
            };
            let short = (max_ns / 3).max(w * 5 / 2).min(max);
            (max, short, SEEN_NOW_NS + slower)
        };
        let seen_now = |g: &Global| g.last_seen >= ts_ns.saturating_sub(limits(g).2);
        // Carried along by a companion observed now.
        let carried = |g: &Global| {
            g.companion
                .is_some_and(|(c, _)| self.globals.get(&c).is_some_and(seen_now))
        };
        let ids: BTreeSet<u64> = self
            .globals
            .iter()
            .filter(|(_, g)| {
                g.last_seen + unseen_ns.max(1) <= ts_ns
                    && (ts_ns - g.last_seen <= limits(g).0 || carried(g))
            })
            .map(|(id, _)| *id)
            .collect();
        let mut out = BTreeMap::new();
        if ids.is_empty() {
            return out;
        }
        let seen: Vec<(usize, [f64; 2])> = self
            .globals
            .values()
            .filter(|g| seen_now(g))
            .map(|g| (g.floor_idx, g.pos))
            .collect();
        for id in ids {
            let Some(g) = self.globals.get(&id) else {
                continue;
            };
            let p = g.predicted_at(ts_ns);
            if ts_ns - g.last_seen > limits(g).1
                && !carried(g)
                && !seen
                    .iter()
                    .any(|(f, q)| *f == g.floor_idx && dist(*q, p) <= OCCLUDER_M)
            {
                continue;
            }
            if self.in_view(g.floor_idx, p) {
                out.insert(id, p);
            }
        }
        out
    }
}
