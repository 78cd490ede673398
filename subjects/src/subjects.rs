//! Subject builders and the validation of the tokens that go into them.

use std::fmt;

/// Prefix of every subject of the contract.
pub const PREFIX: &str = "nvr";

/// Why a name cannot be used as a subject token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken {
    /// The offending name.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.name, self.reason)
    }
}

impl std::error::Error for InvalidToken {}

/// Checks that `name` can be one subject token: 1..=64 characters of
/// `A-Z a-z 0-9 _ -`.
pub fn validate_token(name: &str) -> Result<(), InvalidToken> {
    let bad = |reason| {
        Err(InvalidToken {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 64 {
        return bad("is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("may only contain letters, digits, '_' and '-'");
    }
    Ok(())
}

/// `nvr.frames.<camera>`
pub fn frames(camera: &str) -> String {
    format!("{PREFIX}.frames.{camera}")
}

/// `nvr.detections.<camera>`
pub fn detections(camera: &str) -> String {
    format!("{PREFIX}.detections.{camera}")
}

/// `nvr.tracks.<camera>`
pub fn tracks(camera: &str) -> String {
    format!("{PREFIX}.tracks.{camera}")
}

/// `nvr.spatial.<shard>.tracks`
pub fn spatial_tracks(shard: &str) -> String {
    format!("{PREFIX}.spatial.{shard}.tracks")
}

/// `nvr.snapshots.<camera>.<seq>`: the JPEG of the frame a `track_started`
/// event refers to.
pub fn snapshot(camera: &str, seq: u64) -> String {
    format!("{PREFIX}.snapshots.{camera}.{seq}")
}

/// `nvr.state.<kind>.<name>`: checkpoints of a live tracker (`tracker`,
/// named by camera) or spatial shard (`shard`, named by shard).
pub fn state(kind: &str, name: &str) -> String {
    format!("{PREFIX}.state.{kind}.{name}")
}

/// `nvr.events.<kind>.<scope>`; the scope is a camera id or a shard name.
pub fn events(kind: &str, scope: &str) -> String {
    format!("{PREFIX}.events.{kind}.{scope}")
}

/// Wildcards matching every subject of one family.
pub mod all {
    /// Every frame subject.
    pub const FRAMES: &str = "nvr.frames.*";
    /// Every detections subject.
    pub const DETECTIONS: &str = "nvr.detections.*";
    /// Every per-camera tracks subject.
    pub const TRACKS: &str = "nvr.tracks.*";
    /// Every spatial tracks subject.
    pub const SPATIAL: &str = "nvr.spatial.*.tracks";
    /// Every event subject.
    pub const EVENTS: &str = "nvr.events.>";
    /// Event snapshots (JPEG).
    pub const SNAPSHOTS: &str = "nvr.snapshots.>";
    /// Checkpoints of live trackers and shards.
    pub const STATE: &str = "nvr.state.>";
}

/// Which message a concrete subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// [`crate::Frame`]
    Frames,
    /// [`crate::Detections`]
    Detections,
    /// [`crate::CameraTracks`]
    Tracks,
    /// [`crate::SpatialTracks`]
    Spatial,
    /// [`crate::Event`]
    Events,
}

/// The family of a concrete subject, if it belongs to the contract.
pub fn family(subject: &str) -> Option<Family> {
    let mut parts = subject.split('.');
    if parts.next() != Some(PREFIX) {
        return None;
    }
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("frames"), Some(_), None, None) => Some(Family::Frames),
        (Some("detections"), Some(_), None, None) => Some(Family::Detections),
        (Some("tracks"), Some(_), None, None) => Some(Family::Tracks),
        (Some("spatial"), Some(_), Some("tracks"), None) => Some(Family::Spatial),
        (Some("events"), Some(_), Some(_), None) => Some(Family::Events),
        _ => None,
    }
}

/// The camera token of `nvr.<family>.<camera>`, if present.
pub fn camera_of(subject: &str) -> Option<&str> {
    match family(subject)? {
        Family::Frames | Family::Detections | Family::Tracks => subject.rsplit('.').next(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_family_round_trip() {
        assert_eq!(frames("cam1"), "nvr.frames.cam1");
        assert_eq!(family(&frames("cam1")), Some(Family::Frames));
        assert_eq!(family(&detections("c")), Some(Family::Detections));
        assert_eq!(family(&tracks("c")), Some(Family::Tracks));
        assert_eq!(family(&spatial_tracks("floor1")), Some(Family::Spatial));
        assert_eq!(family(&events("handoff", "floor1")), Some(Family::Events));
        assert_eq!(family("nvr.frames"), None);
        assert_eq!(family("other.frames.x"), None);
        assert_eq!(camera_of("nvr.detections.front_door"), Some("front_door"));
    }

    #[test]
    fn tokens_are_validated() {
        assert!(validate_token("front_door-2").is_ok());
        assert!(validate_token("").is_err());
        assert!(validate_token("a.b").is_err());
        assert!(validate_token("a*").is_err());
        assert!(validate_token("a b").is_err());
        assert!(validate_token(&"x".repeat(65)).is_err());
    }
}
