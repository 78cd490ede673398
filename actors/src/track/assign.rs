//! IoU cost and linear assignment.
