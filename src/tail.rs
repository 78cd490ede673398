//! `nvr tail <subject>`: prints every message on a subject (wildcards
//! allowed) as one JSON line with its subject and headers. Messages of the
//! contract are decoded; anything else is printed as base64 with a note.

use std::process::ExitCode;

use anyhow::Result;
use base64::Engine;
use clap::Args;
use futures::StreamExt;
use nvr_subjects::subjects::{family, Family};
use nvr_subjects::{decode, CameraTracks, Detections, Event, Frame, SpatialTracks};
use serde_json::{json, Value};

/// Arguments of `nvr tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Subject or pattern, e.g. `nvr.detections.*` or `nvr.>`
    pub subject: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Print frame image bytes as base64 instead of their length.
    #[arg(long)]
    pub full: bool,
}

/// Decodes one message into its JSON line.
pub fn to_json(
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    full: bool,
) -> Value {
    let hdrs: serde_json::Map<String, Value> = headers
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let vals: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                    (k.to_string(), Value::from(vals.join(",")))
                })
                .collect()
        })
        .unwrap_or_default();
    let decoded: Result<(&str, Value), String> = match family(subject) {
        Some(Family::Frames) => decode::<Frame>(payload)
            .map_err(|e| e.to_string())
            .map(|f| {
                let len = f.data.len();
                let mut v = serde_json::to_value(&f).unwrap_or(Value::Null);
                v["data"] = if full {
                    Value::from(base64::engine::general_purpose::STANDARD.encode(&f.data))
                } else {
                    Value::from(format!("<{len} bytes>"))
                };
                ("frame", v)
            }),
        Some(Family::Detections) => decode::<Detections>(payload)
            .map_err(|e| e.to_string())
            .map(|m| ("detections", serde_json::to_value(m).unwrap_or(Value::Null))),
        Some(Family::Tracks) => decode::<CameraTracks>(payload)
            .map_err(|e| e.to_string())
            .map(|m| {
                (
                    "camera_tracks",
                    serde_json::to_value(m).unwrap_or(Value::Null),
                )
            }),
        Some(Family::Spatial) => decode::<SpatialTracks>(payload)
            .map_err(|e| e.to_string())
            .map(|m| {
                (
                    "spatial_tracks",
                    serde_json::to_value(m).unwrap_or(Value::Null),
                )
            }),
        Some(Family::Events) => decode::<Event>(payload)
            .map_err(|e| e.to_string())
            .map(|m| ("event", serde_json::to_value(m).unwrap_or(Value::Null))),
        None => Err("subject is not part of the nvr contract".into()),
    };
    match decoded {
        Ok((kind, message)) => {
            json!({"subject": subject, "headers": hdrs, "type": kind, "message": message})
        }
        Err(note) => json!({
            "subject": subject,
            "headers": hdrs,
            "type": "unknown",
            "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload),
            "note": note,
        }),
    }
}

/// Runs `nvr tail`.
pub async fn run(cfg: &crate::config::Config, args: TailArgs) -> Result<ExitCode> {
    let client = crate::nats::connect(cfg, &cfg.nats.url, "nvr tail").await?;
    let mut sub = client.subscribe(args.subject.clone()).await?;
    client.flush().await?;
    let mut signals = crate::supervisor::ShutdownSignals::install();
    // Tell a waiting caller (or a test) that the subscription is live.
    eprintln!("tailing {}", args.subject);
    let mut n = 0u64;
    use std::io::Write;
    let stdout = std::io::stdout();
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = signals.recv() => None,
        };
        let Some(msg) = msg else { break };
        let line = to_json(&msg.subject, msg.headers.as_ref(), &msg.payload, args.full);
        let mut out = stdout.lock();
        if writeln!(out, "{line}").is_err() {
            break;
        }
        let _ = out.flush();
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_payload_is_base64_with_a_note() {
        let v = to_json("nvr.detections.cam1", None, b"\xff\x00junk", false);
        assert_eq!(v["type"], "unknown");
        assert!(v["note"].as_str().unwrap().contains("malformed"));
        let v = to_json("other.subject", None, b"hi", false);
        assert_eq!(v["payload_base64"], "aGk=");
    }
}
