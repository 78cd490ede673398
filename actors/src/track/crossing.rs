//! Crossing repair: two confirmed tracks whose boxes came together and
//! parted again are checked for having swapped people.
//!
//! When one person passes in front of another, the detector often sees one
//! box for both for a frame or two, and the track of the hidden person may
//! take the visible one (its motion fits the merged box as well) while the
//! other track picks the hidden person up again where they reappear. The
//! colour descriptor cannot always tell (two people in dark clothes), but
//! their motion can: each person keeps walking the way they walked before
//! they met. So when a track loses its detection while its box overlaps
//! another track's, the motion each had before their boxes met is kept;
//! when they have parted, both tracks' positions are compared with where
//! each motion leads. If the crosswise pairing fits clearly better
//! than the straight one (and appearance does not object), the two tracks
//! exchange their ids, so each id goes on with the person it followed
//! before the crossing.

use serde::{Deserialize, Serialize};

use super::{iou, TrackInner, Tracker};

/// Observations a track keeps at least: the motion before a crossing is
/// measured over them.
pub(super) const CROSSING_HISTORY: usize = 8;

impl Tracker {
    /// Opens a crossing for every confirmed track that has missed its
    /// detection for one or two updates while its box overlaps another
    /// confirmed track's at least `crossing_iou` (one person hides the
    /// other: the moment a tracker swaps them), and checks those
    /// whose boxes have parted: where the two swapped people while they
    /// overlapped, they exchange ids. Returns the exchanged pairs.
    pub(super) fn check_crossings(&mut self, step: u64, ts: u64) -> Vec<(u64, u64)> {
        let p = &self.params;
        if p.crossing_iou > 1.0 {
            self.crossings.clear();
            return Vec::new();
        }
        let (open_iou, max_ns) = (p.crossing_iou, p.crossing_max_ms.saturating_mul(1_000_000));
        let rule = Rule {
            margin: p.crossing_margin as f64,
            appearance_tolerance: p.crossing_appearance_tolerance as f64,
        };
        self.open_crossings(open_iou, step, ts);
        let swapped = self.settle_crossings(max_ns, rule, step, ts);
        self.exchange_ids(&swapped);
        swapped
    }

    /// Opens a crossing for each confirmed track that has just missed its
    /// detection while its box overlaps another confirmed track's by
    /// `open_iou` or more, keeping the motion each had before they met.
    fn open_crossings(&mut self, open_iou: f32, step: u64, ts: u64) {
        const JUST_MISSED: u32 = 2;
        for (i, tu) in self.tracks.iter().enumerate() {
            if !tu.confirmed || tu.matched || tu.misses > JUST_MISSED {
                continue;
            }
            let bu = tu.kf.xyxy();
            for (j, tv) in self.tracks.iter().enumerate() {
                if i == j || !tv.confirmed || tv.label != tu.label {
                    continue;
                }
                let bv = tv.kf.xyxy();
                if bv[0] >= bu[2] || bv[2] <= bu[0] || bv[1] >= bu[3] || bv[3] <= bu[1] {
                    continue;
                }
                if iou(bu, bv) < open_iou {
                    continue;
                }
                let (ta, tb) = if tu.id < tv.id { (tu, tv) } else { (tv, tu) };
                // `crossings` is kept sorted by (a, b).
                let Err(k) = self
                    .crossings
                    .binary_search_by_key(&(ta.id, tb.id), |c| (c.a, c.b))
                else {
                    continue;
                };
                // Their motion before their boxes began to overlap.
                let met = first_contact(ta, tb).unwrap_or(step);
                let motion = |t: &TrackInner| {
                    Motion::from_obs(t.obs.iter().map(|o| (o.step, &o.bbox)), met)
                        .or_else(|| Motion::from_obs(t.obs.iter().map(|o| (o.step, &o.bbox)), step))
                };
                if let (Some(pre_a), Some(pre_b)) = (motion(ta), motion(tb)) {
                    let c = Crossing {
                        a: ta.id,
                        b: tb.id,
                        start_ts: ts,
                        pre_a,
                        pre_b,
                        app_a: ta.matching.clone(),
                        app_b: tb.matching.clone(),
                    };
                    self.crossings.insert(k, c);
                }
            }
        }
    }

    /// Decides the open crossings whose two tracks parted in this update
    /// (both matched again, boxes apart) and drops those that ended or
    /// timed out after `max_ns`; returns the pairs that swapped people.
    fn settle_crossings(&mut self, max_ns: u64, rule: Rule, step: u64, ts: u64) -> Vec<(u64, u64)> {
        let mut swapped = Vec::new();
        let mut crossings = std::mem::take(&mut self.crossings);
        crossings.retain(|c| {
            if ts.saturating_sub(c.start_ts) > max_ns {
                return false;
            }
            let (Some(ta), Some(tb)) = (self.track(c.a), self.track(c.b)) else {
                return false;
            };
            if !ta.confirmed || !tb.confirmed {
                return false;
            }
            if iou(ta.kf.xyxy(), tb.kf.xyxy()) > 0.0 {
                // Not parted yet.
                return true;
            }
            if !ta.matched || !tb.matched {
                return true;
            }
            // A track exchanges its id once per update at most.
            if swapped
                .iter()
                .any(|&(a, b)| [a, b].contains(&c.a) || [a, b].contains(&c.b))
            {
                return false;
            }
            let now_a = Now {
                centre: super::centre(ta.last_obs()),
                app: ta.matching.as_deref(),
            };
            let now_b = Now {
                centre: super::centre(tb.last_obs()),
                app: tb.matching.as_deref(),
            };
            match decide(c, &now_a, &now_b, step, rule) {
                Verdict::Wait => true,
                Verdict::Keep => false,
                Verdict::Swap => {
                    swapped.push((c.a, c.b));
                    false
                }
            }
        });
        // A track that changes id leaves its other crossings: their motion
        // before was another person's.
        crossings.retain(|c| {
            !swapped
                .iter()
                .any(|&(a, b)| c.a == a || c.a == b || c.b == a || c.b == b)
        });
        self.crossings = crossings;
        swapped
    }

    /// Gives each pair of tracks in `swapped` the other's id (and the age
    /// and hits that go with it).
    fn exchange_ids(&mut self, swapped: &[(u64, u64)]) {
        for &(a, b) in swapped {
            let (Some(ia), Some(ib)) = (self.index(a), self.index(b)) else {
                continue;
            };
            let (ta, tb) = (&self.tracks[ia], &self.tracks[ib]);
            let (fa, ha, fb, hb) = (ta.first_ts, ta.hits, tb.first_ts, tb.hits);
            let ta = &mut self.tracks[ia];
            (ta.id, ta.first_ts, ta.hits) = (b, fb, hb);
            let tb = &mut self.tracks[ib];
            (tb.id, tb.first_ts, tb.hits) = (a, fa, ha);
        }
        if !swapped.is_empty() {
            self.tracks.sort_by_key(|t| t.id);
        }
    }

    /// Index of the track with id `id` (tracks are sorted by id).
    fn index(&self, id: u64) -> Option<usize> {
        self.tracks.binary_search_by_key(&id, |t| t.id).ok()
    }

    /// The track with id `id`.
    fn track(&self, id: u64) -> Option<&TrackInner> {
        self.index(id).map(|i| &self.tracks[i])
    }
}

/// The earliest update at which both tracks were observed with
/// overlapping boxes, among the observations they still hold.
fn first_contact(a: &TrackInner, b: &TrackInner) -> Option<u64> {
    a.obs
        .iter()
        .filter(|oa| {
            b.obs
                .iter()
                .any(|ob| ob.step == oa.step && iou(oa.bbox, ob.bbox) > 0.0)
        })
        .map(|o| o.step)
        .min()
}

/// A track's motion from its observations before two tracks met.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Motion {
    /// Box centre of the last observation before the crossing (pixels or
    /// normalised, as the boxes are).
    pub centre: [f64; 2],
    /// Update index of that observation.
    pub step: u64,
    /// Centre velocity per update, from the observations before it.
    pub vel: [f64; 2],
    /// Box height of that observation (the distance unit).
    pub height: f64,
}

impl Motion {
    /// From a track's observations `(step, box)`, oldest first, keeping
    /// only those made before `before`. `None` without any.
    pub fn from_obs<'a>(
        obs: impl Iterator<Item = (u64, &'a [f32; 4])>,
        before: u64,
    ) -> Option<Motion> {
        let kept: Vec<(u64, [f64; 2], f64)> = obs
            .filter(|(s, _)| *s < before)
            .map(|(s, b)| (s, super::centre(*b), (b[3] - b[1]) as f64))
            .collect();
        let (first, last) = (kept.first()?, kept.last()?);
        let span = last.0.saturating_sub(first.0);
        let vel = if span == 0 {
            [0.0, 0.0]
        } else {
            [
                (last.1[0] - first.1[0]) / span as f64,
                (last.1[1] - first.1[1]) / span as f64,
            ]
        };
        Some(Motion {
            centre: last.1,
            step: last.0,
            vel,
            height: last.2.max(1e-9),
        })
    }

    /// Where this motion puts the box centre at update `step`.
    pub fn at(&self, step: u64) -> [f64; 2] {
        let k = step.saturating_sub(self.step) as f64;
        [
            self.centre[0] + self.vel[0] * k,
            self.centre[1] + self.vel[1] * k,
        ]
    }
}

/// Two tracks whose boxes overlap or did until recently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Crossing {
    /// The lower of the two track ids.
    pub a: u64,
    /// The higher one.
    pub b: u64,
    /// Message time of the update that opened it (a crossing is given up
    /// after `crossing_max_ms`).
    pub start_ts: u64,
    /// Track `a`'s motion before they met.
    pub pre_a: Motion,
    /// Track `b`'s motion before they met.
    pub pre_b: Motion,
    /// The appearance track `a` was matched on before they met.
    pub app_a: Option<Vec<f32>>,
    /// The appearance track `b` was matched on before they met.
    pub app_b: Option<Vec<f32>>,
}

/// What [`decide`] is given about one track now that the two have parted.
pub(super) struct Now<'a> {
    /// Centre of the track's latest observation.
    pub centre: [f64; 2],
    /// The appearance it is matched on now.
    pub app: Option<&'a [f32]>,
}

/// Thresholds of [`decide`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    /// How much better (in box heights, summed over both tracks) the
    /// crosswise pairing must fit the motions than the straight one.
    pub margin: f64,
    /// How far below the straight pairing's sum of appearance similarities
    /// the crosswise one may be and still be taken.
    pub appearance_tolerance: f64,
}

/// What the motions say about two tracks that have parted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// They swapped people: exchange their ids.
    Swap,
    /// Each kept its person.
    Keep,
    /// Too close to tell yet: look again at the next update.
    Wait,
}

/// Whether the tracks of crossing `c`, now at `a` and `b` at update
/// `step`, swapped people while their boxes overlapped. Right after two
/// people part, both pairings fit about alike; the one that is right fits
/// better and better as they walk on, so the verdict waits until one
/// pairing fits `margin` box heights better than the other.
pub(super) fn decide(c: &Crossing, a: &Now, b: &Now, step: u64, rule: Rule) -> Verdict {
    let (pa, pb) = (c.pre_a.at(step), c.pre_b.at(step));
    let h = 0.5 * (c.pre_a.height + c.pre_b.height);
    let straight = dist(a.centre, pa) + dist(b.centre, pb);
    let crossed = dist(a.centre, pb) + dist(b.centre, pa);
    if crossed - straight >= rule.margin * h {
        return Verdict::Keep;
    }
    if straight - crossed < rule.margin * h {
        return Verdict::Wait;
    }
    if let (Some(aa), Some(ab), Some(na), Some(nb)) = (&c.app_a, &c.app_b, a.app, b.app) {
        let kept = cos(aa, na) + cos(ab, nb);
        let swapped = cos(aa, nb) + cos(ab, na);
        if swapped < kept - rule.appearance_tolerance {
            return Verdict::Keep;
        }
    }
    Verdict::Swap
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Cosine similarity; 0 where it is undefined (different lengths, a
/// zero vector).
fn cos(a: &[f32], b: &[f32]) -> f64 {
    super::cosine(a, b).map_or(0.0, f64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A track now: its centre and the appearance it is matched on.
    fn now(x: f64, y: f64, app: Option<&[f32]>) -> Now<'_> {
        Now {
            centre: [x, y],
            app,
        }
    }

    fn walker(x0: f64, vx: f64, step: u64) -> Motion {
        Motion {
            centre: [x0, 100.0],
            step,
            vel: [vx, 0.0],
            height: 100.0,
        }
    }

    fn crossing(pre_a: Motion, pre_b: Motion) -> Crossing {
        Crossing {
            a: 1,
            b: 2,
            start_ts: 0,
            pre_a,
            pre_b,
            app_a: None,
            app_b: None,
        }
    }

    const RULE: Rule = Rule {
        margin: 0.5,
        appearance_tolerance: 0.1,
    };

    #[test]
    fn motion_from_observations_before_the_crossing() {
        let boxes = [
            [0.0f32, 0.0, 10.0, 20.0],
            [4.0, 0.0, 14.0, 20.0],
            [8.0, 0.0, 18.0, 20.0],
            [50.0, 0.0, 60.0, 20.0],
        ];
        let obs = [
            (1u64, &boxes[0]),
            (2, &boxes[1]),
            (3, &boxes[2]),
            (4, &boxes[3]),
        ];
        let m = Motion::from_obs(obs.iter().copied(), 4).unwrap();
        assert_eq!(m.step, 3);
        assert_eq!(m.centre, [13.0, 10.0]);
        assert_eq!(m.vel, [4.0, 0.0]);
        assert_eq!(m.at(5), [21.0, 10.0]);
        assert!(Motion::from_obs(obs.iter().copied(), 1).is_none());
    }

    #[test]
    fn head_on_crossing_that_swapped_is_caught() {
        // a walked right from 0, b left from 200, 20 px per update; at
        // update 15 each track sits where the other person should be.
        let c = crossing(walker(0.0, 20.0, 5), walker(200.0, -20.0, 5));
        let a = now(0.0, 100.0, None);
        let b = now(200.0, 100.0, None);
        assert_eq!(decide(&c, &a, &b, 15, RULE), Verdict::Swap);
        // Kept their people: no swap.
        let a = now(200.0, 100.0, None);
        let b = now(0.0, 100.0, None);
        assert_eq!(decide(&c, &a, &b, 15, RULE), Verdict::Keep);
    }

    #[test]
    fn walking_together_is_left_alone() {
        // Side by side at the same speed: both pairings fit about alike,
        // so no verdict (the crossing is given up after `crossing_max_ms`).
        let c = crossing(walker(0.0, 10.0, 5), walker(30.0, 10.0, 5));
        let a = now(110.0, 100.0, None);
        let b = now(130.0, 100.0, None);
        assert_eq!(decide(&c, &a, &b, 15, RULE), Verdict::Wait);
    }

    #[test]
    fn appearance_can_veto() {
        let mut c = crossing(walker(0.0, 20.0, 5), walker(200.0, -20.0, 5));
        c.app_a = Some(vec![1.0, 0.0]);
        c.app_b = Some(vec![0.0, 1.0]);
        // Each track still looks like the person it had before.
        let (ea, eb) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let a = now(0.0, 100.0, Some(&ea));
        let b = now(200.0, 100.0, Some(&eb));
        assert_eq!(decide(&c, &a, &b, 15, RULE), Verdict::Keep);
        // Each looks like the other person: the motion is believed.
        let a = now(0.0, 100.0, Some(&eb));
        let b = now(200.0, 100.0, Some(&ea));
        assert_eq!(decide(&c, &a, &b, 15, RULE), Verdict::Swap);
    }
}
