//! Association of camera tracks (sources) to global identities: the gated
//! cost (floor distance widened across blind gaps, label, appearance),
//! binding with handoff events, new identities, and the two assignment
//! rounds of a cycle.

use std::collections::{BTreeMap, BTreeSet};

use nvr_subjects::{event_kind, Event};

use super::agreement;
use super::grid::{dist, find, TwoGrids};
use super::{
    CamState, CamView, Global, Source, SourceKey, SpatialTracker, MIN_MERGE_RADIUS_M, NO_EDGE,
};

impl SpatialTracker {
    /// Whether `g` has a currently observed source on camera `ci`.
    pub(super) fn has_live_source_on(&self, g: &Global, ci: usize) -> bool {
        self.any_source_on(g, ci, |s| s.observed)
    }

    /// Whether identity `g` has a camera track on camera `ci` for which
    /// `pred` holds.
    pub(super) fn any_source_on(
        &self,
        g: &Global,
        ci: usize,
        pred: impl Fn(&Source) -> bool,
    ) -> bool {
        g.sources
            .range((ci, 0)..=(ci, u64::MAX))
            .any(|k| self.sources.get(k).is_some_and(&pred))
    }

    /// Cameras with a currently observed source of `g`.
    pub(super) fn live_cameras(&self, g: &Global) -> BTreeSet<usize> {
        g.sources
            .iter()
            .filter(|k| self.sources.get(k).is_some_and(|s| s.observed))
            .map(|k| k.0)
            .collect()
    }

    /// The gate for camera `cam` joining identity `g`, seen now by other
    /// cameras: the widest of those cameras' learned agreement with `cam`
    /// (`overlap_gate_m` for a pair still learning, or when no camera sees
    /// it now).
    pub(super) fn overlap_gate(&self, cam: usize, g: &Global) -> f64 {
        g.sources
            .iter()
            .filter(|k| k.0 != cam && self.sources.get(k).is_some_and(|s| s.observed))
            .map(|k| self.pair_gate(cam, k.0))
            .reduce(f64::max)
            .unwrap_or(self.params.overlap_gate_m)
    }

    /// The join gate of cameras `a` and `b`: from how closely they agree,
    /// between half of `overlap_gate_m` and `gate_m`, once learned.
    fn pair_gate(&self, a: usize, b: usize) -> f64 {
        let fallback = self.params.overlap_gate_m;
        self.agreement
            .get(&agreement::pair(a, b))
            .map_or(fallback, |p| {
                p.gate(fallback, 0.5 * fallback, self.params.gate_m.max(fallback))
            })
    }

    /// How far apart two identities may be and still be one person seen
    /// by different cameras (published `duplicate`, merged when they stay
    /// together): the widest, over the pairs of their cameras, of what the
    /// pair's learned agreement allows, `merge_m` at most. Two views that
    /// agree within centimetres (crops of one image) put one person at one
    /// point, so identities half a metre apart there are two people
    /// walking together, not one person twice. `merge_m` for a pair still
    /// learning, or for an identity without camera tracks.
    pub(super) fn merge_radius(&self, ga: &Global, gb: &Global) -> f64 {
        let m = self.params.merge_m;
        let lo = MIN_MERGE_RADIUS_M.min(m);
        ga.sources
            .iter()
            .flat_map(|ka| gb.sources.iter().map(move |kb| (ka.0, kb.0)))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| {
                self.agreement
                    .get(&agreement::pair(a, b))
                    .map_or(m, |p| p.merge_radius(m, lo, m))
            })
            .reduce(f64::max)
            .unwrap_or(m)
    }

    /// Every camera pair's learned agreement, for the stats.
    pub(super) fn camera_agreement(&self) -> Vec<super::CameraAgreement> {
        let biases = self.offsets.pair_biases();
        self.agreement
            .iter()
            .map(|((a, b), p)| super::CameraAgreement {
                cameras: [self.cams[*a].geom.id.clone(), self.cams[*b].geom.id.clone()],
                p90_m: p.quantile_m().unwrap_or(0.0),
                offset_m: biases.get(&(*a, *b)).copied().unwrap_or(0.0),
                samples: p.samples(),
                gate_m: self.pair_gate(*a, *b),
            })
            .collect()
    }

    /// Association cost of source `k` (whose state is `s`) to identity
    /// `gid`, or `None` when gated out. The flag says the refusal was on
    /// appearance alone.
    pub(super) fn cost(&self, k: SourceKey, s: &Source, gid: u64) -> (Option<f64>, bool) {
        let Some(g) = self.globals.get(&gid) else {
            return (None, false);
        };
        let Some(p) = s.pos else {
            return (None, false);
        };
        let gap_ns = s.obs_ts.saturating_sub(g.last_seen);
        let gap_s = gap_ns as f64 / 1e9;
        if gap_s > self.params.max_gap_seconds || g.floor_idx != self.cams[k.0].floor_idx {
            return (None, false);
        }
        let horizon = (s.obs_ts.saturating_sub(g.pos_ts) as f64 / 1e9).min(1.0);
        let pred = g.carry(g.pos, horizon);
        let mut radius = self.params.gate_m
            + (self.params.max_speed_mps * gap_s).min(self.params.max_handoff_radius_m);
        let mut d = dist(pred, p);
        if g.pos_ts > g.last_seen {
            // Carried along by a companion: it may as well have left where
            // it vanished.
            d = d.min(dist(g.obs_pos, p));
        }
        // Seen by another camera right now: two calibrated views of one
        // person agree closely, so the gate is the tighter one of how
        // closely these cameras agree (`overlap_gate_m` until learned).
        // Within a frame of the slower of the two cameras: a camera that
        // sends a frame every few cycles sees the person a frame apart.
        let co_observed = gap_ns
            <= self
                .frame_window_ns(k.0)
                .max(self.frame_window_ns(g.last_camera));
        if co_observed {
            radius = radius.min(self.overlap_gate(k.0, g));
        }
        if d > radius || g.label != s.label || self.has_live_source_on(g, k.0) {
            return (None, false);
        }
        let w = self.params.appearance_weight.clamp(0.0, 1.0);
        let mut app = 0.5;
        if self.params.reid_enabled {
            if let Some((c, same_camera)) = self.similarity(g, k.0, s.emb.as_deref()) {
                // The camera has seen this identity before: its own view
                // tells people apart far better than another camera's.
                if same_camera && c < self.params.min_handoff_similarity {
                    return (None, true);
                }
                // Seen by another camera right now, within the gate: the
                // geometry is the evidence (two views of one person rarely
                // look alike across cameras); appearance only weighs in.
                if (!co_observed && c < self.params.min_similarity)
                    || (gap_ns > self.params.appearance_free_gap_ms * 1_000_000
                        && c < self.handoff_similarity())
                {
                    return (None, true);
                }
                app = (1.0 - c).clamp(0.0, 2.0);
            }
        }
        // Distance counts relative to the gate in use: across a long blind
        // gap the position says little and appearance decides.
        let cost = (1.0 - w) * (d / radius.max(1e-3) + 0.1 * gap_s) + w * 2.0 * app;
        (Some(cost), false)
    }

    /// Binds source `k` to identity `gid`, emitting a handoff when the
    /// identity arrives on a camera it is not currently seen on.
    pub(super) fn bind(&mut self, k: SourceKey, gid: u64, ts_ns: u64, events: &mut Vec<Event>) {
        let Some(g) = self.globals.get(&gid) else {
            return;
        };
        // Superseded (lost) sources of the same camera leave the identity.
        let stale: Vec<SourceKey> = g
            .sources
            .range((k.0, 0)..=(k.0, u64::MAX))
            .copied()
            .collect();
        let live_cams: BTreeSet<usize> = g
            .sources
            .iter()
            .filter(|sk| self.sources.get(sk).is_some_and(|s| s.observed))
            .map(|sk| sk.0)
            .collect();
        let last_camera = g.last_camera;
        let last_seen = g.last_seen;
        // An identity created in this cycle is not handed off: a new person
        // seen by two cameras at once joins both, with no handoff event.
        let is_new = g.created_cycle == self.stats.cycles;
        if !is_new && live_cams.is_empty() {
            self.remember_before_handoff(gid);
        }
        for sk in &stale {
            if let Some(s) = self.sources.get_mut(sk) {
                s.bound = None;
            }
        }
        let obs_ts = self.sources.get(&k).map(|s| s.obs_ts).unwrap_or(ts_ns);
        if let Some(s) = self.sources.get_mut(&k) {
            s.bound = Some(gid);
            s.bad_cycles = 0;
        }
        if let Some(g) = self.globals.get_mut(&gid) {
            for sk in &stale {
                g.sources.remove(sk);
            }
            g.sources.insert(k);
        }
        if !is_new && last_camera != k.0 && !live_cams.contains(&k.0) {
            let mut e = self.new_event(event_kind::HANDOFF, ts_ns, gid);
            e.from_camera = Some(self.cams[last_camera].geom.id.clone());
            e.to_camera = Some(self.cams[k.0].geom.id.clone());
            e.track_id = Some(k.1);
            e.camera = Some(self.cams[k.0].geom.id.clone());
            e.gap_ms = Some(if live_cams.is_empty() {
                obs_ts.saturating_sub(last_seen) / 1_000_000
            } else {
                0
            });
            events.push(e);
            self.stats.handoffs_completed += 1;
        }
    }

    pub(super) fn create_global(
        &mut self,
        k: SourceKey,
        ts_ns: u64,
        events: &mut Vec<Event>,
    ) -> u64 {
        let gid = self.next_id;
        self.next_id += 1;
        let (pos, label, emb, score, obs_ts, bbox) = match self.sources.get(&k) {
            Some(s) => (
                s.pos.unwrap_or([0.0, 0.0]),
                s.label.clone(),
                s.emb.clone(),
                s.score,
                s.obs_ts,
                s.bbox,
            ),
            None => ([0.0, 0.0], String::new(), None, 0.0, ts_ns, [0.0; 4]),
        };
        let (foot, height) = box_foot(&self.cams[k.0], bbox);
        self.globals.insert(
            gid,
            Global {
                floor_idx: self.cams[k.0].floor_idx,
                label,
                pos,
                vel: [0.0, 0.0],
                pos_ts: obs_ts,
                companion: None,
                obs_pos: pos,
                seen_cycle: self.stats.cycles,
                last_seen: obs_ts,
                sources: BTreeSet::new(),
                last_camera: k.0,
                emb_n: u32::from(emb.is_some()),
                views: emb
                    .iter()
                    .map(|e| CamView {
                        cam: k.0,
                        obs: 0,
                        score_sum: 0.0,
                        emb: Some((e.clone(), 1)),
                    })
                    .collect(),
                emb,
                score,
                created_cycle: self.stats.cycles,
                born_ts: obs_ts,
                origin: pos,
                max_disp: 0.0,
                img_origin: (k.0, foot, height),
                img_disp: 0.0,
                before_handoff: None,
            },
        );
        self.stats.total_tracks += 1;
        if let Some(s) = self.sources.get_mut(&k) {
            s.bound = Some(gid);
            s.bad_cycles = 0;
        }
        if let Some(g) = self.globals.get_mut(&gid) {
            g.sources.insert(k);
        }
        let mut e = self.new_event(event_kind::GLOBAL_STARTED, ts_ns, gid);
        e.camera = Some(self.cams[k.0].geom.id.clone());
        e.track_id = Some(k.1);
        events.push(e);
        gid
    }

    /// Whether identity `gid` was last seen by another camera than `cam`: only
    /// then is a refusal on appearance a failed handoff (one camera alone
    /// has no handoffs to fail).
    pub(super) fn other_camera(&self, gid: u64, cam: usize) -> bool {
        self.globals.get(&gid).is_some_and(|g| g.last_camera != cam)
    }

    /// Round 1 of the association: an optimal assignment of `unbound`
    /// sources to gated identities, solved per connected component.
    /// Marks sources refused on appearance alone by another camera's identity.
    pub(super) fn assign_optimal(
        &self,
        unbound: &[SourceKey],
        grid: &mut TwoGrids,
        refused_on_appearance: &mut [bool],
    ) -> Vec<Option<u64>> {
        let mut cand = Vec::new();
        let mut edges: Vec<(usize, u64, f64)> = Vec::new();
        for (i, k) in unbound.iter().enumerate() {
            let Some((s, p)) = self.sources.get(k).and_then(|s| Some((s, s.pos?))) else {
                continue;
            };
            grid.query(self.cams[k.0].floor_idx, p, &mut cand);
            for gid in &cand {
                match self.cost(*k, s, *gid) {
                    (Some(c), _) => edges.push((i, *gid, c)),
                    (None, true) if self.other_camera(*gid, k.0) => refused_on_appearance[i] = true,
                    _ => {}
                }
            }
        }
        let mut assigned: Vec<Option<u64>> = vec![None; unbound.len()];
        if !edges.is_empty() {
            let gids: Vec<u64> = {
                let s: BTreeSet<u64> = edges.iter().map(|e| e.1).collect();
                s.into_iter().collect()
            };
            let gindex: BTreeMap<u64, usize> =
                gids.iter().enumerate().map(|(i, g)| (*g, i)).collect();
            let nu = unbound.len();
            let mut parent: Vec<usize> = (0..nu + gids.len()).collect();
            for (i, gid, _) in &edges {
                let a = find(&mut parent, *i);
                let b = find(&mut parent, nu + gindex[gid]);
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
            let mut comps: BTreeMap<usize, Vec<(usize, usize, f64)>> = BTreeMap::new();
            for (i, gid, c) in &edges {
                let r = find(&mut parent, *i);
                comps.entry(r).or_default().push((*i, gindex[gid], *c));
            }
            for (_, es) in comps {
                let rows: Vec<usize> = es
                    .iter()
                    .map(|e| e.0)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let cols: Vec<usize> = es
                    .iter()
                    .map(|e| e.1)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if rows.len() == 1 || cols.len() == 1 {
                    // Trivial component: the cheapest edge (ties by order).
                    let best = es.iter().fold(None::<(usize, usize, f64)>, |b, e| match b {
                        Some(bb) if bb.2 <= e.2 => Some(bb),
                        _ => Some(*e),
                    });
                    if let Some((i, j, _)) = best {
                        assigned[i] = Some(gids[j]);
                    }
                    continue;
                }
                let ri: BTreeMap<usize, usize> =
                    rows.iter().enumerate().map(|(a, b)| (*b, a)).collect();
                let cj: BTreeMap<usize, usize> =
                    cols.iter().enumerate().map(|(a, b)| (*b, a)).collect();
                let (nr, nc) = (rows.len(), cols.len());
                let mut m = vec![NO_EDGE; nr * nc];
                for (i, j, c) in &es {
                    m[ri[i] * nc + cj[j]] = *c;
                }
                if let Ok((rr, cc)) = lsap::solve(nr, nc, &m, false) {
                    for (a, b) in rr.iter().zip(cc.iter()) {
                        if m[a * nc + b] < NO_EDGE {
                            assigned[rows[*a]] = Some(gids[cols[*b]]);
                        }
                    }
                }
            }
        }
        assigned
    }

    /// Binds each unbound source to an identity or creates one for it:
    /// first by optimal assignment against the identities known before
    /// this cycle, then greedily, including identities created in this
    /// cycle (two cameras seeing one new person).
    pub(super) fn associate(&mut self, ts_ns: u64, unbound: &[SourceKey], events: &mut Vec<Event>) {
        // Recently seen identities are searched in a small radius, those
        // lost for longer (blind-gap handoff) in the widened one.
        let mut grid = self.identity_grid(ts_ns);
        let mut refused_on_appearance = vec![false; unbound.len()];
        let assigned = self.assign_optimal(unbound, &mut grid, &mut refused_on_appearance);
        let mut cand = Vec::new();
        for (i, k) in unbound.iter().enumerate() {
            if let Some(gid) = assigned[i] {
                self.bind(*k, gid, ts_ns, events);
                self.apply_observations(gid, &[*k], true);
            }
        }
        // Round 2: the rest, greedily, against identities including those
        // created in this cycle (two cameras seeing one new person).
        for (i, k) in unbound.iter().enumerate() {
            if assigned[i].is_some() {
                continue;
            }
            let Some((s, p)) = self.sources.get(k).and_then(|s| Some((s, s.pos?))) else {
                continue;
            };
            grid.query(self.cams[k.0].floor_idx, p, &mut cand);
            let mut best: Option<(f64, u64)> = None;
            for gid in &cand {
                match self.cost(*k, s, *gid) {
                    (Some(c), _) if best.is_none_or(|(bc, _)| c < bc) => best = Some((c, *gid)),
                    (None, true) if self.other_camera(*gid, k.0) => refused_on_appearance[i] = true,
                    _ => {}
                }
            }
            match best {
                Some((_, gid)) => {
                    self.bind(*k, gid, ts_ns, events);
                    self.apply_observations(gid, &[*k], true);
                    if let Some(g) = self.globals.get(&gid) {
                        grid.live.insert(g.floor_idx, g.pos, gid);
                    }
                }
                None => {
                    if refused_on_appearance[i] {
                        self.stats.handoff_failures += 1;
                    }
                    let gid = self.create_global(*k, ts_ns, events);
                    if let Some(g) = self.globals.get(&gid) {
                        grid.live.insert(g.floor_idx, g.pos, gid);
                    }
                }
            }
        }
    }
}

/// Bottom centre (pixels) and height (pixels) of box `b` (normalised 0..1)
/// on camera `cam`'s latest image size.
pub(super) fn box_foot(cam: &CamState, b: [f32; 4]) -> ([f64; 2], f64) {
    let (w, h) = cam
        .size
        .map(|(w, h)| (w as f64, h as f64))
        .unwrap_or((1.0, 1.0));
    (
        [(b[0] as f64 + b[2] as f64) * 0.5 * w, b[3] as f64 * h],
        ((b[3] - b[1]) as f64 * h).max(1.0),
    )
}
