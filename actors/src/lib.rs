//! Camera, detector, track and spatial actors of nvr, and the pure algorithm
//! cores they wrap. Algorithms live in plain modules with no I/O; actors are
//! thin shells that receive a message, call the core and publish the result.

pub mod bus;
pub mod camera;
pub mod checkpoint;
pub mod detect;
pub mod detector;
pub mod guard;
pub mod overlay;
pub mod sim;
pub mod spatial;
pub mod spatial_actor;
pub mod status;
pub mod track;
pub mod track_actor;
pub mod video;
