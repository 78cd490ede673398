//! Publishing and consuming contract messages on NATS: headers, encoding,
//! JetStream publish acknowledgements and consumer set-up.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use nvr_subjects::{
    encode, Message, CONTENT_TYPE_MSGPACK, HEADER_CAMERA, HEADER_CONTENT_TYPE, HEADER_KIND,
    HEADER_MSG_ID, HEADER_SCHEMA, HEADER_SEQ,
};

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The message could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] nvr_subjects::CodecError),
    /// The server refused the message or did not acknowledge it.
    #[error("publish to {subject}: {reason}")]
    Publish {
        /// Subject published to.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// Headers of a contract message: its content type, its id for
/// de-duplication and what it is (`Nvr-Kind`, `Nvr-Camera`, `Nvr-Seq`,
/// `Nvr-Schema`), so `nats sub` and `nats stream view` tell messages apart
/// without decoding them.
pub fn headers<M: Message>(msg: &M, msg_id: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HEADER_CONTENT_TYPE, CONTENT_TYPE_MSGPACK);
    if let Some(id) = msg_id {
        h.insert(HEADER_MSG_ID, id);
    }
    h.insert(HEADER_KIND, msg.kind());
    if let Some(scope) = msg.scope() {
        h.insert(HEADER_CAMERA, scope);
    }
    if let Some(seq) = msg.seq() {
        h.insert(HEADER_SEQ, seq.to_string().as_str());
    }
    h.insert(HEADER_SCHEMA, msg.version().to_string().as_str());
    h
}

/// Woken whenever a JetStream publish fails, so the process's stream keeper
/// checks at once that the contract's streams still exist (a deleted or
/// lost stream is recreated within a second instead of at the next check).
pub static PUBLISH_FAILED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Publishes `msg` to JetStream and waits for the stream's acknowledgement.
/// Returns whether the server reported it as a duplicate.
pub async fn publish_js<M: Message>(
    js: &jetstream::Context,
    subject: String,
    msg: &M,
    msg_id: Option<&str>,
) -> Result<bool, PublishError> {
    let payload = encode(msg)?;
    let fail = |subject: &str, reason: String| {
        PUBLISH_FAILED.notify_one();
        PublishError::Publish {
            subject: subject.to_string(),
            reason,
        }
    };
    let ack = js
        .publish_with_headers(subject.clone(), headers(msg, msg_id), payload.into())
        .await
        .map_err(|e| fail(&subject, e.to_string()))?;
    let ack = ack.await.map_err(|e| fail(&subject, e.to_string()))?;
    Ok(ack.duplicate)
}

/// A durable pull consumer on `stream` filtered to `filter`, created if needed.
pub async fn durable_pull(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    filter: &str,
    deliver_new: bool,
) -> Result<consumer::Consumer<consumer::pull::Config>, async_nats::Error> {
    let s = js.get_stream(stream).await?;
    let cfg = consumer::pull::Config {
        durable_name: Some(durable.to_string()),
        filter_subject: filter.to_string(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        deliver_policy: if deliver_new {
            consumer::DeliverPolicy::New
        } else {
            consumer::DeliverPolicy::All
        },
        max_ack_pending: 10_000,
        inactive_threshold: Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    Ok(s.get_or_create_consumer(durable, cfg).await?)
}

/// How long a consumer pump may go without a message before it asks the
/// server whether its consumer still exists. A consumer deleted with its
/// stream does not always tell its pull requests (a request between two
/// pulls gets no `409 Consumer Deleted`, and a pull to a consumer that no
/// longer exists gets no answer at all); the idle heartbeat would notice only
/// after 30 s.
pub const CONSUMER_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Whether the server says `consumer` (or its stream) no longer exists. A
/// slow or unreachable server is not an answer: only "not found" counts.
pub async fn consumer_gone(consumer: &consumer::Consumer<consumer::pull::Config>) -> bool {
    use async_nats::jetstream::context::ConsumerInfoErrorKind as K;
    match tokio::time::timeout(Duration::from_secs(2), consumer.get_info()).await {
        Ok(Err(e)) => matches!(e.kind(), K::NotFound | K::StreamNotFound),
        _ => false,
    }
}

/// Consecutive consumer errors after which a pump gives up and its actor
/// restarts (re-creating its consumer).
pub const PUMP_ERRORS: u32 = 3;

/// What a consumer pump hands its actor.
pub enum Pumped {
    /// The next message.
    Message(Box<jetstream::Message>),
    /// No message for the pump's idle window.
    Idle,
    /// The consumer failed for good: it closed, was deleted or kept
    /// erroring; the actor should restart to create it again.
    Failed(String),
}

/// Pulls `consumer`'s messages and hands each to `deliver` until `token` is
/// cancelled, `deliver` returns false (the actor is gone) or the consumer
/// fails (handed over as [`Pumped::Failed`]). With `idle`, a quiet window
/// of that length is handed over as [`Pumped::Idle`]. After
/// [`CONSUMER_CHECK_EVERY`] without a message it asks the server whether
/// the consumer still exists. `what` names the consumer in log lines.
pub async fn pump(
    consumer: consumer::Consumer<consumer::pull::Config>,
    token: tokio_util::sync::CancellationToken,
    idle: Option<Duration>,
    what: &str,
    mut deliver: impl FnMut(Pumped) -> bool,
) {
    use futures::StreamExt;
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            deliver(Pumped::Failed(format!("consumer: {e}")));
            return;
        }
    };
    let window = idle.unwrap_or(CONSUMER_CHECK_EVERY);
    let mut errors = 0u32;
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let next = tokio::select! {
            _ = token.cancelled() => return,
            next = tokio::time::timeout(window, messages.next()) => next,
        };
        match next {
            Ok(Some(Ok(m))) => {
                errors = 0;
                quiet_since = tokio::time::Instant::now();
                if !deliver(Pumped::Message(Box::new(m))) {
                    return;
                }
            }
            Ok(Some(Err(e))) => {
                // A consumer deleted with its stream never comes back by
                // itself: the actor restarts and creates it again.
                errors += 1;
                tracing::debug!("{what} consumer: {e}");
                if errors >= PUMP_ERRORS {
                    deliver(Pumped::Failed(format!("consumer: {e}")));
                    return;
                }
            }
            Ok(None) => {
                deliver(Pumped::Failed("consumer closed".into()));
                return;
            }
            Err(_) => {
                if idle.is_some() && !deliver(Pumped::Idle) {
                    return;
                }
                if quiet_since.elapsed() >= CONSUMER_CHECK_EVERY {
                    quiet_since = tokio::time::Instant::now();
                    if consumer_gone(&consumer).await {
                        deliver(Pumped::Failed("consumer deleted".into()));
                        return;
                    }
                }
            }
        }
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Masks the password of a URL (`rtsp://user:***@host/...`).
pub fn mask_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth_host, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((auth, host)) = auth_host.rsplit_once('@') {
            let user = auth.split(':').next().unwrap_or("");
            if auth.contains(':') {
                return format!("{scheme}://{user}:***@{host}{path}");
            }
        }
    }
    url.to_string()
}

/// The last message stored on `subject` in `stream`, decoded; `None` when
/// there is none or it cannot be read. Actors use it at start to continue
/// their identity counters where the previous incarnation stopped, so IDs
/// stay unique for all time across restarts.
pub async fn last_stored<M: Message>(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Option<M> {
    let stream = js.get_stream(stream).await.ok()?;
    let msg = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    nvr_subjects::decode::<M>(&msg.payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(mask_url("rtsp://u:secret@h:554/s"), "rtsp://u:***@h:554/s");
        assert_eq!(mask_url("rtsp://h/s"), "rtsp://h/s");
        assert_eq!(mask_url("data/x.mp4"), "data/x.mp4");
    }
}
