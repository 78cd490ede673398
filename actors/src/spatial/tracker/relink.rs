//! Late re-identification. A camera track that no lost identity matched
//! when it started gets a new identity; its first sight is often the worst
//! one (a box cut by the image border, a foot point behind someone nearer,
//! one frame's appearance). While that identity is young, its appearance
//! as each of its cameras has seen it over several cycles is compared
//! with the identities lost before it was born that could have got to where it
//! appeared along the way they were walking. One that clearly matches,
//! and alone does, takes it over (the person keeps the id they had, and
//! the young id ends), provided the appearance model tells that identity
//! apart from everyone else the camera has seen: the young one must look
//! more like it than any other identity does. Each camera's view is
//! judged on its own (another camera may see all of the person while the
//! last one to join sees only their legs), and two views that point at
//! two identities relink nothing. A colour descriptor that
//! finds every person alike (real footage) thus relinks nothing, rather
//! than giving a newcomer the id of someone who left.
//!
//! The lost identities considered are all those still held: unseen for
//! longer than `max_gap_seconds` (past which no camera track joins an
//! identity when it starts, and the identity is no longer published) but
//! not yet forgotten (`track_ttl_seconds`). A person away for longer than
//! the handoff window thus keeps their id when they come back and their
//! looks clearly say who they are; without it, every such absence would
//! leave them a new id for the rest of the run.

use nvr_subjects::{event_kind, Event};

use super::appearance::cosine;
use super::grid::dist;
use super::{CamView, Global, SpatialTracker};

/// Observations of the young identity by its camera before its appearance
/// is trusted for a late re-identification.
const RELINK_MIN_OBS: u32 = 3;
/// The best candidate must clear the similarity it needs by this much more
/// than the next one does, and the young identity must look this much
/// more like it than the most alike other identity does.
const RELINK_MARGIN: f64 = 0.05;
/// How fast a hidden person may stray from the way they were walking
/// (turning, stepping aside), metres per second of the gap: half a brisk
/// walk.
const RELINK_TURN_MPS: f64 = 0.75;

/// Distance from point `q` to the segment from `a` to `b`.
fn dist_to_segment(q: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let d = [b[0] - a[0], b[1] - a[1]];
    let len2 = d[0] * d[0] + d[1] * d[1];
    let t = if len2 > 0.0 {
        (((q[0] - a[0]) * d[0] + (q[1] - a[1]) * d[1]) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    dist(q, [a[0] + t * d[0], a[1] + t * d[1]])
}

impl SpatialTracker {
    /// Joins young identities to the lost identity their appearance over
    /// several cycles matches (see the module doc).
    pub(super) fn relink_young(&mut self, ts_ns: u64, events: &mut Vec<Event>) {
        if !self.params.reid_enabled || self.params.relink_window_s <= 0.0 {
            return;
        }
        let window_ns = (self.params.relink_window_s * 1e9) as u64;
        let young: Vec<u64> = self
            .updated
            .iter()
            .copied()
            .filter(|gid| {
                self.globals
                    .get(gid)
                    .is_some_and(|g| g.last_seen.saturating_sub(g.born_ts) <= window_ns)
            })
            .collect();
        if young.is_empty() {
            return;
        }
        // Identities not observed in this cycle: the candidates (a crowd
        // in view has few of them).
        let mut unseen: Vec<u64> = self
            .globals
            .iter()
            .filter(|(id, _)| !self.updated.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for n in young {
            if let Some(o) = self.relink_target(n, &unseen) {
                unseen.retain(|id| *id != o);
                self.take_over(o, n, ts_ns, events);
            }
        }
    }

    /// The lost identity among `unseen` that young identity `n` is, if one
    /// clearly is by one of its cameras' views and no other view points at
    /// another.
    fn relink_target(&self, n: u64, unseen: &[u64]) -> Option<u64> {
        let gn = self.globals.get(&n)?;
        // Identities a camera track of `n` was unbound from: that camera's
        // tracker moved onto someone else, which `n` is.
        let unbound_from: Vec<u64> = gn
            .sources
            .iter()
            .filter_map(|k| self.sources.get(k)?.prev_bound)
            .collect();
        // The lost identities `n` could be, whatever a camera saw of it.
        let candidates: Vec<(u64, &Global)> = unseen
            .iter()
            .filter_map(|oid| Some((*oid, self.globals.get(oid)?)))
            .filter(|(oid, go)| {
                *oid != n
                    && go.last_seen < gn.born_ts
                    && go.floor_idx == gn.floor_idx
                    && go.label == gn.label
                    && !unbound_from.contains(oid)
                    && self.could_have_walked(go, gn)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let mut found = None;
        for v in &gn.views {
            match (self.relink_target_in_view(n, gn, v, &candidates), found) {
                (None, _) => {}
                (Some(o), None) => found = Some(o),
                (Some(o), Some(f)) if o == f => {}
                // Two cameras' views point at two identities.
                (Some(_), Some(_)) => return None,
            }
        }
        found
    }

    /// [`Self::relink_target`] on view `v` of young identity `gn` (`n`),
    /// among its `candidates`.
    fn relink_target_in_view(
        &self,
        n: u64,
        gn: &Global,
        v: &CamView,
        candidates: &[(u64, &Global)],
    ) -> Option<u64> {
        let cam = v.cam;
        let (emb, obs) = v.emb.as_ref()?;
        if *obs < RELINK_MIN_OBS {
            return None;
        }
        // (score, raw similarity, id) of the best candidate.
        let mut best: Option<(f64, f64, u64)> = None;
        let mut second = f64::NEG_INFINITY;
        for &(oid, go) in candidates {
            let Some((c, raw)) = self.relink_similarity(go, gn, cam, emb) else {
                continue;
            };
            match best {
                Some((b, _, _)) if c <= b => second = second.max(c),
                _ => {
                    if let Some((b, _, _)) = best {
                        second = second.max(b);
                    }
                    best = Some((c, raw, oid));
                }
            }
        }
        let (c, raw, oid) = best?;
        if c < 0.0 || c - second < RELINK_MARGIN {
            return None;
        }
        let go = self.globals.get(&oid)?;
        (raw - self.closest_other(go, oid, n, cam) >= RELINK_MARGIN).then_some(oid)
    }

    /// How similar lost identity `go` (`oid`) looks to the most alike other
    /// identity camera `cam` has seen (young identity `n` aside): a young
    /// identity must look more like it than that, or the appearance model
    /// cannot tell these people apart.
    fn closest_other(&self, go: &Global, oid: u64, n: u64, cam: usize) -> f64 {
        // As `similarity` compares: that camera's view where it has one.
        fn own_view(g: &Global, cam: usize) -> Option<&Vec<f32>> {
            g.view(cam).and_then(|v| v.emb.as_ref()).map(|(e, _)| e)
        }
        let (mine, by_camera) = match own_view(go, cam) {
            Some(e) => (e, true),
            None => match &go.emb {
                Some(e) => (e, false),
                None => return f64::NEG_INFINITY,
            },
        };
        self.globals
            .iter()
            .filter(|(id, _)| **id != oid && **id != n)
            .filter_map(|(_, g)| {
                let e = if by_camera {
                    own_view(g, cam)?
                } else {
                    g.emb.as_ref()?
                };
                (e.len() == mine.len()).then(|| cosine(mine, e))
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Similarity of young identity `gn`'s appearance `emb` (as camera `cam`
    /// has seen it) to lost identity `go`, less the least similarity a
    /// handoff to it needs: as at association, that camera's own view of
    /// `go` across a short gap needs `min_handoff_similarity`, anything
    /// else the handoff level (which the impostor level raises). Also the
    /// similarity itself.
    fn relink_similarity(
        &self,
        go: &Global,
        gn: &Global,
        cam: usize,
        emb: &[f32],
    ) -> Option<(f64, f64)> {
        let (c, same_camera) = self.similarity(go, cam, Some(emb))?;
        let gap_ns = gn.born_ts.saturating_sub(go.last_seen);
        let least = if same_camera && gap_ns <= self.params.appearance_free_gap_ms * 1_000_000 {
            self.params.min_handoff_similarity
        } else {
            self.handoff_similarity()
        };
        Some((c - least, c))
    }

    /// Whether the person of lost identity `go` could have walked to where
    /// young identity `gn` appeared: near the way from where they vanished
    /// along their last velocity (at most `max_speed_mps`), stopping
    /// anywhere on it, within `gate_m` plus [`RELINK_TURN_MPS`] times the
    /// gap of it, both capped at `max_handoff_radius_m` (so after a long
    /// absence, within that radius of the way out). Someone hidden
    /// mid-view while walking one way does not come back metres behind
    /// where they vanished seconds later.
    fn could_have_walked(&self, go: &Global, gn: &Global) -> bool {
        let p = &self.params;
        let gap_s = gn.born_ts.saturating_sub(go.last_seen) as f64 / 1e9;
        let speed = go.vel[0].hypot(go.vel[1]);
        let on = (speed.min(p.max_speed_mps) * gap_s).min(p.max_handoff_radius_m);
        let end = if speed > 0.0 {
            [
                go.obs_pos[0] + go.vel[0] / speed * on,
                go.obs_pos[1] + go.vel[1] / speed * on,
            ]
        } else {
            go.obs_pos
        };
        let slack = p.gate_m + (RELINK_TURN_MPS * gap_s).min(p.max_handoff_radius_m);
        dist_to_segment(gn.origin, go.obs_pos, end) <= slack
    }

    /// Lost identity `o` takes over young identity `n`: its camera tracks,
    /// position and motion; `n` ends.
    fn take_over(&mut self, o: u64, n: u64, ts_ns: u64, events: &mut Vec<Event>) {
        let Some(gn) = self.globals.get(&n) else {
            return;
        };
        let (pos, vel, pos_ts, seen_cycle, cam, born_ts) = (
            gn.pos,
            gn.vel,
            gn.pos_ts,
            gn.seen_cycle,
            gn.last_camera,
            gn.born_ts,
        );
        let track_id = gn.sources.iter().find(|k| k.0 == cam).map(|k| k.1);
        let Some(go) = self.globals.get(&o) else {
            return;
        };
        let (from, gap_ns) = (go.last_camera, born_ts.saturating_sub(go.last_seen));
        self.merge_into(o, n, ts_ns, events);
        if let Some(go) = self.globals.get_mut(&o) {
            go.pos = pos;
            go.vel = vel;
            go.pos_ts = pos_ts;
            go.obs_pos = pos;
            go.seen_cycle = seen_cycle;
            go.last_camera = cam;
            go.companion = None;
        }
        self.updated.remove(&n);
        self.updated.insert(o);
        self.stats.relinked += 1;
        if from != cam {
            let mut e = self.new_event(event_kind::HANDOFF, ts_ns, o);
            e.from_camera = Some(self.cams[from].geom.id.clone());
            e.to_camera = Some(self.cams[cam].geom.id.clone());
            e.camera = e.to_camera.clone();
            e.track_id = track_id;
            e.gap_ms = Some(gap_ns / 1_000_000);
            events.push(e);
            self.stats.handoffs_completed += 1;
        }
    }
}
