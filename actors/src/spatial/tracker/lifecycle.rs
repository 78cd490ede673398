//! Identity lifecycle: expiry, fusing fresh observations into the motion
//! and appearance model, unbinding camera tracks that disagree with their
//! identity, group members carried along by a companion, merging
//! identities that coincide, and the cap on their number.

use std::collections::{BTreeMap, BTreeSet};

use nvr_subjects::{event_kind, Event};

use super::appearance::{cosine, learn_appearance};
use super::association::box_foot;
use super::grid::{dist, Grid, TwoGrids};
use super::{
    CamState, Companion, Global, Motion, Source, SourceKey, SpatialTracker, COMPANION_ATTACH_S,
    COMPANION_SPEED_DIFF_MPS, MAX_SPEED_MPS, OCCLUDER_M,
};

/// A camera track of an identity within this fraction of `unbind_m` of
/// the identity's predicted position vouches for it: another one farther
/// than `unbind_m` from there has jumped to someone else.
const JUMP_NEAR: f64 = 0.5;

impl SpatialTracker {
    /// Forgets identities unseen for longer than `track_ttl_seconds`.
    pub(super) fn expire(&mut self, ts_ns: u64, events: &mut Vec<Event>) {
        let ttl_ns = (self.params.track_ttl_seconds.max(0.0) * 1e9) as u64;
        let expired: Vec<u64> = self
            .globals
            .iter()
            .filter(|(_, g)| ts_ns.saturating_sub(g.last_seen) > ttl_ns)
            .map(|(id, _)| *id)
            .collect();
        for gid in expired {
            events.push(self.new_event(event_kind::GLOBAL_ENDED, ts_ns, gid));
            self.remove_global(gid);
            self.stats.expired += 1;
        }
    }

    /// Fresh observations of bound sources update their identity; returns
    /// the sources to associate: unbound ones (confirmed long enough) and
    /// those unbound now for disagreeing with their identity.
    pub(super) fn update_bound(&mut self, ts_ns: u64) -> Vec<SourceKey> {
        // Fresh bound sources by identity: sorted by identity, each
        // identity's sources in key order (the sort is stable).
        let mut fresh: Vec<(u64, SourceKey)> = Vec::new();
        let mut unbound: Vec<SourceKey> = Vec::new();
        for (k, s) in &self.sources {
            if !s.fresh || s.pos.is_none() {
                continue;
            }
            match s.bound {
                Some(gid) if self.globals.contains_key(&gid) => fresh.push((gid, *k)),
                _ => {
                    if s.hits >= self.params.min_hits && s.observed {
                        unbound.push(*k)
                    }
                }
            }
        }
        fresh.sort_by_key(|(gid, _)| *gid);
        // Grid of identity positions before this cycle's updates, for the
        // appearance check of bound sources against nearby identities.
        let mut pre_grid = self.identity_grid(ts_ns);
        let mut cand = Vec::new();
        let (mut keys, mut kept, mut suspect) = (Vec::new(), Vec::new(), Vec::new());
        for group in fresh.chunk_by(|a, b| a.0 == b.0) {
            let gid = group[0].0;
            keys.clear();
            keys.extend(group.iter().map(|(_, k)| *k));
            let (blamed, certain) = self.blamed_sources(&gid, &keys, &mut pre_grid, &mut cand);
            kept.clear();
            suspect.clear();
            for (i, bk) in keys.iter().enumerate() {
                if !blamed.contains(&i) {
                    if let Some(s) = self.sources.get_mut(bk) {
                        s.bad_cycles = 0;
                    }
                    kept.push(*bk);
                    continue;
                }
                let mut drop = false;
                if let Some(s) = self.sources.get_mut(bk) {
                    s.bad_cycles += 1;
                    if certain || s.bad_cycles >= self.params.unbind_cycles {
                        s.bound = None;
                        s.prev_bound = Some(gid);
                        s.bad_cycles = 0;
                        drop = true;
                    }
                }
                if drop {
                    if let Some(g) = self.globals.get_mut(&gid) {
                        g.sources.remove(bk);
                        g.revoke_handoff();
                    }
                    self.stats.unbound_sources += 1;
                    unbound.push(*bk);
                } else {
                    suspect.push(*bk);
                }
            }
            if kept.is_empty() {
                // Only suspect sources: they still say where the identity
                // is (a swap happens between people close together), but
                // not what it looks like.
                self.apply_observations(gid, &suspect, false);
            } else {
                self.apply_observations(gid, &kept, true);
            }
        }
        unbound.sort_unstable();
        unbound
    }

    /// Which of identity `gid`'s fresh sources `keys` (by index) disagree
    /// with it this cycle, and whether that is certain enough to unbind
    /// them now rather than after `unbind_cycles`.
    fn blamed_sources(
        &self,
        gid: &u64,
        keys: &[SourceKey],
        pre_grid: &mut TwoGrids,
        cand: &mut Vec<u64>,
    ) -> (BTreeSet<usize>, bool) {
        // Consistency: a source whose appearance disagrees with its
        // identity (or fits a nearby identity clearly better: the camera
        // tracker swapped two people), or that is far from the
        // identity's other sources, for several cycles is unbound and
        // matched again (at once when it is far from where the identity's
        // motion and another of its sources put it). Until then it does
        // not move the identity.
        let far = keys.len() >= 2 && {
            let pts: Vec<[f64; 2]> = keys
                .iter()
                .filter_map(|k| self.sources.get(k).and_then(|s| s.pos))
                .collect();
            let n = pts.len() as f64;
            let sum = pts
                .iter()
                .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
            pts.iter().any(|p| {
                let others = [(sum[0] - p[0]) / (n - 1.0), (sum[1] - p[1]) / (n - 1.0)];
                dist(*p, others) > self.params.unbind_m
            })
        };
        if far {
            // One camera track where the identity's motion puts it and
            // another well away from there: the person cannot be in both
            // places, and the far one jumped (its camera tracker moved it
            // to someone else). Unbound now, whatever appearance says:
            // every cycle it stays bound, the identity is published on two
            // people.
            let off = self.prediction_misses(gid, keys);
            let near = self.params.unbind_m * JUMP_NEAR;
            if off.iter().any(|d| *d <= near) {
                let jumped: BTreeSet<usize> = off
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| **d > self.params.unbind_m)
                    .map(|(i, _)| i)
                    .collect();
                if !jumped.is_empty() {
                    if let Some(other) = self.appearance_overrules(gid, keys, &jumped) {
                        return (other, true);
                    }
                    return (jumped, true);
                }
            }
        }
        let mut blamed: BTreeSet<usize> = BTreeSet::new();
        if self.params.reid_enabled {
            for (i, k) in keys.iter().enumerate() {
                if self.appearance_suspect(*k, *gid, pre_grid, cand) {
                    blamed.insert(i);
                }
            }
        }
        if blamed.is_empty() && far {
            // Blame the source that fits the identity's appearance
            // least, else the youngest.
            let g_emb = self.globals.get(gid).and_then(|g| g.emb.clone());
            blamed.extend(
                keys.iter()
                    .enumerate()
                    .max_by(|(i, a), (j, b)| {
                        let sa = self.sources.get(a);
                        let sb = self.sources.get(b);
                        let fit = |s: Option<&Source>| -> f64 {
                            match (s.and_then(|s| s.emb.as_ref()), &g_emb) {
                                (Some(e), Some(ge)) if self.params.reid_enabled => -cosine(e, ge),
                                _ => 0.0,
                            }
                        };
                        fit(sa)
                            .total_cmp(&fit(sb))
                            .then(
                                sa.map(|s| s.first_ts)
                                    .unwrap_or(0)
                                    .cmp(&sb.map(|s| s.first_ts).unwrap_or(0)),
                            )
                            .then(i.cmp(j))
                    })
                    .map(|(i, _)| i),
            );
        }
        (blamed, false)
    }

    /// The sources of `keys` to blame instead of `jumped` when appearance
    /// says the motion got it backwards: a camera track that slid onto
    /// someone else over a few cycles drags its identity's position and
    /// velocity along, so the track that stayed with the person looks like
    /// the one that jumped. Each camera's own view of the identity decides:
    /// every `jumped` source fits its camera's view at least
    /// `unbind_similarity` (it does not look like someone else), and every
    /// other one (with a view) fits its own `swap_margin` less than the
    /// worst of them.
    fn appearance_overrules(
        &self,
        gid: &u64,
        keys: &[SourceKey],
        jumped: &BTreeSet<usize>,
    ) -> Option<BTreeSet<usize>> {
        if !self.params.reid_enabled {
            return None;
        }
        let g = self.globals.get(gid)?;
        let fit: Vec<Option<f64>> = keys
            .iter()
            .map(|k| {
                let s = self.sources.get(k)?;
                match self.similarity(g, k.0, s.emb.as_deref())? {
                    (c, true) => Some(c),
                    _ => None,
                }
            })
            .collect();
        let mut worst_jumped = f64::INFINITY;
        for i in jumped {
            worst_jumped = worst_jumped.min(fit[*i]?);
        }
        if worst_jumped < self.params.unbind_similarity {
            return None;
        }
        let others: BTreeSet<usize> = (0..keys.len())
            .filter(|i| !jumped.contains(i) && fit[*i].is_some())
            .collect();
        let clear = others
            .iter()
            .all(|i| fit[*i].is_some_and(|c| c <= worst_jumped - self.params.swap_margin));
        (clear && !others.is_empty()).then_some(others)
    }

    /// How far each of `keys` (fresh sources of identity `gid`) is from
    /// where the identity's motion model puts it at the source's
    /// observation time; infinite for a source without a position.
    pub(super) fn prediction_misses(&self, gid: &u64, keys: &[SourceKey]) -> Vec<f64> {
        let Some(g) = self.globals.get(gid) else {
            return vec![f64::INFINITY; keys.len()];
        };
        keys.iter()
            .map(|k| {
                let Some((p, ts)) = self.sources.get(k).and_then(|s| Some((s.pos?, s.obs_ts)))
                else {
                    return f64::INFINITY;
                };
                dist(p, g.predicted_at(ts))
            })
            .collect()
    }

    /// Fuses the fresh observations `keys` into identity `gid`'s motion model
    /// (camera tracks without a floor position are skipped).
    /// `learn`: the observations also update the identity's appearance.
    pub(super) fn apply_observations(&mut self, gid: u64, keys: &[SourceKey], learn: bool) {
        let cycle_ns = self.cycle_ns();
        // Split borrows: the identity changes, its sources and cameras are read.
        let Self {
            globals,
            sources,
            cams,
            updated,
            stats,
            params,
            agreement,
            offsets,
            ..
        } = self;
        // The observations with a position, in key order, each looked up
        // once: this runs for every observed identity on every cycle.
        let obs: Vec<(SourceKey, &Source, [f64; 2])> = keys
            .iter()
            .filter_map(|k| {
                let s = sources.get(k)?;
                Some((*k, s, s.pos?))
            })
            .collect();
        let mut sum = [0.0, 0.0];
        let mut t_max = 0u64;
        let mut score = 0.0f32;
        let mut cam = None;
        for (k, s, p) in &obs {
            sum[0] += p[0];
            sum[1] += p[1];
            if s.obs_ts >= t_max {
                t_max = s.obs_ts;
                cam = Some(k.0);
            }
            score = score.max(s.score);
        }
        if obs.is_empty() {
            return;
        }
        let n = obs.len() as f64;
        let meas = [sum[0] / n, sum[1] / n];
        let Some(g) = globals.get_mut(&gid) else {
            return;
        };
        updated.insert(gid);
        g.seen_cycle = stats.cycles;
        g.companion = None;
        let min_dt = cycle_ns as f64 / 1e9;
        fuse_motion(
            g,
            meas,
            t_max,
            stats.cycles,
            min_dt,
            params.alpha,
            params.beta,
        );
        g.obs_pos = g.pos;
        g.max_disp = g.max_disp.max(dist(g.pos, g.origin));
        for (k, src, _) in &obs {
            let v = g.view_mut(k.0);
            v.obs += 1;
            v.score_sum += f64::from(src.score);
            if k.0 == g.img_origin.0 {
                let (foot, _) = box_foot(&cams[k.0], src.bbox);
                let d = dist(foot, g.img_origin.1) / g.img_origin.2;
                g.img_disp = g.img_disp.max(d);
            }
        }
        if let Some(c) = cam {
            if !keys.iter().any(|k| k.0 == g.last_camera) {
                g.last_camera = c;
            }
        }
        g.score = score;
        if !learn {
            return;
        }
        let mut pairs = PairLearners {
            agreement,
            offsets,
            learn_offsets: params.learn_offsets,
        };
        // Two cameras' views of this identity in this cycle: how closely
        // that camera pair agrees.
        for (i, (ka, sa, pa)) in obs.iter().enumerate() {
            for (kb, sb, pb) in &obs[i + 1..] {
                if ka.0 != kb.0 {
                    pairs.sample((ka.0, *pa, sa.raw_pos), (kb.0, *pb, sb.raw_pos));
                }
            }
        }
        pair_slow_cameras(g, &obs, keys, sources, cams, cycle_ns, &mut pairs);
        learn_appearance(g, &obs, params.swap_check_similarity);
    }

    /// An identity that stops being observed right next to another one that
    /// moves like it (a group: it is most likely hidden behind it) is carried
    /// along at the same offset while that one is observed, for up to
    /// `companion_max_s`; re-association and coasting then start from where
    /// it most likely is rather than from where it vanished.
    /// `observed` holds the positions of the identities observed in this
    /// cycle (some may have been merged away since).
    pub(super) fn follow_companions(&mut self, ts_ns: u64, observed: &Grid) {
        if self.updated.is_empty() {
            return;
        }
        let attach_ns = (COMPANION_ATTACH_S * 1e9) as u64;
        if self.params.companion_max_s <= 0.0 {
            return;
        }
        let max_ns = (self.params.companion_max_s * 1e9) as u64;
        let mut cand = Vec::new();
        // (identity, its companion from now on, new position/velocity/time).
        let mut moves: Vec<(u64, Companion, Option<Motion>)> = Vec::new();
        let cycle = self.stats.cycles;
        for (gid, g) in &self.globals {
            if g.seen_cycle == cycle {
                continue;
            }
            let unseen = ts_ns.saturating_sub(g.last_seen);
            if unseen > max_ns {
                if g.companion.is_some() {
                    moves.push((*gid, None, None));
                }
                continue;
            }
            match g.companion {
                Some((cid, off)) => match self.globals.get(&cid) {
                    Some(c) if c.seen_cycle == cycle => {
                        let p = [c.pos[0] + off[0], c.pos[1] + off[1]];
                        moves.push((*gid, Some((cid, off)), Some((p, c.vel, c.pos_ts))));
                    }
                    Some(_) => {}
                    None => moves.push((*gid, None, None)),
                },
                None if unseen <= attach_ns => {
                    let here = g.predicted_at(ts_ns);
                    observed.query(g.floor_idx, here, OCCLUDER_M, &mut cand);
                    // Nearest first, ties by id (`cand` is sorted).
                    let best = cand
                        .iter()
                        .filter_map(|id| self.globals.get(id).map(|o| (*id, o)))
                        .filter(|(_, o)| dist(o.vel, g.vel) <= COMPANION_SPEED_DIFF_MPS)
                        .filter(|(_, o)| {
                            !o.sources.iter().any(|k| {
                                self.sources
                                    .get(k)
                                    .is_some_and(|s| s.prev_bound == Some(*gid))
                            })
                        })
                        .map(|(id, o)| (dist(o.pos, here), id, o))
                        .filter(|(d, ..)| *d <= OCCLUDER_M)
                        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    if let Some((_, cid, o)) = best {
                        let off = [here[0] - o.pos[0], here[1] - o.pos[1]];
                        moves.push((*gid, Some((cid, off)), Some((here, o.vel, o.pos_ts))));
                    }
                }
                None => {}
            }
        }
        for (gid, comp, state) in moves {
            if let Some(g) = self.globals.get_mut(&gid) {
                g.companion = comp;
                if let Some((p, v, t)) = state {
                    g.pos = p;
                    g.vel = v;
                    g.pos_ts = t;
                }
            }
        }
    }

    /// `grid` holds the positions of the identities observed in this cycle.
    /// With a camera slower than the cycle, two cameras seldom send their
    /// frames of one person in the same cycle: identities such a camera saw
    /// within its frame window take part too, every position carried along
    /// its identity's velocity to this cycle's time, and a pair counts a
    /// cycle in which either of the two was observed.
    pub(super) fn merge_coinciding(&mut self, ts_ns: u64, grid: &Grid, events: &mut Vec<Event>) {
        let slow_grid;
        let (current, grid): (BTreeMap<u64, [f64; 2]>, &Grid) = if self.has_slow_camera() {
            let (current, g) = self.current_positions(ts_ns);
            slow_grid = g;
            (current, &slow_grid)
        } else {
            let current = self
                .updated
                .iter()
                .filter_map(|id| self.globals.get(id).map(|g| (*id, g.pos)))
                .collect();
            (current, grid)
        };
        let mut cand = Vec::new();
        let mut now: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        for (a, pa) in &current {
            let Some(ga) = self.globals.get(a) else {
                continue;
            };
            // Any order: the pairs are counted in a map.
            grid.query_near_any_order(ga.floor_idx, *pa, self.params.merge_m, &mut cand);
            for b in cand.iter().filter(|b| *b > a) {
                let (Some(gb), Some(pb)) = (self.globals.get(b), current.get(b)) else {
                    continue;
                };
                if !self.updated.contains(a) && !self.updated.contains(b) {
                    continue;
                }
                if dist(*pa, *pb) > self.merge_radius(ga, gb) || !self.mergeable(ga, gb, true) {
                    continue;
                }
                let c = self.merge_counts.get(&(*a, *b)).copied().unwrap_or(0) + 1;
                now.insert((*a, *b), c);
            }
        }
        // A pair not observed together in this cycle (a detector miss on
        // either side, or nothing new from either) keeps its count; one
        // observed apart starts again.
        for (pair, c) in &self.merge_counts {
            let news = self.updated.contains(&pair.0) || self.updated.contains(&pair.1);
            let both_seen = news && current.contains_key(&pair.0) && current.contains_key(&pair.1);
            let exist = self.globals.contains_key(&pair.0) && self.globals.contains_key(&pair.1);
            if exist && !both_seen {
                now.entry(*pair).or_insert(*c);
            }
        }
        self.merge_counts = now;
        let ready: Vec<(u64, u64)> = self
            .merge_counts
            .iter()
            .filter(|(_, c)| **c >= self.params.merge_cycles)
            .map(|(k, _)| *k)
            .collect();
        for (a, b) in ready {
            self.merge_counts.remove(&(a, b));
            self.merge_into(a, b, ts_ns, events);
        }
    }

    /// With a camera slower than the cycle: the identities observed in this
    /// cycle or last seen by a slow camera within its frame window, each at
    /// its position carried to `ts_ns` along its velocity, and a grid of
    /// them.
    fn current_positions(&self, ts_ns: u64) -> (BTreeMap<u64, [f64; 2]>, Grid) {
        let mut current = BTreeMap::new();
        let mut items = Vec::new();
        for (id, g) in &self.globals {
            if !self.updated.contains(id)
                && !self.slow_view_current(g.last_camera, g.last_seen, ts_ns)
            {
                continue;
            }
            let p = g.predicted_at(ts_ns);
            current.insert(*id, p);
            items.push((g.floor_idx, p, *id));
        }
        (current, Grid::build(super::GRID_CELL_M, items))
    }

    /// Whether two identities close on the floor may be one person seen by
    /// different cameras: same floor and label, disjoint cameras (counting
    /// the tracks a camera has lost but still holds: identities a little
    /// apart that each camera tracked on its own are two people more often
    /// than one; `reconcile_views` handles tracks that coincide), and, with
    /// `appearance`, appearance not against it.
    pub(super) fn mergeable(&self, ga: &Global, gb: &Global, appearance: bool) -> bool {
        if ga.floor_idx != gb.floor_idx || ga.label != gb.label {
            return false;
        }
        if gb.sources.iter().any(|k| {
            ga.sources
                .range((k.0, 0)..=(k.0, u64::MAX))
                .next()
                .is_some()
        }) {
            return false;
        }
        if appearance && self.params.reid_enabled {
            if let (Some(ea), Some(eb)) = (&ga.emb, &gb.emb) {
                if cosine(ea, eb) < self.merge_similarity() {
                    return false;
                }
            }
        }
        true
    }

    /// Merges identity `b` into `a` (which keeps its id): `b`'s camera
    /// tracks, history and appearance views join `a`, and `b` ends.
    pub(super) fn merge_into(&mut self, a: u64, b: u64, ts_ns: u64, events: &mut Vec<Event>) {
        if !self.globals.contains_key(&a) {
            return;
        }
        let Some(gb) = self.globals.remove(&b) else {
            return;
        };
        for k in &gb.sources {
            if let Some(s) = self.sources.get_mut(k) {
                s.bound = Some(a);
            }
        }
        // Lost camera tracks of a camera the other identity sees live
        // are superseded, as on a bind.
        let live = {
            let mut c = self.live_cameras(&gb);
            c.extend(
                self.globals
                    .get(&a)
                    .map(|g| self.live_cameras(g))
                    .unwrap_or_default(),
            );
            c
        };
        let mut superseded = Vec::new();
        if let Some(ga) = self.globals.get_mut(&a) {
            ga.sources.extend(gb.sources.iter().copied());
            for k in ga.sources.iter() {
                if live.contains(&k.0) && !self.sources.get(k).is_some_and(|s| s.observed) {
                    superseded.push(*k);
                }
            }
            for k in &superseded {
                ga.sources.remove(k);
            }
            ga.last_seen = ga.last_seen.max(gb.last_seen);
            for vb in gb.views {
                // A camera that sees `b` now shows what the person looks
                // like there now: `a`'s older view of that camera (another
                // part of its field, another light) would unbind the very
                // camera track the merge just joined.
                let current = gb
                    .sources
                    .range((vb.cam, 0)..=(vb.cam, u64::MAX))
                    .any(|k| self.sources.get(k).is_some_and(|s| s.observed));
                let va = ga.view_mut(vb.cam);
                va.obs += vb.obs;
                va.score_sum += vb.score_sum;
                if va.emb.is_none() || (current && vb.emb.is_some()) {
                    va.emb = vb.emb;
                }
            }
            ga.img_disp = ga.img_disp.max(gb.img_disp);
            ga.max_disp = ga.max_disp.max(gb.max_disp).max(dist(gb.origin, ga.origin));
            ga.born_ts = ga.born_ts.min(gb.born_ts);
        }
        for k in &superseded {
            if let Some(s) = self.sources.get_mut(k) {
                s.bound = None;
            }
        }
        self.stats.merged += 1;
        let mut e = self.new_event(event_kind::GLOBAL_ENDED, ts_ns, b);
        e.track_id = None;
        events.push(e);
    }

    /// Evicts the stalest identities beyond `max_tracks`.
    pub(super) fn cap(&mut self, ts_ns: u64, events: &mut Vec<Event>) {
        if self.globals.len() > self.params.max_tracks {
            let excess = self.globals.len() - self.params.max_tracks;
            let mut order: Vec<(u64, u64)> = self
                .globals
                .iter()
                .map(|(id, g)| (g.last_seen, *id))
                .collect();
            order.sort_unstable();
            for (_, gid) in order.into_iter().take(excess) {
                events.push(self.new_event(event_kind::GLOBAL_ENDED, ts_ns, gid));
                self.remove_global(gid);
                self.stats.evicted += 1;
            }
        }
    }

    pub(super) fn remove_global(&mut self, gid: u64) {
        if let Some(g) = self.globals.remove(&gid) {
            for k in g.sources {
                if let Some(s) = self.sources.get_mut(&k) {
                    s.bound = None;
                }
            }
        }
    }
}

/// Fuses the mean `meas` of an identity's fresh observations, the newest
/// taken at `t_max`, into its alpha-beta motion model (`cycle`: this
/// cycle's number). An identity created from this very observation takes
/// it as is; one unseen for over a second restarts from it at rest.
///
/// The velocity learns from the innovation over at least `min_dt` (one
/// matching cycle): two cameras' frames can be a few milliseconds apart,
/// and what two cameras disagree on about where a person stands, divided
/// by such an interval, is no speed anyone walks at.
fn fuse_motion(
    g: &mut Global,
    meas: [f64; 2],
    t_max: u64,
    cycle: u64,
    min_dt: f64,
    a: f64,
    b: f64,
) {
    let dt = t_max.saturating_sub(g.last_seen) as f64 / 1e9;
    if g.last_seen == t_max && dt == 0.0 && g.sources.len() <= 1 && g.created_cycle == cycle {
        // Just created from this observation.
        g.pos = meas;
    } else if dt > 1.0 {
        g.pos = meas;
        g.vel = [0.0, 0.0];
    } else {
        let pred = g.predicted_at(t_max);
        let innov = [meas[0] - pred[0], meas[1] - pred[1]];
        g.pos = [pred[0] + a * innov[0], pred[1] + a * innov[1]];
        if dt > 1e-3 {
            let dt = dt.max(min_dt);
            g.vel = [g.vel[0] + b * innov[0] / dt, g.vel[1] + b * innov[1] / dt];
            let sp = (g.vel[0].powi(2) + g.vel[1].powi(2)).sqrt();
            if sp > MAX_SPEED_MPS {
                g.vel = [g.vel[0] * MAX_SPEED_MPS / sp, g.vel[1] * MAX_SPEED_MPS / sp];
            }
        }
    }
    g.last_seen = g.last_seen.max(t_max);
    g.pos_ts = g.pos_ts.max(t_max);
}

/// What two cameras' views of one identity teach: how closely the pair
/// agrees, and (with `spatial.tuning.learn_offsets`) the offset between
/// their uncorrected positions.
struct PairLearners<'a> {
    /// Per camera pair, how closely their views of one identity agree.
    agreement: &'a mut BTreeMap<(usize, usize), super::agreement::PairAgreement>,
    /// The learned offsets between cameras.
    offsets: &'a mut super::offsets::Offsets,
    /// Whether offsets are learned at all.
    learn_offsets: bool,
}

impl PairLearners<'_> {
    /// One pair of views: (camera, corrected position, uncorrected position)
    /// of each.
    fn sample(
        &mut self,
        (a, pa, ra): (usize, [f64; 2], Option<[f64; 2]>),
        (b, pb, rb): (usize, [f64; 2], Option<[f64; 2]>),
    ) {
        self.agreement
            .entry(super::agreement::pair(a, b))
            .or_default()
            .sample(dist(pa, pb));
        if let (true, Some(ra), Some(rb)) = (self.learn_offsets, ra, rb) {
            self.offsets.sample(a, ra, b, rb);
        }
    }
}

/// A camera slower than the cycle seldom sends its frame in the same cycle
/// as another camera: its latest view of identity `g`, within its frame
/// window and carried along the identity's velocity to the time of this
/// cycle's view (`obs`, from the cameras of `keys`), pairs with that view
/// instead.
fn pair_slow_cameras(
    g: &Global,
    obs: &[(SourceKey, &Source, [f64; 2])],
    keys: &[SourceKey],
    sources: &BTreeMap<SourceKey, Source>,
    cams: &[CamState],
    cycle_ns: u64,
    pairs: &mut PairLearners<'_>,
) {
    for kb in g.sources.iter() {
        let window = cams.get(kb.0).map_or(0, |c| c.frames.window_ns(cycle_ns));
        if window <= cycle_ns || keys.contains(kb) {
            continue;
        }
        let Some(sb) = sources.get(kb).filter(|s| s.observed) else {
            continue;
        };
        let Some(pb) = sb.pos else {
            continue;
        };
        for (ka, sa, pa) in obs.iter().filter(|(ka, ..)| ka.0 != kb.0) {
            let age = sa.obs_ts.saturating_sub(sb.obs_ts);
            if age == 0 || age > window {
                continue;
            }
            let dt = age as f64 / 1e9;
            pairs.sample(
                (ka.0, *pa, sa.raw_pos),
                (kb.0, g.carry(pb, dt), sb.raw_pos.map(|rb| g.carry(rb, dt))),
            );
        }
    }
}
