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
/// Header naming what a message is ([`Message::kind`]): `frame`,
/// `detections`, `tracks`, `spatial_tracks` or an event kind.
pub const HEADER_KIND: &str = "Nvr-Kind";
/// Header naming the camera (or spatial shard) a message is about.
pub const HEADER_CAMERA: &str = "Nvr-Camera";
/// Header with a camera message's sequence number.
pub const HEADER_SEQ: &str = "Nvr-Seq";
/// Header with the schema version (`v`) of the payload.
pub const HEADER_SCHEMA: &str = "Nvr-Schema";
/// Value of [`HEADER_CONTENT_TYPE`] on every message of the contract.
pub const CONTENT_TYPE_MSGPACK: &str = "application/msgpack";

/// The de-duplication id of a frame or detections message.
pub fn msg_id(camera: &str, seq: u64) -> String {
    format!("{camera}-{seq}")
}
