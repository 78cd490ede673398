//! Time-aware constant-velocity Kalman filter on box centre and size.
