//! Reorder buffer for detections that arrive out of sequence order (several
//! detector nodes publish concurrently). Pure: driven by sequence numbers and
//! message timestamps only, never the wall clock.
//!
//! An item is released when it is contiguous with the last released sequence
//! number, or when it is older than the newest timestamp seen minus the
//! window (the gap before it is then given up on). Items pushed with a
//! sequence number already released (or passed over) are refused as [`Late`].

use std::collections::BTreeMap;

/// A pushed item's sequence number was already released, passed over, or is
/// held already (a duplicate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late;

impl std::fmt::Display for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("item arrived after its sequence number was released")
    }
}

impl std::error::Error for Late {}

/// Holds items keyed by sequence number until they can be released in order.
#[derive(Debug, Clone)]
pub struct ReorderBuffer<T> {
    /// How long (message time) a gap is waited for.
    window_ns: u64,
    /// Held items by sequence number: `(ts_ns, item)`.
    held: BTreeMap<u64, (u64, T)>,
    /// Highest sequence number released so far.
    last_released: Option<u64>,
    /// Newest timestamp pushed so far.
    max_ts: u64,
}

impl<T> ReorderBuffer<T> {
    /// A buffer that waits at most `window_ns` (message time) for a gap to fill.
    pub fn new(window_ns: u64) -> Self {
        ReorderBuffer {
            window_ns,
            held: BTreeMap::new(),
            last_released: None,
            max_ts: 0,
        }
    }

    /// Holds `item`. `Err(Late)` when `seq` <= the last released seq, or when
    /// `seq` is already held (a redelivered duplicate); the caller counts and
    /// drops it.
    pub fn push(&mut self, seq: u64, ts_ns: u64, item: T) -> Result<(), Late> {
        if self.last_released.is_some_and(|l| seq <= l) || self.held.contains_key(&seq) {
            return Err(Late);
        }
        self.max_ts = self.max_ts.max(ts_ns);
        self.held.insert(seq, (ts_ns, item));
        Ok(())
    }

    /// Items ready, in seq order: contiguous with the last released seq, or
    /// older than (newest ts seen - window).
    pub fn pop_ready(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            let ts = entry.get().0;
            let contiguous = self
                .last_released
                .is_some_and(|l| l.checked_add(1) == Some(seq));
            let expired = ts.saturating_add(self.window_ns) < self.max_ts;
            if !(contiguous || expired) {
                break;
            }
            let (_, item) = entry.remove();
            self.last_released = Some(seq);
            out.push(item);
        }
        out
    }

    /// Everything still held, in seq order (on idle or shutdown).
    pub fn flush(&mut self) -> Vec<T> {
        let held = std::mem::take(&mut self.held);
        if let Some((&seq, _)) = held.last_key_value() {
            self.last_released = Some(seq);
        }
        held.into_values().map(|(_, item)| item).collect()
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Highest sequence number released so far.
    pub fn last_released(&self) -> Option<u64> {
        self.last_released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRAME: u64 = 200_000_000;

    fn drain(buf: &mut ReorderBuffer<u64>, arrivals: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        for &s in arrivals {
            buf.push(s, s * FRAME, s).expect("not late");
            out.extend(buf.pop_ready());
        }
        out.extend(buf.flush());
        out
    }

    #[test]
    fn releases_contiguous_items_at_once() {
        let mut b = ReorderBuffer::new(10 * FRAME);
        b.push(1, FRAME, 1).unwrap();
        assert!(
            b.pop_ready().is_empty(),
            "first item waits: the sequence start is unknown"
        );
        b.push(3, 3 * FRAME, 3).unwrap();
        b.push(20, 20 * FRAME, 20).unwrap();
        assert_eq!(
            b.pop_ready(),
            vec![1, 3],
            "1 expired, 3 expired (gap 2 given up)"
        );
        assert_eq!(b.push(2, 2 * FRAME, 2), Err(Late));
        b.push(4, 4 * FRAME, 4).unwrap();
        assert_eq!(b.pop_ready(), vec![4]);
        assert_eq!(b.len(), 1);
        assert_eq!(b.flush(), vec![20]);
        assert_eq!(b.push(20, 20 * FRAME, 20), Err(Late));
        assert!(b.is_empty());
    }

    #[test]
    fn duplicates_are_refused() {
        let mut b = ReorderBuffer::new(FRAME);
        b.push(5, 5, "a").unwrap();
        assert_eq!(b.push(5, 5, "b"), Err(Late));
        assert_eq!(b.flush(), vec!["a"]);
    }

    proptest! {
        /// Arrivals delayed by less than the window give exactly the in-order output.
        #[test]
        fn shuffled_within_window_matches_in_order(
            n in 1usize..60,
            jitter in proptest::collection::vec(0u64..4 * FRAME, 60),
        ) {
            let window = 4 * FRAME;
            let in_order: Vec<u64> = (1..=n as u64).collect();
            let mut arrivals: Vec<(u64, u64)> =
                in_order.iter().map(|&s| (s * FRAME + jitter[s as usize - 1], s)).collect();
            arrivals.sort_unstable();
            let shuffled: Vec<u64> = arrivals.into_iter().map(|(_, s)| s).collect();
            let a = drain(&mut ReorderBuffer::new(window), &in_order);
            let b = drain(&mut ReorderBuffer::new(window), &shuffled);
            prop_assert_eq!(&a, &in_order);
            prop_assert_eq!(b, a);
        }

        /// Whatever the arrivals, output is strictly increasing, every accepted item
        /// comes out exactly once, and refused items are exactly those at or
        /// below the last released seq (or duplicates).
        #[test]
        fn output_strictly_increasing_and_late_rejected(
            pushes in proptest::collection::vec((0u64..80, 0u64..80), 0..120),
            window in 0u64..10,
        ) {
            let mut b = ReorderBuffer::new(window);
            let mut out = Vec::new();
            let mut accepted = Vec::new();
            for (i, &(seq, ts)) in pushes.iter().enumerate() {
                let expect_late = b.last_released().is_some_and(|l| seq <= l)
                    || accepted.contains(&seq) && !out.contains(&seq);
                let r = b.push(seq, ts, seq);
                if out.contains(&seq) { prop_assert_eq!(r, Err(Late)); }
                prop_assert_eq!(r.is_err(), expect_late || out.contains(&seq));
                if r.is_ok() { accepted.push(seq); }
                if i % 3 == 0 { out.extend(b.pop_ready()); }
            }
            out.extend(b.flush());
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]));
            let mut acc = accepted.clone();
            acc.sort_unstable();
            prop_assert_eq!(out, acc);
        }
    }
}
