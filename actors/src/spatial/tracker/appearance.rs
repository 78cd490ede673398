//! Appearance: cosine similarity of embeddings, the per-camera bias taken
//! out of them, and the check that a bound camera track still shows its
//! identity.

use std::collections::VecDeque;

use super::grid::{dist, TwoGrids};
use super::{
    CamState, Global, Source, SourceKey, SpatialTracker, APPEARANCE_RATE, APPEARANCE_SETTLE,
    CAMERA_MEAN_PRIOR, CAMERA_MEAN_WINDOW, CAMERA_VIEW_AGREE, CAMERA_VIEW_RATE, LIVE_WINDOW_S,
};

pub(super) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        // Different descriptors: no evidence either way.
        return 0.0;
    }
    // Four independent partial sums per term: this runs for every camera
    // track against every nearby identity on every cycle, and one chain of
    // dependent additions per term would leave the vector units idle.
    let (mut d, mut na, mut nb) = ([0.0f64; LANES], [0.0f64; LANES], [0.0f64; LANES]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let (x, y) = (f64::from(x[l]), f64::from(y[l]));
            d[l] += x * y;
            na[l] += x * x;
            nb[l] += y * y;
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        let (x, y) = (f64::from(*x), f64::from(*y));
        d[l] += x * y;
        na[l] += x * x;
        nb[l] += y * y;
    }
    let sum = |v: [f64; LANES]| (v[0] + v[1]) + (v[2] + v[3]);
    let (d, na, nb) = (sum(d), sum(na), sum(nb));
    if na <= 0.0 || nb <= 0.0 {
        0.0
    } else {
        d / (na.sqrt() * nb.sqrt())
    }
}

/// Partial sums `cosine` keeps.
const LANES: usize = 4;

pub(super) fn normalise(v: &mut [f32]) {
    let n = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if n > 0.0 {
        for x in v.iter_mut() {
            *x = (*x as f64 / n) as f32;
        }
    }
}

impl CamState {
    /// `e` less the camera's mean embedding, normalised, into `out`; `learn`
    /// adds `e` to that mean first. The mean is shrunk towards zero while
    /// few observations back it (`CAMERA_MEAN_PRIOR`) and forgets old ones
    /// beyond `CAMERA_MEAN_WINDOW`.
    pub(super) fn debias(&mut self, e: &[f32], learn: bool, out: &mut Vec<f32>) {
        if self.emb_sum.len() != e.len() {
            self.emb_sum = vec![0.0; e.len()];
            self.emb_count = 0.0;
        }
        if learn {
            if self.emb_count >= CAMERA_MEAN_WINDOW {
                let r = (CAMERA_MEAN_WINDOW - 1.0) / CAMERA_MEAN_WINDOW;
                self.emb_sum.iter_mut().for_each(|x| *x *= r);
                self.emb_count = CAMERA_MEAN_WINDOW - 1.0;
            }
            for (a, x) in self.emb_sum.iter_mut().zip(e) {
                *a += f64::from(*x);
            }
            self.emb_count += 1.0;
        }
        let k = 1.0 / (self.emb_count + CAMERA_MEAN_PRIOR);
        out.clear();
        out.extend(
            e.iter()
                .zip(&self.emb_sum)
                .map(|(x, m)| (f64::from(*x) - k * m) as f32),
        );
        normalise(out);
    }
}

impl SpatialTracker {
    /// Similarity of embedding `e`, seen by camera `cam`, to identity `g`:
    /// to that camera's own view of it when it has one (flag `true`),
    /// else to its appearance over every camera.
    pub(super) fn similarity(
        &self,
        g: &Global,
        cam: usize,
        e: Option<&[f32]>,
    ) -> Option<(f64, bool)> {
        let e = e?;
        if let Some((v, _)) = g
            .view(cam)
            .and_then(|v| v.emb.as_ref())
            .filter(|(v, _)| v.len() == e.len())
        {
            return Some((cosine(e, v), true));
        }
        let ge = g.emb.as_ref().filter(|v| v.len() == e.len())?;
        Some((cosine(e, ge), false))
    }

    /// Whether bound source `k`'s appearance says it no longer shows
    /// identity `gid`: too dissimilar to it, or clearly more similar to
    /// another identity that could be there.
    pub(super) fn appearance_suspect(
        &self,
        k: SourceKey,
        gid: u64,
        grid: &mut TwoGrids,
        cand: &mut Vec<u64>,
    ) -> bool {
        let (Some(s), Some(g)) = (self.sources.get(&k), self.globals.get(&gid)) else {
            return false;
        };
        let (Some(se), Some(p)) = (&s.emb, s.pos) else {
            return false;
        };
        let Some((own, _)) = self.similarity(g, k.0, Some(se)) else {
            return false;
        };
        if own < self.params.unbind_similarity {
            return true;
        }
        // No other identity can beat `own` by `swap_margin` once `own` is
        // within the margin of 1 (cosines are at most 1).
        if own
            >= self
                .params
                .swap_check_similarity
                .min(1.0 - self.params.swap_margin)
        {
            return false;
        }
        // Only identities within the gate and seen within `SWAP_RECENT_S`
        // (the live grid) can pass the test below; the grid holds positions
        // from before this cycle's updates, which move an identity by less
        // than `GRID_SLACK_M`.
        grid.live.query_near_any_order(
            self.cams[k.0].floor_idx,
            p,
            self.params.gate_m + GRID_SLACK_M,
            cand,
        );
        for other in cand.iter() {
            if *other == gid {
                continue;
            }
            let Some(o) = self.globals.get(other) else {
                continue;
            };
            // A camera tracker swaps two people who are both there: only an
            // identity seen within the last `SWAP_RECENT_S`, within the gate,
            // can be the one this camera track now shows (comparing with
            // every lost identity around would find a look-alike by chance).
            let gap_s = s.obs_ts.saturating_sub(o.last_seen) as f64 / 1e9;
            if gap_s > SWAP_RECENT_S
                || dist(o.pos, p) > self.params.gate_m
                || o.floor_idx != g.floor_idx
                || o.label != s.label
            {
                continue;
            }
            let Some((theirs, _)) = self.similarity(o, k.0, Some(se)) else {
                continue;
            };
            if theirs > own + self.params.swap_margin {
                return true;
            }
        }
        false
    }
}

/// Identities seen within this (s) count as present for the swap check: the
/// live grid (`identity_grid`), which is all the swap check searches.
const SWAP_RECENT_S: f64 = LIVE_WINDOW_S * 0.5;
/// How far (m) an identity may have moved since the grid was built, for the
/// swap check's candidate search.
const GRID_SLACK_M: f64 = 1.0;

/// Similarities seen between different people.
const IMPOSTOR_WINDOW: usize = 2000;
/// Samples needed before the impostor level is used.
const IMPOSTOR_MIN_SAMPLES: usize = 50;
/// Pairs sampled per cycle.
const IMPOSTOR_PAIRS_PER_CYCLE: usize = 16;

/// The latest similarities between identities observed in the same cycle
/// (different people by construction), and the quantile in use.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Impostors {
    window: VecDeque<f32>,
    level: Option<f64>,
}

impl SpatialTracker {
    /// Samples the similarity of pairs of identities observed in this cycle
    /// and refreshes the impostor level.
    pub(super) fn sample_impostors(&mut self) {
        let q = self.params.impostor_quantile;
        if q.is_nan() || q <= 0.0 || !self.params.reid_enabled {
            self.impostors.level = None;
            return;
        }
        let ids: Vec<u64> = self.updated.iter().copied().collect();
        let mut added = 0;
        for w in ids.windows(2) {
            if added >= IMPOSTOR_PAIRS_PER_CYCLE {
                break;
            }
            let (Some(a), Some(b)) = (self.globals.get(&w[0]), self.globals.get(&w[1])) else {
                continue;
            };
            let (Some(ea), Some(eb)) = (&a.emb, &b.emb) else {
                continue;
            };
            // Far enough apart to be two people (not one seen twice).
            if ea.len() != eb.len()
                || a.floor_idx != b.floor_idx
                || dist(a.pos, b.pos) < 2.0 * self.params.merge_m
            {
                continue;
            }
            if self.impostors.window.len() >= IMPOSTOR_WINDOW {
                self.impostors.window.pop_front();
            }
            self.impostors.window.push_back(cosine(ea, eb) as f32);
            added += 1;
        }
        if added == 0 && self.impostors.level.is_some() {
            return;
        }
        let n = self.impostors.window.len();
        self.impostors.level = (n >= IMPOSTOR_MIN_SAMPLES).then(|| {
            let mut v: Vec<f32> = self.impostors.window.iter().copied().collect();
            let k = ((n as f64 * q.min(1.0)).ceil() as usize).clamp(1, n) - 1;
            let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
            f64::from(*x)
        });
    }

    /// Least similarity for a handoff across a blind gap.
    pub(super) fn handoff_similarity(&self) -> f64 {
        self.params
            .min_handoff_similarity
            .max(self.impostors.level.unwrap_or(0.0))
    }

    /// Least similarity for merging two coinciding identities.
    pub(super) fn merge_similarity(&self) -> f64 {
        self.params.merge_similarity
    }
}

/// Learns identity `g`'s appearance from its fresh observations `obs`
/// (camera track, its state, floor position): each camera's own view of
/// it, and its overall appearance. `swap_check_similarity`: once settled,
/// the overall appearance learns only from observations at least this
/// similar to it.
pub(super) fn learn_appearance(
    g: &mut Global,
    obs: &[(SourceKey, &Source, [f64; 2])],
    swap_check_similarity: f64,
) {
    // Each camera's own view: learns faster (a person's look changes
    // across one camera's field), and once settled only from
    // observations that agree with it.
    // The observations with a position and an embedding, in key order.
    let embs = || {
        obs.iter()
            .filter_map(|(k, s, _)| Some((k.0, s.emb.as_ref()?)))
    };
    for (c, e) in embs() {
        let view = g.view_mut(c);
        match &mut view.emb {
            Some((v, n)) if v.len() == e.len() => {
                if *n >= APPEARANCE_SETTLE && cosine(e, v) < CAMERA_VIEW_AGREE {
                    continue;
                }
                let rate = (1.0 / (*n as f32 + 1.0)).max(CAMERA_VIEW_RATE);
                for (a, x) in v.iter_mut().zip(e.iter()) {
                    *a = (1.0 - rate) * *a + rate * x;
                }
                normalise(v);
                *n = n.saturating_add(1);
            }
            _ => {
                view.emb = Some((e.clone(), 1));
            }
        }
    }
    // Appearance: a running mean whose rate decays to `APPEARANCE_RATE`,
    // fed only by observations that agree with it once it is settled, so
    // that a camera track drifting to another person cannot drag it along.
    let d = embs().next().map_or(0, |(_, e)| e.len());
    let settled = g.emb_n >= APPEARANCE_SETTLE;
    let mut fresh: Vec<&Vec<f32>> = Vec::with_capacity(obs.len());
    for (_, e) in embs() {
        if e.len() != d {
            continue;
        }
        match &g.emb {
            Some(ge) if ge.len() == d => {
                if !settled || cosine(e, ge) >= swap_check_similarity {
                    fresh.push(e);
                }
            }
            _ => fresh.push(e),
        }
    }
    if !fresh.is_empty() {
        let prior = g.emb.as_ref().is_some_and(|e| e.len() == d);
        let rate = if prior {
            (1.0 / (g.emb_n as f32 + 1.0)).max(APPEARANCE_RATE)
        } else {
            g.emb_n = 0;
            1.0
        };
        // Updated in place: this runs for every observed identity on
        // every cycle.
        let acc = match &mut g.emb {
            Some(e) if prior => {
                e.iter_mut().for_each(|x| *x *= 1.0 - rate);
                e
            }
            slot => slot.insert(vec![0.0; d]),
        };
        let wgt = rate / fresh.len() as f32;
        for e in &fresh {
            for (a, x) in acc.iter_mut().zip(e.iter()) {
                *a += wgt * x;
            }
        }
        normalise(acc);
        g.emb_n = g.emb_n.saturating_add(1);
    }
}
