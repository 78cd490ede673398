//! IoU and gated linear assignment. Pairs outside the gate are never
//! matched; the remaining problem is split into connected components (so a
//! scene of many separated objects costs little) and each component is solved
//! exactly with a linear sum assignment extended by "leave unmatched" dummies
//! (the `cost_limit` formulation of lapjv): a pair is matched only when that
//! lowers the total cost compared with leaving both sides unmatched.
//!
//! The costs come as a sparse list of allowed pairs ([`assign_sparse`]), so
//! building and splitting the problem costs time in proportion to the pairs
//! that pass the gate, not to rows x cols; [`Assigner`] keeps its buffers
//! between calls.

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    if inter <= 0.0 {
        return 0.0;
    }
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Minimum-cost matching of `rows` x `cols` with `cost[r * cols + c]`;
/// `None` entries are forbidden. A pair is kept only if its cost is below
/// `cost_limit`. Returns `(row, col)` pairs sorted by row.
pub fn assign(
    rows: usize,
    cols: usize,
    cost: &[Option<f64>],
    cost_limit: f64,
) -> Vec<(usize, usize)> {
    debug_assert_eq!(cost.len(), rows * cols);
    let mut edges = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            if let Some(v) = cost[r * cols + c] {
                edges.push((r, c, v));
            }
        }
    }
    Assigner::default().assign_sparse(rows, cols, &edges, cost_limit)
}

/// [`Assigner::assign_sparse`] with fresh buffers.
pub fn assign_sparse(
    rows: usize,
    cols: usize,
    edges: &[(usize, usize, f64)],
    cost_limit: f64,
) -> Vec<(usize, usize)> {
    Assigner::default().assign_sparse(rows, cols, edges, cost_limit)
}

/// Reusable buffers of the gated assignment.
#[derive(Debug, Clone, Default)]
pub struct Assigner {
    /// Union-find parents over rows (`0..rows`) and cols (`rows..rows+cols`).
    parent: Vec<usize>,
    /// Position of each row / col inside its component.
    local: Vec<usize>,
    /// Rows of each component (by root), in index order.
    comp_rows: Vec<Vec<usize>>,
    /// Columns of each component.
    comp_cols: Vec<Vec<usize>>,
    /// Edges below the limit, grouped by component root.
    comp_edges: Vec<Vec<(usize, usize, f64)>>,
    /// The extended square cost matrix of one component.
    ext: Vec<f64>,
}

impl Assigner {
    /// Minimum-cost matching of `rows` x `cols` over the allowed pairs
    /// `edges` (`(row, col, cost)`, each pair at most once; pairs not listed
    /// are forbidden). A pair is kept only if its cost is below `cost_limit`.
    /// Returns `(row, col)` pairs sorted by row. Equivalent to [`assign`] on
    /// the dense matrix holding the same entries.
    pub fn assign_sparse(
        &mut self,
        rows: usize,
        cols: usize,
        edges: &[(usize, usize, f64)],
        cost_limit: f64,
    ) -> Vec<(usize, usize)> {
        if rows == 0 || cols == 0 {
            return Vec::new();
        }
        let n = rows + cols;
        self.parent.clear();
        self.parent.extend(0..n);
        let mut any = false;
        for &(r, c, v) in edges {
            debug_assert!(r < rows && c < cols);
            if v < cost_limit {
                any = true;
                let (a, b) = (find(&mut self.parent, r), find(&mut self.parent, rows + c));
                if a != b {
                    // The root of a component is always its smallest member.
                    self.parent[a.max(b)] = a.min(b);
                }
            }
        }
        if !any {
            return Vec::new();
        }
        if self.comp_rows.len() < n {
            self.comp_rows.resize_with(n, Vec::new);
            self.comp_cols.resize_with(n, Vec::new);
            self.comp_edges.resize_with(n, Vec::new);
        }
        for i in 0..n {
            self.comp_rows[i].clear();
            self.comp_cols[i].clear();
            self.comp_edges[i].clear();
        }
        self.local.clear();
        self.local.resize(n, 0);
        // Members by component root, in index order (deterministic).
        for r in 0..rows {
            let root = find(&mut self.parent, r);
            self.local[r] = self.comp_rows[root].len();
            self.comp_rows[root].push(r);
        }
        for c in 0..cols {
            let root = find(&mut self.parent, rows + c);
            self.local[rows + c] = self.comp_cols[root].len();
            self.comp_cols[root].push(c);
        }
        for &(r, c, v) in edges {
            if v < cost_limit {
                let root = find(&mut self.parent, r);
                self.comp_edges[root].push((self.local[r], self.local[rows + c], v));
            }
        }
        let mut out = Vec::new();
        for root in 0..n {
            let (nr, nc) = (self.comp_rows[root].len(), self.comp_cols[root].len());
            if nr == 0 || nc == 0 {
                continue;
            }
            if nr == 1 && nc == 1 {
                out.push((self.comp_rows[root][0], self.comp_cols[root][0]));
                continue;
            }
            self.solve_component(root, cost_limit, &mut out);
        }
        out.sort_unstable();
        out
    }

    fn solve_component(&mut self, root: usize, cost_limit: f64, out: &mut Vec<(usize, usize)>) {
        let (rs, cs) = (&self.comp_rows[root], &self.comp_cols[root]);
        let (n, m) = (rs.len(), cs.len());
        let size = n + m;
        let big = 1e9;
        let half = cost_limit * 0.5;
        self.ext.clear();
        self.ext.resize(size * size, 0.0);
        for i in 0..size {
            for j in 0..size {
                self.ext[i * size + j] = if i < n && j < m {
                    big
                } else if i < n || j < m {
                    half
                } else {
                    0.0
                };
            }
        }
        for &(i, j, v) in &self.comp_edges[root] {
            self.ext[i * size + j] = v;
        }
        let Ok((ri, ci)) = lsap::solve(size, size, &self.ext, false) else {
            // Only possible with non-finite costs, which are filtered above.
            return;
        };
        for (i, j) in ri.into_iter().zip(ci) {
            if i < n && j < m && self.ext[i * size + j] < cost_limit {
                out.push((rs[i], cs[j]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_basics() {
        assert_eq!(iou([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]), 0.0);
        assert!((iou([0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]), 1.0);
    }

    #[test]
    fn picks_global_optimum_not_greedy() {
        // Greedy would take (0,0) at 0.1 and force (1,1) at 0.9; optimum is the cross.
        let cost = vec![Some(0.1), Some(0.2), Some(0.2), Some(0.9)];
        assert_eq!(assign(2, 2, &cost, 1.0), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn respects_gate_and_limit() {
        let cost = vec![None, Some(0.3), Some(0.95), None];
        assert_eq!(assign(2, 2, &cost, 0.9), vec![(0, 1)]);
        assert!(assign(1, 1, &[None], 1.0).is_empty());
    }

    #[test]
    fn rectangular_and_separate_components() {
        let cost = vec![
            Some(0.5),
            None,
            None,
            None,
            None,
            Some(0.2),
            None,
            None,
            Some(0.1),
        ];
        assert_eq!(assign(3, 3, &cost, 1.0), vec![(0, 0), (2, 2)]);
        let cost = vec![Some(0.5), Some(0.1), Some(0.3)];
        assert_eq!(assign(1, 3, &cost, 1.0), vec![(0, 1)]);
    }

    /// Least total cost over every matching of the allowed pairs below
    /// `limit`, each unmatched row and column costing `limit / 2`.
    fn brute_force(rows: usize, cols: usize, edges: &[(usize, usize, f64)], limit: f64) -> f64 {
        fn go(
            r: usize,
            rows: usize,
            cols_used: &mut Vec<bool>,
            edges: &[(usize, usize, f64)],
            limit: f64,
        ) -> f64 {
            if r == rows {
                return cols_used.iter().filter(|u| !**u).count() as f64 * limit * 0.5;
            }
            // Row r unmatched.
            let mut best = limit * 0.5 + go(r + 1, rows, cols_used, edges, limit);
            for &(er, c, v) in edges {
                if er == r && v < limit && !cols_used[c] {
                    cols_used[c] = true;
                    best = best.min(v + go(r + 1, rows, cols_used, edges, limit));
                    cols_used[c] = false;
                }
            }
            best
        }
        go(0, rows, &mut vec![false; cols], edges, limit)
    }

    fn total(
        rows: usize,
        cols: usize,
        edges: &[(usize, usize, f64)],
        pairs: &[(usize, usize)],
        limit: f64,
    ) -> f64 {
        let matched: f64 = pairs
            .iter()
            .map(|&(r, c)| {
                edges
                    .iter()
                    .find(|e| e.0 == r && e.1 == c)
                    .map(|e| e.2)
                    .unwrap_or(f64::INFINITY)
            })
            .sum();
        matched + (rows + cols - 2 * pairs.len()) as f64 * limit * 0.5
    }

    proptest::proptest! {
        #[test]
        fn sparse_assignment_is_optimal_and_independent_of_edge_order(
            rows in 1usize..6,
            cols in 1usize..6,
            cells in proptest::collection::vec(proptest::option::weighted(0.5, 0.0f64..1.2), 36),
            rotate in 0usize..36,
        ) {
            let limit = 1.0;
            let mut edges = Vec::new();
            for r in 0..rows {
                for c in 0..cols {
                    if let Some(v) = cells[r * 6 + c] {
                        edges.push((r, c, v));
                    }
                }
            }
            let got = assign_sparse(rows, cols, &edges, limit);
            // Each row and column at most once, every pair allowed and below the limit.
            let mut rs: Vec<usize> = got.iter().map(|p| p.0).collect();
            let mut cs: Vec<usize> = got.iter().map(|p| p.1).collect();
            rs.dedup();
            cs.sort_unstable();
            cs.dedup();
            proptest::prop_assert_eq!(rs.len(), got.len());
            proptest::prop_assert_eq!(cs.len(), got.len());
            let t = total(rows, cols, &edges, &got, limit);
            proptest::prop_assert!(t.is_finite());
            let best = brute_force(rows, cols, &edges, limit);
            proptest::prop_assert!((t - best).abs() < 1e-9, "total {} vs optimum {}", t, best);
            // The order the pairs are listed in changes nothing.
            if !edges.is_empty() {
                let k = rotate % edges.len();
                edges.rotate_left(k);
                edges.reverse();
            }
            proptest::prop_assert_eq!(assign_sparse(rows, cols, &edges, limit), got);
        }
    }
}
