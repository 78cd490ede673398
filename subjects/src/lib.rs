//! The wire contract of nvr: subject names, JetStream stream and consumer
//! definitions, message structs and their MessagePack codec.
//!
//! This crate has no runtime (no tokio, no NATS client): a client in any
//! language can implement the same contract from `subjects/README.md`.

pub mod codec;
pub mod messages;
pub mod streams;
pub mod subjects;

pub use codec::{decode, encode, CodecError, Message};
pub use messages::*;

/// Schema version carried in field `v` of every message.
pub const SCHEMA_VERSION: u32 = 1;

/// Header carrying the JetStream de-duplication id (`<camera>-<seq>`).
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header naming the payload encoding.
pub const HEADER_CONTENT_TYPE: &str = "Content-Type";
/// Value of [`HEADER_CONTENT_TYPE`] on every message of the contract.
pub const CONTENT_TYPE_MSGPACK: &str = "application/msgpack";

/// The de-duplication id of a frame or detections message.
pub fn msg_id(camera: &str, seq: u64) -> String {
    format!("{camera}-{seq}")
}
