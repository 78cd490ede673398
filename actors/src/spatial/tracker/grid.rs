//! Floor geometry helpers: distances, the spatial hash that keeps gating
//! local, and union-find for splitting an assignment into components.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{SpatialTracker, LIVE_WINDOW_S, MAX_SPEED_MPS};

pub(super) fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

pub(super) fn cell_of(p: [f64; 2], cell: f64) -> (i32, i32) {
    (floor_i32(p[0] / cell), floor_i32(p[1] / cell))
}

/// `v.floor().clamp(-1e9, 1e9) as i32` (0 for NaN) without the call to
/// `floor` that the baseline x86-64 target makes for every grid cell.
fn floor_i32(v: f64) -> i32 {
    let v = v.clamp(-1e9, 1e9);
    let t = v as i64;
    (if (t as f64) > v { t - 1 } else { t }) as i32
}

/// Cell of a position: floor index and cell coordinates.
type CellKey = (usize, i32, i32);

/// Cell `c` and a 32-bit tag as one integer that sorts as `(c, tag)`
/// does (floor, then x, then y, then tag); `None` for a floor index beyond
/// 32 bits. Sorting the grid's entries compares these, several times
/// cheaper than comparing and moving the tuples.
fn packed(c: CellKey, tag: u32) -> Option<u128> {
    let floor = u32::try_from(c.0).ok()?;
    let flip = |v: i32| u128::from((v as u32) ^ 0x8000_0000);
    Some((u128::from(floor) << 96) | (flip(c.1) << 64) | (flip(c.2) << 32) | u128::from(tag))
}

/// Multiply-rotate hash of a grid row's small integer key: a row lookup
/// happens for every row a query touches, and the standard hasher (built
/// against hash flooding, which these keys cannot cause) showed in the
/// cycle's profile.
#[derive(Default)]
pub(super) struct RowHasher(u64);

impl Hasher for RowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Grid rows by (floor, x).
type Rows = HashMap<(usize, i32), (usize, usize), BuildHasherDefault<RowHasher>>;

/// Identity positions bucketed by floor cell, kept as one vector sorted by
/// cell and id, with the range of each row of cells (floor and x) in a hash
/// map: a query reads one contiguous run per row, found by a short binary
/// search within the row; lookups return sorted ids, except the
/// `_any_order` one.
pub(super) struct Grid {
    pub(super) cell: f64,
    /// Cell, id and position of every identity, sorted by cell and id.
    entries: Vec<(CellKey, u64, [f64; 2])>,
    /// Where each row of cells (floor, x) starts and ends in `entries`.
    rows: Rows,
    /// Identities added after the build (few per cycle), scanned in full.
    extra: Vec<(CellKey, u64, [f64; 2])>,
}

impl Grid {
    /// A grid of cell size `cell` (metres) over `(floor, position, id)`.
    pub(super) fn build(
        cell: f64,
        items: impl IntoIterator<Item = (usize, [f64; 2], u64)>,
    ) -> Grid {
        let mut entries: Vec<(CellKey, u64, [f64; 2])> = items
            .into_iter()
            .map(|(floor, p, id)| {
                let (cx, cy) = cell_of(p, cell);
                ((floor, cx, cy), id, p)
            })
            .collect();
        sort_entries(&mut entries);
        let mut rows = Rows::default();
        let mut start = 0;
        for i in 1..=entries.len() {
            let row = |e: &(CellKey, u64, [f64; 2])| (e.0 .0, e.0 .1);
            if i == entries.len() || row(&entries[i]) != row(&entries[start]) {
                rows.insert(row(&entries[start]), (start, i));
                start = i;
            }
        }
        Grid {
            cell,
            entries,
            rows,
            extra: Vec::new(),
        }
    }

    /// Adds one identity.
    pub(super) fn insert(&mut self, floor: usize, p: [f64; 2], id: u64) {
        let (cx, cy) = cell_of(p, self.cell);
        self.extra.push(((floor, cx, cy), id, p));
    }

    /// Ids in the cells that hold every point within `radius` of `p`
    /// (a superset of the identities within `radius`), sorted.
    pub(super) fn query(&self, floor: usize, p: [f64; 2], radius: f64, out: &mut Vec<u64>) {
        self.query_filtered(floor, p, radius, f64::INFINITY, out);
        out.sort_unstable();
        out.dedup();
    }

    /// Ids of the identities at most `radius` from `p`, sorted.
    pub(super) fn query_near(&self, floor: usize, p: [f64; 2], radius: f64, out: &mut Vec<u64>) {
        self.query_filtered(floor, p, radius, radius, out);
        out.sort_unstable();
        out.dedup();
    }

    /// [`Self::query_near`] in no particular order (an id added with
    /// [`Self::insert`] may appear twice): for callers that only ask
    /// whether some nearby identity passes a test, which run for every
    /// camera track on every cycle.
    pub(super) fn query_near_any_order(
        &self,
        floor: usize,
        p: [f64; 2],
        radius: f64,
        out: &mut Vec<u64>,
    ) {
        self.query_filtered(floor, p, radius, radius, out);
    }

    /// Ids in the cells within `radius` of `p` that are at most `max_d`
    /// from it, in no particular order.
    fn query_filtered(
        &self,
        floor: usize,
        p: [f64; 2],
        radius: f64,
        max_d: f64,
        out: &mut Vec<u64>,
    ) {
        out.clear();
        let near = |e: &(CellKey, u64, [f64; 2])| max_d.is_infinite() || dist(e.2, p) <= max_d;
        let (cx, cy) = cell_of(p, self.cell);
        let r = (radius / self.cell).ceil().min(1e6) as i32;
        let (y0, y1) = (cy.saturating_sub(r), cy.saturating_add(r));
        if !self.entries.is_empty() {
            for dx in -r..=r {
                let x = cx.saturating_add(dx);
                let Some(&(a, b)) = self.rows.get(&(floor, x)) else {
                    continue;
                };
                let row = &self.entries[a..b];
                let lo = row.partition_point(|e| e.0 .2 < y0);
                for e in &row[lo..] {
                    if e.0 .2 > y1 {
                        break;
                    }
                    if near(e) {
                        out.push(e.1);
                    }
                }
            }
        }
        for e in &self.extra {
            let (f, x, y) = e.0;
            if f == floor
                && x >= cx.saturating_sub(r)
                && x <= cx.saturating_add(r)
                && (y0..=y1).contains(&y)
                && near(e)
            {
                out.push(e.1);
            }
        }
    }
}

/// Sorts grid entries by cell and id. Callers mostly add them in id order:
/// then sorting (cell, position in the input) packed into one integer
/// gives the same order while comparing and moving 16 bytes per entry.
fn sort_entries(entries: &mut Vec<(CellKey, u64, [f64; 2])>) {
    let by_id = entries.windows(2).all(|w| w[0].1 < w[1].1);
    let keys: Option<Vec<u128>> = if by_id {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| packed(e.0, u32::try_from(i).ok()?))
            .collect()
    } else {
        None
    };
    match keys {
        Some(mut keys) => {
            keys.sort_unstable();
            let sorted = keys.iter().map(|k| entries[(*k as u32) as usize]).collect();
            *entries = sorted;
        }
        None => entries.sort_unstable_by_key(|e| (e.0, e.1)),
    }
}

/// Live and lost identities, queried with their own radius.
pub(super) struct TwoGrids {
    pub(super) live: Grid,
    pub(super) lost: Grid,
    r_live: f64,
    r_lost: f64,
    tmp: Vec<u64>,
}

impl TwoGrids {
    /// Live identities within the live radius and lost ones within the
    /// (wider) lost radius, sorted.
    pub(super) fn query(&mut self, floor: usize, p: [f64; 2], out: &mut Vec<u64>) {
        self.live
            .query_filtered(floor, p, self.r_live, f64::INFINITY, out);
        self.lost
            .query_filtered(floor, p, self.r_lost, f64::INFINITY, &mut self.tmp);
        out.extend_from_slice(&self.tmp);
        out.sort_unstable();
        out.dedup();
    }
}

/// Union-find for splitting the assignment into independent components.
pub(super) fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

impl SpatialTracker {
    /// Grid of the identities' positions seen within `max_gap_seconds`.
    pub(super) fn identity_grid(&self, ts_ns: u64) -> TwoGrids {
        let mut live = Vec::new();
        let mut lost = Vec::new();
        for (gid, g) in &self.globals {
            let unseen_s = ts_ns.saturating_sub(g.last_seen) as f64 / 1e9;
            if unseen_s <= LIVE_WINDOW_S * 0.5 {
                live.push((g.floor_idx, g.pos, *gid));
            } else if unseen_s <= self.params.max_gap_seconds + 1.0 {
                lost.push((g.floor_idx, g.pos, *gid));
            }
        }
        TwoGrids {
            live: Grid::build(3.0, live),
            lost: Grid::build(8.0, lost),
            r_live: self.params.gate_m
                + 0.5 * LIVE_WINDOW_S * (self.params.max_speed_mps + MAX_SPEED_MPS),
            r_lost: self.params.gate_m + self.params.max_handoff_radius_m.max(0.0) + MAX_SPEED_MPS,
            tmp: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_floor(v: f64) -> i32 {
        v.floor().clamp(-1e9, 1e9) as i32
    }

    #[test]
    fn floor_matches_the_standard_one_at_the_edges() {
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            -1.0 - 1e-12,
            2.999_999_999,
            -2.000_000_001,
            1e9 - 0.5,
            1e9,
            1e9 + 0.5,
            -1e9,
            -1e9 - 0.5,
            4.5e15,
            -4.5e15,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
        ] {
            assert_eq!(floor_i32(v), reference_floor(v), "{v}");
        }
    }

    proptest! {
        #[test]
        fn floor_matches_the_standard_one(v in proptest::num::f64::ANY) {
            prop_assert_eq!(floor_i32(v), reference_floor(v));
        }
    }

    #[test]
    fn packed_cells_sort_as_the_tuples() {
        let vals = [
            i32::MIN,
            -1_000_000_000,
            -3,
            -1,
            0,
            1,
            2,
            1_000_000_000,
            i32::MAX,
        ];
        let mut cells = Vec::new();
        for f in [0usize, 1, 7] {
            for x in vals {
                for y in vals {
                    cells.push((f, x, y));
                }
            }
        }
        for a in &cells {
            for b in &cells {
                for (ta, tb) in [(0, 0), (1, 0), (0, u32::MAX)] {
                    assert_eq!(
                        packed(*a, ta).cmp(&packed(*b, tb)),
                        (a, ta).cmp(&(b, tb)),
                        "{a:?} vs {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn queries_in_any_order_find_the_same_identities() {
        let pts: Vec<(usize, [f64; 2], u64)> = (0..400u64)
            .map(|i| {
                let f = (i % 2) as usize;
                let p = [
                    ((i * 53) % 97) as f64 * 0.31 - 12.0,
                    ((i * 29) % 89) as f64 * 0.27 - 9.0,
                ];
                (f, p, i)
            })
            .collect();
        let mut g = Grid::build(3.0, pts.iter().copied());
        g.insert(0, [0.5, 0.5], 1000);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (f, p, _) in pts.iter().step_by(7) {
            for r in [0.0, 0.8, 2.5, 7.0] {
                g.query_near(*f, *p, r, &mut a);
                g.query_near_any_order(*f, *p, r, &mut b);
                b.sort_unstable();
                b.dedup();
                assert_eq!(a, b, "floor {f} at {p:?} radius {r}");
                let want: Vec<u64> = pts
                    .iter()
                    .chain(std::iter::once(&(0, [0.5, 0.5], 1000)))
                    .filter(|(pf, q, _)| pf == f && dist(*q, *p) <= r)
                    .map(|(_, _, id)| *id)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                assert_eq!(a, want, "floor {f} at {p:?} radius {r}");
            }
        }
    }

    #[test]
    fn entries_sort_by_cell_then_id_in_or_out_of_id_order() {
        let pts: Vec<(usize, [f64; 2])> = (0..200)
            .map(|i| {
                (
                    i % 3,
                    [((i * 37) % 23) as f64 - 11.0, ((i * 11) % 17) as f64 - 8.0],
                )
            })
            .collect();
        for ids in [
            (0..200u64).collect::<Vec<_>>(),
            (0..200u64).rev().collect::<Vec<_>>(),
        ] {
            let g = Grid::build(2.0, pts.iter().zip(&ids).map(|((f, p), id)| (*f, *p, *id)));
            let mut want = g.entries.clone();
            want.sort_by_key(|e| (e.0, e.1));
            assert_eq!(g.entries, want);
        }
    }
}
