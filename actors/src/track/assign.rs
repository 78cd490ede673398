//! IoU and gated linear assignment. Pairs outside the gate are never
//! matched; the remaining problem is split into connected components (so a
//! scene of many separated objects costs little) and each component is solved
//! exactly with a linear sum assignment extended by "leave unmatched" dummies
//! (the `cost_limit` formulation of lapjv): a pair is matched only when that
//! lowers the total cost compared with leaving both sides unmatched.

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
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Union-find over rows (0..rows) and cols (rows..rows+cols).
    let mut parent: Vec<usize> = (0..rows + cols).collect();
    let mut any = false;
    for r in 0..rows {
        for c in 0..cols {
            if matches!(cost[r * cols + c], Some(v) if v < cost_limit) {
                any = true;
                let (a, b) = (find(&mut parent, r), find(&mut parent, rows + c));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    if !any {
        return Vec::new();
    }
    // Group members by component root, in index order (deterministic).
    let mut comp_rows: Vec<Vec<usize>> = vec![Vec::new(); rows + cols];
    let mut comp_cols: Vec<Vec<usize>> = vec![Vec::new(); rows + cols];
    for r in 0..rows {
        let root = find(&mut parent, r);
        comp_rows[root].push(r);
    }
    for c in 0..cols {
        let root = find(&mut parent, rows + c);
        comp_cols[root].push(c);
    }
    let mut out = Vec::new();
    for root in 0..rows + cols {
        let (rs, cs) = (&comp_rows[root], &comp_cols[root]);
        if rs.is_empty() || cs.is_empty() {
            continue;
        }
        if rs.len() == 1 && cs.len() == 1 {
            out.push((rs[0], cs[0]));
            continue;
        }
        solve_component(rs, cs, cols, cost, cost_limit, &mut out);
    }
    out.sort_unstable();
    out
}

fn solve_component(
    rs: &[usize],
    cs: &[usize],
    cols: usize,
    cost: &[Option<f64>],
    cost_limit: f64,
    out: &mut Vec<(usize, usize)>,
) {
    let (n, m) = (rs.len(), cs.len());
    let size = n + m;
    let big = 1e9;
    let half = cost_limit * 0.5;
    let mut ext = vec![0.0f64; size * size];
    for i in 0..size {
        for j in 0..size {
            ext[i * size + j] = if i < n && j < m {
                match cost[rs[i] * cols + cs[j]] {
                    Some(v) if v < cost_limit => v,
                    _ => big,
                }
            } else if i < n || j < m {
                half
            } else {
                0.0
            };
        }
    }
    let Ok((ri, ci)) = lsap::solve(size, size, &ext, false) else {
        // Only possible with non-finite costs, which are filtered above.
        return;
    };
    for (i, j) in ri.into_iter().zip(ci) {
        if i < n && j < m && ext[i * size + j] < cost_limit {
            out.push((rs[i], cs[j]));
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
}
