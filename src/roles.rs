//! Users and least-privilege permissions of the embedded nats-server, one
//! per role, so that scaling out never means exposing NATS without
//! authentication:
//!
//! | user | may publish | may subscribe |
//! |---|---|---|
//! | `nvr` | everything (the `nvr run` process that owns the server) | everything |
//! | `camera` | `nvr.frames.>` | its replies |
//! | `detection` | `nvr.detections.>`, pulls and acks on the `detectors` consumer, its service subjects | its replies, `nvr.status.detection`, `$SRV.>` |
//! | `spatial` | `nvr.tracks.>`, `nvr.spatial.>`, `nvr.events.>`, its durable consumers on detections and tracks, its service subjects | its replies, `nvr.status.spatial`, `$SRV.>` |
//! | `observer` | read-only look-ups (stream and consumer info, status requests) | `nvr.>` |
//!
//! Every role may also read stream information (to check that the streams
//! exist) and answer on `_INBOX.>`. Passwords are generated once per store
//! directory and kept in `<store_dir>/roles/<role>.password` (mode 0600);
//! a remote node uses them as `NATS_USER` / `NATS_PASSWORD`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The roles, in the order they are written.
pub const ROLES: &[&str] = &["nvr", "camera", "detection", "spatial", "observer"];

/// Read-only JetStream look-ups every role needs to check the bus.
const LOOKUPS: &[&str] = &[
    "$JS.API.INFO",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.CONSUMER.INFO.NVR_FRAMES.detectors",
];

/// `(publish, subscribe)` subject lists of a role.
pub fn permissions(role: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut publish: Vec<&'static str> = LOOKUPS.to_vec();
    let mut subscribe = vec!["_INBOX.>"];
    match role {
        "nvr" => return (vec![">"], vec![">"]),
        "camera" => publish.push("nvr.frames.>"),
        "detection" => {
            publish.extend([
                "nvr.detections.>",
                "$JS.API.CONSUMER.MSG.NEXT.NVR_FRAMES.detectors",
                "$JS.ACK.NVR_FRAMES.detectors.>",
                "$SRV.>",
                "_INBOX.>",
            ]);
            subscribe.extend(["nvr.status.detection", "$SRV.>"]);
        }
        "spatial" => {
            publish.extend([
                "nvr.tracks.>",
                "nvr.spatial.>",
                "nvr.events.>",
                "$JS.API.CONSUMER.CREATE.NVR_DETECTIONS.>",
                "$JS.API.CONSUMER.CREATE.NVR_TRACKS.>",
                "$JS.API.CONSUMER.DURABLE.CREATE.NVR_DETECTIONS.>",
                "$JS.API.CONSUMER.DURABLE.CREATE.NVR_TRACKS.>",
                "$JS.API.CONSUMER.INFO.NVR_DETECTIONS.>",
                "$JS.API.CONSUMER.INFO.NVR_TRACKS.>",
                "$JS.API.CONSUMER.MSG.NEXT.NVR_DETECTIONS.>",
                "$JS.API.CONSUMER.MSG.NEXT.NVR_TRACKS.>",
                "$JS.ACK.NVR_DETECTIONS.>",
                "$JS.ACK.NVR_TRACKS.>",
                "$JS.API.STREAM.MSG.GET.*",
                "$JS.API.DIRECT.GET.>",
                "$SRV.>",
                "_INBOX.>",
            ]);
            subscribe.extend(["nvr.status.spatial", "$SRV.>"]);
        }
        "observer" => {
            publish.extend(["$JS.API.CONSUMER.INFO.>", "nvr.status.>", "$SRV.>"]);
            subscribe.extend(["nvr.>", "$SRV.>"]);
        }
        _ => return (Vec::new(), Vec::new()),
    }
    (publish, subscribe)
}

/// Where the password of `role` is kept.
pub fn password_file(store_dir: &str, role: &str) -> PathBuf {
    Path::new(store_dir)
        .join("roles")
        .join(format!("{role}.password"))
}

/// The password of `role`, generated and stored on first use.
pub fn password(store_dir: &str, role: &str) -> Result<String> {
    let path = password_file(store_dir, role);
    if let Ok(p) = std::fs::read_to_string(&path) {
        let p = p.trim().to_string();
        if !p.is_empty() {
            return Ok(p);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = [0u8; 18];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let p: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &p)?;
    Ok(p)
}

/// Writes `text` readable by this user only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The nats-server configuration (an `authorization` block) for the roles,
/// with their passwords.
pub fn server_config(store_dir: &str) -> Result<String> {
    let mut users = String::new();
    for role in ROLES {
        let (publish, subscribe) = permissions(role);
        users.push_str(&format!(
            "    {{ user: {role:?}, password: {:?}, permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }} }}\n",
            password(store_dir, role)?,
            quote_list(&publish),
            quote_list(&subscribe)
        ));
    }
    Ok(format!(
        "# Generated by nvr: one user per role, least privilege (see README.md).\nauthorization {{\n  users: [\n{users}  ]\n}}\n"
    ))
}

/// Writes the server configuration (and `extra`, such as the MQTT block, at
/// its end) next to the store and returns its path.
pub fn write_server_config(store_dir: &str, extra: Option<&str>) -> Result<PathBuf> {
    let path = Path::new(store_dir).join("roles").join("nats-server.conf");
    let text = server_config(store_dir)? + extra.unwrap_or_default();
    write_private(&path, &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_get_least_privilege() {
        let (p, s) = permissions("camera");
        assert!(p.contains(&"nvr.frames.>"));
        assert!(!p.iter().any(|x| x.starts_with("nvr.detections")));
        assert_eq!(s, vec!["_INBOX.>"]);
        let (p, s) = permissions("observer");
        assert!(!p.iter().any(|x| x.starts_with("nvr.frames")));
        assert!(s.contains(&"nvr.>"));
        assert_eq!(permissions("nvr"), (vec![">"], vec![">"]));
        assert_eq!(permissions("nobody"), (vec![], vec![]));
    }

    #[test]
    fn passwords_are_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let a = password(d, "camera").unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(password(d, "camera").unwrap(), a);
        assert_ne!(password(d, "spatial").unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(password_file(d, "camera"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let conf = server_config(d).unwrap();
        assert!(conf.contains("user: \"observer\""));
        assert!(conf.contains(&a));
    }
}
