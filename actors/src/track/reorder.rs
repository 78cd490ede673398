//! Reorder buffer for detections that arrive out of sequence order.

/// A pushed item's sequence number was already released (or passed).
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
    window_ns: u64,
    held: std::collections::BTreeMap<u64, (u64, T)>,
}

impl<T> ReorderBuffer<T> {
    /// A buffer that waits at most `window_ns` (message time) for a gap to fill.
    pub fn new(window_ns: u64) -> Self {
        ReorderBuffer { window_ns, held: Default::default() }
    }

    /// Err(Late) when `seq` <= the last released seq.
    pub fn push(&mut self, seq: u64, ts_ns: u64, item: T) -> Result<(), Late> {
        let _ = (seq, ts_ns, item, self.window_ns);
        todo!()
    }

    /// Items ready in seq order.
    pub fn pop_ready(&mut self) -> Vec<T> {
        todo!()
    }

    /// Everything still held, in seq order.
    pub fn flush(&mut self) -> Vec<T> {
        todo!()
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
