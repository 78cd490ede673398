//! Cross-view consensus: two cameras that see one person put their camera
//! tracks at the same floor point, up to calibration and foot-point error.
//! When two camera tracks of different cameras coincide unambiguously for
//! `merge_cycles` cycles but are bound to different identities, and only
//! one of them can join the other's identity without that identity being
//! seen twice by one camera, it is moved there (where both can, the two
//! identities are merged). When the other camera sees the moving track's
//! identity elsewhere in the same cycle, the move is made at once: two
//! cameras then agree on where each identity is. This repairs a camera
//! tracker that moved a track onto another person (the other camera still
//! sees both apart) and a camera track that joined the wrong one of two
//! people walking together; geometry agreed by two views decides, not
//! appearance. Two such pairs whose tracks are bound crosswise (one
//! camera's tracker swapped two people passing each other) are swapped
//! back at once. A camera slower than the matching cycle seldom sends its
//! frame in the same cycle as another camera: its latest view within its
//! frame interval takes part, carried along its identity's velocity to the
//! cycle's time.

use std::collections::BTreeMap;

use nvr_subjects::Event;

use super::grid::{dist, Grid};
use super::{Global, SourceKey, SpatialTracker};

/// A coinciding pair's nearest rival on either camera must be at least this
/// many times farther than the pair's own distance ...
const PAIR_RATIO: f64 = 2.0;
/// ... plus this fraction of `pair_m`. On real footage one camera track
/// jumping onto a person 0.3 m from the one it followed lands about 0.1 m
/// from the other view of that person and 0.25 m from its old identity's
/// other view: half of `pair_m` here would leave it bound to the wrong
/// identity, both people under one id, until `merge_cycles` ran out.
const PAIR_MARGIN: f64 = 0.25;

/// A coinciding pair moves a camera track after this many cycles, instead
/// of `merge_cycles`, when the other camera sees that track's identity
/// elsewhere in the same cycle.
const FAST_CYCLES: u32 = 1;

/// A lost camera track of an identity farther than this many `pair_m`
/// from a coinciding pair still holds its camera (the person it followed is
/// elsewhere); nearer, it was the pair's person's previous track.
const HELD_LOST_M: f64 = 3.0;

/// A fresh observation of a bound camera track.
struct Obs {
    key: SourceKey,
    floor: usize,
    pos: [f64; 2],
    gid: u64,
    /// Taken in this cycle (not a slow camera's earlier view).
    fresh: bool,
}

impl SpatialTracker {
    /// Whether identity `g` has a camera track on camera `cam` other than
    /// one at `p`: an observed one, or one the camera lost (for a moment,
    /// a missed detection) last seen away from `p`. A track lost right
    /// there is the same person's previous track on that camera.
    fn holds_camera(&self, g: &Global, cam: usize, p: [f64; 2]) -> bool {
        let away = HELD_LOST_M * self.params.pair_m;
        self.any_source_on(g, cam, |s| {
            s.observed || s.pos.is_none_or(|q| dist(q, p) > away)
        })
    }

    /// Whether identity `g` has a camera track on camera `cam` observed in
    /// this cycle (for a camera slower than the cycle: within its frame
    /// window).
    fn sees_now(&self, g: &Global, cam: usize, ts_ns: u64) -> bool {
        self.any_source_on(g, cam, |s| {
            s.observed && (s.fresh || self.slow_view_current(cam, s.obs_ts, ts_ns))
        })
    }

    /// Moves camera tracks that coincide with another camera's track to
    /// that track's identity (see the module doc). Runs after association,
    /// while this cycle's observations are still marked fresh.
    pub(super) fn reconcile_views(&mut self, ts_ns: u64, events: &mut Vec<Event>) {
        let pair_m = self.params.pair_m;
        if pair_m <= 0.0 || self.cams.len() < 2 {
            self.pair_counts.clear();
            return;
        }
        self.pair_counts = self.coinciding_pairs(pair_m, ts_ns);
        let full = self.params.merge_cycles.max(1);
        let ready: Vec<((SourceKey, SourceKey), bool)> = self
            .pair_counts
            .iter()
            .filter(|(_, c)| **c >= full.min(FAST_CYCLES))
            .map(|(p, c)| (*p, *c >= full))
            .collect();
        for ((a, b), settled) in ready {
            self.resolve_pair(a, b, settled, ts_ns, events);
        }
    }

    /// The pairs of this cycle's observed camera tracks of two cameras,
    /// bound to two identities, that coincide within `pair_m` and are each
    /// other's nearest on the other's camera with no close rival, each with
    /// the number of consecutive cycles it has held (lower key first).
    /// With a camera slower than the cycle, its views within its frame
    /// window take part too (two cameras seldom send their frames of one
    /// person in the same cycle), every view carried along its identity's
    /// velocity to this cycle's time; a pair of two such earlier views
    /// keeps its count.
    fn coinciding_pairs(&self, pair_m: f64, ts_ns: u64) -> BTreeMap<(SourceKey, SourceKey), u32> {
        let slow = self.has_slow_camera();
        let obs: Vec<Obs> = self
            .sources
            .iter()
            .filter(|(k, s)| {
                s.observed && (s.fresh || (slow && self.slow_view_current(k.0, s.obs_ts, ts_ns)))
            })
            .filter_map(|(k, s)| {
                let gid = s.bound.filter(|g| self.globals.contains_key(g))?;
                let mut pos = s.pos?;
                if slow {
                    let g = self.globals.get(&gid)?;
                    let dt = ts_ns.saturating_sub(s.obs_ts) as f64 / 1e9;
                    pos = g.carry(pos, dt);
                }
                Some(Obs {
                    key: *k,
                    floor: self.cams[k.0].floor_idx,
                    pos,
                    gid,
                    fresh: s.fresh,
                })
            })
            .collect();
        let rival_r = PAIR_RATIO * pair_m + PAIR_MARGIN * pair_m;
        let grid = Grid::build(
            rival_r.max(0.5),
            obs.iter()
                .enumerate()
                .map(|(i, o)| (o.floor, o.pos, i as u64)),
        );
        let mut cand = Vec::new();
        // Per observation and other camera: nearest observation there and
        // the distance of the second nearest.
        let nearest = |i: usize, cam: usize, cand: &mut Vec<u64>| -> Option<(usize, f64, f64)> {
            let o = &obs[i];
            grid.query_near(o.floor, o.pos, rival_r, cand);
            let mut best: Option<(usize, f64)> = None;
            let mut second = f64::INFINITY;
            for j in cand.iter().map(|j| *j as usize) {
                if obs[j].key.0 != cam {
                    continue;
                }
                let d = dist(o.pos, obs[j].pos);
                match best {
                    Some((_, bd)) if d >= bd => second = second.min(d),
                    _ => {
                        if let Some((_, bd)) = best {
                            second = second.min(bd);
                        }
                        best = Some((j, d));
                    }
                }
            }
            best.map(|(j, d)| (j, d, second))
        };
        let unambiguous = |d: f64, second: f64| second >= PAIR_RATIO * d + PAIR_MARGIN * pair_m;
        let mut now: BTreeMap<(SourceKey, SourceKey), u32> = BTreeMap::new();
        for (i, o) in obs.iter().enumerate() {
            grid.query_near_any_order(o.floor, o.pos, pair_m, &mut cand);
            // Only cameras with a track near it bound elsewhere: where every
            // nearby track agrees on the identity there is nothing to do
            // (the common case, kept cheap).
            let cams: Vec<usize> = {
                let mut c: Vec<usize> = cand
                    .iter()
                    .map(|j| &obs[*j as usize])
                    .filter(|n| n.key.0 != o.key.0 && n.gid != o.gid)
                    .map(|n| n.key.0)
                    .collect();
                c.sort_unstable();
                c.dedup();
                c
            };
            for cam in cams {
                let Some((j, d, second)) = nearest(i, cam, &mut cand) else {
                    continue;
                };
                // Each pair once, from its lower key; same identity: agreed.
                if obs[j].key < o.key || obs[j].gid == o.gid || d > pair_m {
                    continue;
                }
                let Some((back, _, second_back)) = nearest(j, o.key.0, &mut cand) else {
                    continue;
                };
                if back != i || !unambiguous(d, second) || !unambiguous(d, second_back) {
                    continue;
                }
                let pair = (o.key, obs[j].key);
                let before = self.pair_counts.get(&pair).copied().unwrap_or(0);
                if o.fresh || obs[j].fresh {
                    now.insert(pair, before + 1);
                } else if before > 0 {
                    now.insert(pair, before);
                }
            }
        }
        now
    }

    /// Acts on the coinciding camera tracks `a` and `b` (see
    /// [`Self::coinciding_pairs`]); `settled`: the pair has held for
    /// `merge_cycles`. Moves one of them to the other's identity, swaps
    /// them, or merges the two identities.
    fn resolve_pair(
        &mut self,
        a: SourceKey,
        b: SourceKey,
        settled: bool,
        ts_ns: u64,
        events: &mut Vec<Event>,
    ) {
        let ga = self.sources.get(&a).and_then(|s| s.bound);
        let gb = self.sources.get(&b).and_then(|s| s.bound);
        let (Some(ga), Some(gb)) = (ga, gb) else {
            return;
        };
        if ga == gb {
            return;
        }
        let (Some(a_g), Some(b_g)) = (self.globals.get(&ga), self.globals.get(&gb)) else {
            return;
        };
        // Whether each identity already sees the other camera elsewhere.
        let (Some(pa), Some(pb)) = (
            self.sources.get(&a).and_then(|s| s.pos),
            self.sources.get(&b).and_then(|s| s.pos),
        ) else {
            return;
        };
        let a_has_b_cam = self.holds_camera(a_g, b.0, pb);
        let b_has_a_cam = self.holds_camera(b_g, a.0, pa);
        let (moved, from, to) = match (a_has_b_cam, b_has_a_cam) {
            // `ga` sees camera b elsewhere, `gb` is free on camera a.
            (true, false) => (a, ga, gb),
            (false, true) => (b, gb, ga),
            (false, false) => {
                // Both free: one person, two identities. The older
                // one stays, unless a third camera sees both. Only
                // once the pair has held for `merge_cycles`.
                let cams_a = self.live_cameras(a_g);
                if settled && self.live_cameras(b_g).iter().all(|c| !cams_a.contains(c)) {
                    self.pair_counts.remove(&(a, b));
                    self.merge_into(ga.min(gb), ga.max(gb), ts_ns, events);
                }
                return;
            }
            // Both taken: a lost track of the target's (the person it
            // followed is elsewhere, or gone) is superseded, as on a
            // bind; two observed ones are a swap when they coincide
            // too, else there is no move.
            (true, true) if !self.has_live_source_on(b_g, a.0) => (a, ga, gb),
            (true, true) if !self.has_live_source_on(a_g, b.0) => (b, gb, ga),
            (true, true) => {
                self.swap_views((a, ga), (b, gb), ts_ns, events);
                return;
            }
        };
        // Before `merge_cycles`, only a move that the other camera
        // confirms: it sees the moving track's identity this cycle
        // somewhere else (two cameras agree on where each identity is).
        let other_cam = if moved == a { b.0 } else { a.0 };
        if !settled
            && !self
                .globals
                .get(&from)
                .is_some_and(|g| self.sees_now(g, other_cam, ts_ns))
        {
            return;
        }
        self.pair_counts.remove(&(a, b));
        self.move_source(moved, from, to, ts_ns, events);
    }

    /// Moves camera track `k` from identity `from` to identity `to`.
    fn move_source(
        &mut self,
        k: SourceKey,
        from: u64,
        to: u64,
        ts_ns: u64,
        events: &mut Vec<Event>,
    ) {
        if let Some(g) = self.globals.get_mut(&from) {
            g.sources.remove(&k);
            g.revoke_handoff();
        }
        if let Some(s) = self.sources.get_mut(&k) {
            s.prev_bound = Some(from);
        }
        self.bind(k, to, ts_ns, events);
        self.stats.rebound_sources += 1;
    }

    /// Camera tracks `a` and `b` (cameras A and B) coincide but are bound to
    /// identities `ga` and `gb` that each see the other camera now: `ga`
    /// at `a2` on B, `gb` at `b2` on A. When `a2` and `b2` coincide too,
    /// one camera's tracker swapped two people: each pair is one person
    /// (when that pairing fits clearly better than the bindings).
    /// Which identity takes which pair follows the identities' motion: the
    /// assignment that puts both pairs nearer where each identity was
    /// heading wins. Made at once (two views agree, and every cycle it
    /// waits, both identities are published on two people) unless a moved
    /// track looks less like its new identity than `unbind_similarity`.
    fn swap_views(
        &mut self,
        (a, ga): (SourceKey, u64),
        (b, gb): (SourceKey, u64),
        ts_ns: u64,
        events: &mut Vec<Event>,
    ) {
        let (Some(a_g), Some(b_g)) = (self.globals.get(&ga), self.globals.get(&gb)) else {
            return;
        };
        let fresh_on = |g: &Global, cam: usize| -> Option<SourceKey> {
            let mut it = g.sources.range((cam, 0)..=(cam, u64::MAX)).filter(|k| {
                self.sources
                    .get(k)
                    .is_some_and(|s| s.observed && s.fresh && s.pos.is_some())
            });
            let one = it.next().copied();
            // Two observed tracks of one identity on one camera: unclear.
            if it.next().is_some() {
                return None;
            }
            one
        };
        let (Some(a2), Some(b2)) = (fresh_on(a_g, b.0), fresh_on(b_g, a.0)) else {
            return;
        };
        let pos = |k: &SourceKey| self.sources.get(k).and_then(|s| s.pos);
        let (Some(pa), Some(pb), Some(pa2), Some(pb2)) = (pos(&a), pos(&b), pos(&a2), pos(&b2))
        else {
            return;
        };
        // The other two coincide as well, and pairing the four this way
        // fits clearly better than the bindings do (a with a2, b with b2).
        let pair_m = self.params.pair_m;
        let paired = dist(pa, pb) + dist(pa2, pb2);
        let bound = dist(pa, pa2) + dist(pb, pb2);
        if dist(pa2, pb2) > pair_m || bound < PAIR_RATIO * paired + PAIR_MARGIN * pair_m {
            return;
        }
        let pair2 = if b2 < a2 { (b2, a2) } else { (a2, b2) };
        let keys = [a, b, a2, b2];
        let to_a = self.prediction_misses(&ga, &keys);
        let to_b = self.prediction_misses(&gb, &keys);
        // Pair (a, b) to `ga` and (a2, b2) to `gb`: camera B swapped, so
        // b and a2 exchange identities; the other way camera A swapped.
        let b_swapped = to_a[0] + to_a[1] + to_b[2] + to_b[3];
        let a_swapped = to_b[0] + to_b[1] + to_a[2] + to_a[3];
        let ((x, gx), (y, gy)) = if b_swapped <= a_swapped {
            ((b, gb), (a2, ga))
        } else {
            ((a, ga), (b2, gb))
        };
        // Appearance must not object: a camera track that still looks like
        // the person it followed (a tracker that smooths its appearance
        // drifts to the new person over several frames) is left to the
        // appearance check, which unbinds it once it no longer fits.
        if self.params.reid_enabled {
            for (k, g) in [(x, gy), (y, gx)] {
                let (Some(s), Some(glob)) = (self.sources.get(&k), self.globals.get(&g)) else {
                    return;
                };
                let fit = self.similarity(glob, k.0, s.emb.as_deref());
                if fit.is_some_and(|(c, _)| c < self.params.unbind_similarity) {
                    return;
                }
            }
        }
        self.pair_counts.remove(&(a, b));
        self.pair_counts.remove(&pair2);
        // Binding `x` to `gy` releases `y` there (one track per camera).
        self.move_source(x, gx, gy, ts_ns, events);
        self.move_source(y, gy, gx, ts_ns, events);
    }
}
