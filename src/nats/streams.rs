//! The contract's JetStream streams and the shared `detectors` consumer:
//! their settings, and their idempotent creation, patient with a cluster
//! that is still electing leaders.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind, RequestError,
    RequestErrorKind,
};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{self, consumer, stream};
use nvr_subjects::streams::{self as spec, Discard, Retention, RetentionSettings, Storage};
use tracing::{info, warn};

use crate::config::Config;

/// The retention settings the configuration asks for.
pub fn retention(cfg: &Config) -> RetentionSettings {
    let r = &cfg.nats.retention;
    RetentionSettings {
        frames_max_age: Duration::from_millis(r.frames_max_age_ms),
        frames_per_camera: r.frames_per_camera,
        max_age: Duration::from_secs_f64(r.max_age_hours * 3600.0),
        max_bytes: if r.max_bytes_mb < 0 {
            -1
        } else {
            r.max_bytes_mb.saturating_mul(1024 * 1024)
        },
        snapshots_max_bytes: if r.snapshots_max_mb < 0 {
            -1
        } else {
            r.snapshots_max_mb.saturating_mul(1024 * 1024)
        },
        replicas: cfg.nats.replicas,
    }
}

/// The client configuration of a contract stream.
pub fn stream_config(s: &spec::StreamSpec) -> stream::Config {
    stream::Config {
        name: s.name.to_string(),
        description: stream_description(s.name).map(str::to_string),
        subjects: s.subjects.clone(),
        retention: match s.retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        },
        storage: match s.storage {
            Storage::Memory => stream::StorageType::Memory,
            Storage::File => stream::StorageType::File,
        },
        max_age: s.max_age,
        max_bytes: s.max_bytes,
        max_messages_per_subject: s.max_msgs_per_subject,
        discard: match s.discard {
            Discard::Old => stream::DiscardPolicy::Old,
            Discard::New => stream::DiscardPolicy::New,
        },
        discard_new_per_subject: matches!(s.discard, Discard::New) && s.max_msgs_per_subject > 0,
        num_replicas: s.replicas,
        duplicate_window: s.duplicate_window,
        ..Default::default()
    }
}

/// What [`ensure_streams`] did to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAction {
    /// It did not exist and was created.
    Created,
    /// It existed with other settings and was updated.
    Updated,
    /// It existed with the wanted settings.
    Unchanged,
}

/// Whether two stream configurations agree on the fields this contract sets.
fn same_settings(a: &stream::Config, b: &stream::Config) -> bool {
    a.subjects == b.subjects
        && a.retention == b.retention
        && a.storage == b.storage
        && a.max_age == b.max_age
        && a.max_bytes == b.max_bytes
        && a.max_messages_per_subject == b.max_messages_per_subject
        && a.discard == b.discard
        && a.discard_new_per_subject == b.discard_new_per_subject
        && a.num_replicas == b.num_replicas
        && a.duplicate_window == b.duplicate_window
        && a.description == b.description
}

/// What a contract stream holds, for `nats stream ls` and `nats stream info`.
fn stream_description(name: &str) -> Option<&'static str> {
    Some(match name {
        spec::FRAMES => "nvr camera frames (MessagePack Frame) waiting for the detectors consumer",
        spec::DETECTIONS => {
            "nvr detections per frame (MessagePack Detections), one subject per camera"
        }
        spec::TRACKS => "nvr per-camera tracks (MessagePack CameraTracks), one subject per camera",
        spec::SPATIAL => "nvr global floor tracks per spatial shard (MessagePack SpatialTracks)",
        spec::EVENTS => {
            "nvr events (MessagePack Event): track and global starts and ends, handoffs"
        }
        spec::SNAPSHOTS => {
            "nvr event snapshots: JPEG of the frame a track_started event refers to, per camera and seq"
        }
        spec::STATE => {
            "nvr checkpoints (MessagePack Checkpoint) of live trackers and spatial shards, where replays start"
        }
        _ => return None,
    })
}

/// Creates or updates every stream of the contract and the `detectors`
/// consumer. Idempotent: a second call with the same settings changes nothing.
///
/// A JetStream cluster that has just formed, or just lost a member, answers
/// some requests with a time-out or "not available" while it elects leaders;
/// each step is tried again on those answers for up to [`SETUP_PATIENCE`].
/// Any other refusal (permissions, settings that cannot change) ends the
/// call at once.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &RetentionSettings,
) -> Result<Vec<(String, StreamAction)>> {
    let mut out = Vec::new();
    for s in spec::all_streams(settings) {
        let want = stream_config(&s);
        let action = while_transient(&format!("stream {}", s.name), || {
            ensure_stream(js, s.name, &want)
        })
        .await?;
        info!(stream = s.name, ?action, "stream ready");
        out.push((s.name.to_string(), action));
    }
    while_transient(&format!("consumer {}", spec::DETECTORS_CONSUMER), || {
        ensure_detectors_consumer(js)
    })
    .await?;
    Ok(out)
}

/// Creates stream `name` with `want`, or updates it to `want`.
async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    want: &stream::Config,
) -> Result<StreamAction> {
    Ok(match js.get_stream(name).await {
        Ok(mut existing) => {
            let have = existing
                .info()
                .await
                .with_context(|| format!("reading stream {name}"))?
                .config
                .clone();
            if same_settings(&have, want) {
                StreamAction::Unchanged
            } else if have.retention != want.retention || have.storage != want.storage {
                bail!(
                    "stream {} exists with retention {:?} / storage {:?}, which cannot be changed to {:?} / {:?}; delete it (nats stream rm {}) and start again",
                    name, have.retention, have.storage, want.retention, want.storage, name
                );
            } else {
                js.update_stream(want.clone())
                    .await
                    .with_context(|| format!("updating stream {name}"))?;
                StreamAction::Updated
            }
        }
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(want.clone())
                .await
                .with_context(|| format!("creating stream {name}"))?;
            StreamAction::Created
        }
        Err(e) => return Err(e).with_context(|| format!("looking up stream {name}")),
    })
}

/// How long stream and consumer set-up keeps trying through a cluster's
/// leader elections before it gives up.
pub const SETUP_PATIENCE: Duration = Duration::from_secs(30);

/// Runs `step` until it succeeds, fails for a reason that waiting cannot
/// change, or [`SETUP_PATIENCE`] has passed.
async fn while_transient<T, F, Fut>(what: &str, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + SETUP_PATIENCE;
    let mut pause = Duration::from_millis(250);
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && tokio::time::Instant::now() + pause < deadline => {
                warn!("{what}: {e:#}; the JetStream cluster may be electing a leader, trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// JetStream answers that mean "not now" rather than "no": the cluster has
/// no leader for the asset yet, or the request timed out.
fn transient_code(code: jetstream::ErrorCode) -> bool {
    use jetstream::ErrorCode as C;
    [
        C::CLUSTER_NOT_AVAILABLE,
        C::CLUSTER_INCOMPLETE,
        C::CLUSTER_NOT_LEADER,
        C::CLUSTER_NOT_ACTIVE,
        C::CLUSTER_NOT_ASSIGNED,
        C::CLUSTER_NO_PEERS,
    ]
    .contains(&code)
}

/// Whether an error from stream or consumer set-up may go away by waiting.
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        if let Some(x) = c.downcast_ref::<GetStreamError>() {
            return match x.kind() {
                GetStreamErrorKind::Request => true,
                GetStreamErrorKind::JetStream(j) => transient_code(j.error_code()),
                _ => false,
            };
        }
        if let Some(x) = c.downcast_ref::<CreateStreamError>() {
            return match x.kind() {
                CreateStreamErrorKind::TimedOut => true,
                CreateStreamErrorKind::JetStream(j) => transient_code(j.error_code()),
                _ => false,
            };
        }
        if let Some(x) = c.downcast_ref::<RequestError>() {
            return matches!(
                x.kind(),
                RequestErrorKind::TimedOut | RequestErrorKind::NoResponders
            );
        }
        if let Some(x) = c.downcast_ref::<ConsumerError>() {
            return match x.kind() {
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => true,
                ConsumerErrorKind::JetStream(j) => transient_code(j.error_code()),
                _ => false,
            };
        }
        false
    })
}

/// [`ensure_streams`], or, for a node whose role may not manage streams
/// (least-privilege users), a check that they all exist.
pub async fn ensure_or_verify_streams(
    js: &jetstream::Context,
    settings: &RetentionSettings,
) -> Result<()> {
    let Err(e) = ensure_streams(js, settings).await else {
        return Ok(());
    };
    use futures::StreamExt;
    let present: Vec<String> = js
        .stream_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let missing: Vec<&str> = spec::all_streams(settings)
        .iter()
        .map(|s| s.name)
        .filter(|n| !present.iter().any(|p| p == n))
        .collect();
    if missing.is_empty() {
        info!("streams exist; this node does not manage them ({e:#})");
        Ok(())
    } else {
        Err(e.context(format!(
            "setting up JetStream streams ({} missing)",
            missing.join(", ")
        )))
    }
}

/// The pull configuration of the shared `detectors` consumer.
pub fn detectors_consumer_config() -> consumer::pull::Config {
    let c = spec::detectors_consumer();
    consumer::pull::Config {
        durable_name: Some(c.durable.to_string()),
        description: Some("nvr detector workers (shared queue)".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: c.ack_wait,
        max_deliver: c.max_deliver,
        max_ack_pending: c.max_ack_pending,
        ..Default::default()
    }
}

/// Creates the `detectors` consumer if it does not exist.
pub async fn ensure_detectors_consumer(js: &jetstream::Context) -> Result<()> {
    let stream = js
        .get_stream(spec::FRAMES)
        .await
        .with_context(|| format!("stream {}", spec::FRAMES))?;
    stream
        .get_or_create_consumer::<consumer::pull::Config>(
            spec::DETECTORS_CONSUMER,
            detectors_consumer_config(),
        )
        .await
        .with_context(|| format!("consumer {}", spec::DETECTORS_CONSUMER))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js_error(err_code: u64) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 503, "err_code": err_code, "description": "test"
        }))
        .expect("a JetStream error parses")
    }

    #[test]
    fn a_time_out_or_a_cluster_without_leader_is_worth_waiting_for() {
        let timed_out = anyhow::Error::new(ConsumerError::new(ConsumerErrorKind::TimedOut))
            .context("consumer detectors");
        assert!(is_transient(&timed_out));
        let no_leader = anyhow::Error::new(CreateStreamError::new(
            CreateStreamErrorKind::JetStream(js_error(10008)),
        ))
        .context("creating stream NVR_FRAMES");
        assert!(is_transient(&no_leader));
    }

    #[test]
    fn a_refusal_ends_set_up_at_once() {
        // 10052: the stream's configuration is invalid; waiting cannot help.
        let invalid = anyhow::Error::new(CreateStreamError::new(CreateStreamErrorKind::JetStream(
            js_error(10052),
        )))
        .context("creating stream NVR_FRAMES");
        assert!(!is_transient(&invalid));
        assert!(!is_transient(&anyhow::anyhow!(
            "stream NVR_FRAMES exists with retention"
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn set_up_stops_trying_after_its_patience() {
        let mut tries = 0u32;
        let started = tokio::time::Instant::now();
        let r: Result<()> = while_transient("consumer detectors", || {
            tries += 1;
            async { Err(ConsumerError::new(ConsumerErrorKind::TimedOut).into()) }
        })
        .await;
        assert!(r.is_err());
        assert!(tries > 2, "it tried again ({tries} tries)");
        assert!(started.elapsed() <= SETUP_PATIENCE);
        let mut tries = 0u32;
        let r: Result<()> = while_transient("stream NVR_FRAMES", || {
            tries += 1;
            async { Err(anyhow::anyhow!("permission denied")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(tries, 1, "a refusal is not tried again");
    }
}
