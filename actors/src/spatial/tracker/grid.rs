//! Floor geometry helpers: distances, the spatial hash that keeps gating
//! local, and union-find for splitting an assignment into components.

use std::collections::HashMap;

use super::{SpatialTracker, LIVE_WINDOW_S, MAX_SPEED_MPS};

pub(super) fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

pub(super) fn cell_of(p: [f64; 2], cell: f64) -> (i32, i32) {
    (
        (p[0] / cell).floor().clamp(-1e9, 1e9) as i32,
        (p[1] / cell).floor().clamp(-1e9, 1e9) as i32,
    )
}

/// Spatial hash of identity positions; lookups return sorted ids.
pub(super) struct Grid {
    pub(super) cell: f64,
    pub(super) cells: HashMap<(usize, i32, i32), Vec<u64>>,
}

impl Grid {
    pub(super) fn insert(&mut self, floor: usize, p: [f64; 2], id: u64) {
        let (cx, cy) = cell_of(p, self.cell);
        self.cells.entry((floor, cx, cy)).or_default().push(id);
    }

    pub(super) fn query(&self, floor: usize, p: [f64; 2], radius: f64, out: &mut Vec<u64>) {
        out.clear();
        if self.cells.is_empty() {
            return;
        }
        let (cx, cy) = cell_of(p, self.cell);
        let r = (radius / self.cell).ceil() as i32;
        for dx in -r..=r {
            for dy in -r..=r {
                if let Some(v) =
                    self.cells
                        .get(&(floor, cx.saturating_add(dx), cy.saturating_add(dy)))
                {
                    out.extend_from_slice(v);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
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
    pub(super) fn query(&mut self, floor: usize, p: [f64; 2], out: &mut Vec<u64>) {
        self.live.query(floor, p, self.r_live, out);
        self.lost.query(floor, p, self.r_lost, &mut self.tmp);
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
        let mut grid = TwoGrids {
            live: Grid {
                cell: 3.0,
                cells: HashMap::new(),
            },
            lost: Grid {
                cell: 8.0,
                cells: HashMap::new(),
            },
            r_live: self.params.gate_m
                + 0.5 * LIVE_WINDOW_S * (self.params.max_speed_mps + MAX_SPEED_MPS),
            r_lost: self.params.gate_m + self.params.max_handoff_radius_m.max(0.0) + MAX_SPEED_MPS,
            tmp: Vec::new(),
        };
        for (gid, g) in &self.globals {
            let unseen_s = ts_ns.saturating_sub(g.last_seen) as f64 / 1e9;
            if unseen_s <= LIVE_WINDOW_S * 0.5 {
                grid.live.insert(g.floor_idx, g.pos, *gid);
            } else if unseen_s <= self.params.max_gap_seconds + 1.0 {
                grid.lost.insert(g.floor_idx, g.pos, *gid);
            }
        }
        grid
    }
}
