//! Class-aware greedy non-maximum suppression.
