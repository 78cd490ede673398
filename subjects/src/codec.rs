//! The MessagePack codec: named-field maps, schema-version checked.

use serde::{de::DeserializeOwned, Serialize};

use crate::SCHEMA_VERSION;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a MessagePack map of the expected shape.
    #[error("malformed message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// Encoding failed (only on values serde cannot represent).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The schema version is one this build does not read.
    #[error("unsupported schema version {0} (this build reads {SCHEMA_VERSION})")]
    Version(u32),
}

/// A message of the contract: knows its schema version.
pub trait Message: Serialize + DeserializeOwned {
    /// The `v` field.
    fn version(&self) -> u32;
    /// What the message is, for the `Nvr-Kind` header: `frame`,
    /// `detections`, `tracks`, `spatial_tracks` or the event's kind.
    fn kind(&self) -> &str;
    /// The camera (or, for spatial messages, the shard) it is about.
    fn scope(&self) -> Option<&str>;
    /// Its per-camera sequence number, where it has one.
    fn seq(&self) -> Option<u64>;
}

macro_rules! impl_camera_message {
    ($($t:ty => $kind:literal),*) => {$(
        impl Message for $t {
            fn version(&self) -> u32 {
                self.v
            }
            fn kind(&self) -> &str {
                $kind
            }
            fn scope(&self) -> Option<&str> {
                Some(&self.camera)
            }
            fn seq(&self) -> Option<u64> {
                Some(self.seq)
            }
        }
    )*};
}
impl_camera_message!(
    crate::Frame => "frame",
    crate::Detections => "detections",
    crate::CameraTracks => "tracks"
);

impl Message for crate::SpatialTracks {
    fn version(&self) -> u32 {
        self.v
    }
    fn kind(&self) -> &str {
        "spatial_tracks"
    }
    fn scope(&self) -> Option<&str> {
        Some(&self.shard)
    }
    fn seq(&self) -> Option<u64> {
        None
    }
}

impl Message for crate::Event {
    fn version(&self) -> u32 {
        self.v
    }
    fn kind(&self) -> &str {
        &self.kind
    }
    fn scope(&self) -> Option<&str> {
        self.camera.as_deref().or(self.shard.as_deref())
    }
    fn seq(&self) -> Option<u64> {
        None
    }
}

impl Message for crate::Checkpoint {
    fn version(&self) -> u32 {
        self.v
    }
    fn kind(&self) -> &str {
        "checkpoint"
    }
    fn scope(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn seq(&self) -> Option<u64> {
        (self.kind == crate::checkpoint_kind::TRACKER).then_some(self.seq)
    }
}

/// Encodes `msg` as a MessagePack map with named fields.
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(msg)?)
}

/// Decodes a message and checks its schema version. Never panics.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, CodecError> {
    let msg: M = rmp_serde::from_slice(bytes)?;
    if msg.version() != SCHEMA_VERSION {
        return Err(CodecError::Version(msg.version()));
    }
    Ok(msg)
}
