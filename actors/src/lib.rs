//! Camera, detector, track and spatial actors of nvr, and the pure algorithm
//! cores they wrap. Algorithms live in plain modules with no I/O; actors are
//! thin shells that receive a message, call the core and publish the result.

pub mod detect;
pub mod sim;
pub mod spatial;
pub mod track;
pub mod video;
