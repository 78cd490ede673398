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
    /// Only messages about this camera (spatial tracks: seen by it).
    #[arg(long)]
    pub camera: Option<String>,
    /// Only objects and tracks with this label (messages left empty are skipped).
    #[arg(long)]
    pub label: Option<String>,
    /// Only objects and tracks with at least this score.
    #[arg(long)]
    pub min_score: Option<f64>,
    /// Only this global identity (spatial tracks and events).
    #[arg(long)]
    pub global_id: Option<u64>,
    /// One JSON line per message (the default when stdout is not a terminal);
    /// otherwise one readable line.
    #[arg(long)]
    pub json: bool,
}

/// What `nvr tail` keeps of a message.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// See [`TailArgs::camera`].
    pub camera: Option<String>,
    /// See [`TailArgs::label`].
    pub label: Option<String>,
    /// See [`TailArgs::min_score`].
    pub min_score: Option<f64>,
    /// See [`TailArgs::global_id`].
    pub global_id: Option<u64>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.camera.is_none()
            && self.label.is_none()
            && self.min_score.is_none()
            && self.global_id.is_none()
    }

    /// Applies the filter to a decoded line: `None` drops the message;
    /// otherwise its objects and tracks are narrowed to those that match.
    pub fn apply(&self, mut line: Value) -> Option<Value> {
        if self.is_empty() {
            return Some(line);
        }
        let kind = line["type"].as_str().unwrap_or("").to_string();
        if kind == "unknown" {
            return None;
        }
        let m = &mut line["message"];
        if let Some(c) = &self.camera {
            let seen = |t: &Value| {
                t["sources"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x["camera"] == c.as_str()))
            };
            let about = m["camera"] == c.as_str();
            if kind == "spatial_tracks" {
                retain(&mut m["tracks"], seen);
            } else if !about {
                return None;
            }
        }
        if let Some(g) = self.global_id {
            match kind.as_str() {
                "spatial_tracks" => retain(&mut m["tracks"], |t| t["global_id"] == g),
                "event" if m["global_id"] == g => {}
                _ => return None,
            }
        }
        let keep = |o: &Value| {
            self.label.as_ref().is_none_or(|l| o["label"] == l.as_str())
                && self
                    .min_score
                    .is_none_or(|s| o["score"].as_f64().is_some_and(|x| x >= s))
        };
        if self.label.is_some() || self.min_score.is_some() {
            if kind == "event" {
                if !keep(m) {
                    return None;
                }
            } else {
                retain(&mut m["objects"], keep);
                retain(&mut m["tracks"], keep);
            }
        }
        // A list narrowed to nothing drops its message.
        let list = if kind == "detections" {
            "objects"
        } else {
            "tracks"
        };
        let narrowing = self.label.is_some()
            || self.min_score.is_some()
            || (kind == "spatial_tracks" && (self.camera.is_some() || self.global_id.is_some()));
        let lists = matches!(
            kind.as_str(),
            "detections" | "camera_tracks" | "spatial_tracks"
        );
        if lists && narrowing && m[list].as_array().is_none_or(|a| a.is_empty()) {
            return None;
        }
        Some(line)
    }
}

/// Keeps the elements of the array `v` (if it is one) that satisfy `f`.
fn retain(v: &mut Value, f: impl Fn(&Value) -> bool) {
    if let Some(a) = v.as_array_mut() {
        a.retain(|x| f(x));
    }
}

/// One readable line for a decoded message.
pub fn readable(line: &Value) -> String {
    let m = &line["message"];
    let subject = line["subject"].as_str().unwrap_or("");
    let items = |k: &str| -> String {
        m[k].as_array()
            .map(|a| {
                a.iter()
                    .map(|o| {
                        let id = o["global_id"]
                            .as_u64()
                            .or(o["track_id"].as_u64())
                            .map(|i| format!("#{i} "))
                            .unwrap_or_default();
                        format!(
                            "{id}{} {:.2}",
                            o["label"].as_str().unwrap_or("?"),
                            o["score"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    match line["type"].as_str().unwrap_or("") {
        "frame" => format!(
            "{subject} frame seq {} {}x{}",
            m["seq"], m["width"], m["height"]
        ),
        "detections" => format!("{subject} seq {}: {}", m["seq"], items("objects")),
        "camera_tracks" | "spatial_tracks" => {
            format!("{subject}: {}", items("tracks"))
        }
        "event" => format!(
            "{subject} {} {}",
            m["kind"].as_str().unwrap_or(""),
            m["global_id"]
                .as_u64()
                .or(m["track_id"].as_u64())
                .map(|i| format!("#{i}"))
                .unwrap_or_default()
        ),
        _ => format!(
            "{subject}: {}",
            line["note"].as_str().unwrap_or("not an nvr message")
        ),
    }
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
    use std::io::{IsTerminal, Write};
    let json = args.json || !std::io::stdout().is_terminal();
    let filter = Filter {
        camera: args.camera.clone(),
        label: args.label.clone(),
        min_score: args.min_score,
        global_id: args.global_id,
    };
    let stdout = std::io::stdout();
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = signals.recv() => None,
        };
        let Some(msg) = msg else { break };
        let line = to_json(&msg.subject, msg.headers.as_ref(), &msg.payload, args.full);
        let Some(line) = filter.apply(line) else {
            continue;
        };
        let text = if json {
            line.to_string()
        } else {
            readable(&line)
        };
        let mut out = stdout.lock();
        if writeln!(out, "{text}").is_err() {
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

    fn detections_line(camera: &str) -> Value {
        let d = Detections {
            v: nvr_subjects::SCHEMA_VERSION,
            camera: camera.into(),
            seq: 3,
            ts_ns: 1,
            width: 640,
            height: 480,
            model: "m".into(),
            backend: "cpu".into(),
            worker: "w".into(),
            latency_ms: 1.0,
            queue_ms: 1.0,
            objects: [("person", 0.9), ("car", 0.6), ("person", 0.4)]
                .iter()
                .map(|(l, s)| nvr_subjects::DetectedObject {
                    class_id: 0,
                    label: (*l).into(),
                    score: *s,
                    bbox: [0.1, 0.1, 0.2, 0.2],
                    embedding: None,
                })
                .collect(),
        };
        let bytes = nvr_subjects::encode(&d).unwrap();
        to_json(&format!("nvr.detections.{camera}"), None, &bytes, false)
    }

    #[test]
    fn filters_narrow_and_drop() {
        let line = detections_line("door");
        let f = Filter {
            label: Some("person".into()),
            min_score: Some(0.5),
            ..Default::default()
        };
        let kept = f.apply(line.clone()).unwrap();
        assert_eq!(kept["message"]["objects"].as_array().unwrap().len(), 1);
        let other = Filter {
            camera: Some("yard".into()),
            ..Default::default()
        };
        assert!(other.apply(line.clone()).is_none());
        let none = Filter {
            label: Some("dog".into()),
            ..Default::default()
        };
        assert!(none.apply(line.clone()).is_none());
        let g = Filter {
            global_id: Some(4),
            ..Default::default()
        };
        assert!(
            g.apply(line.clone()).is_none(),
            "detections have no global id"
        );
        assert_eq!(Filter::default().apply(line.clone()), Some(line.clone()));
        let text = readable(&kept);
        assert!(text.contains("person 0.90"), "{text}");
    }

    #[test]
    fn unknown_payload_is_base64_with_a_note() {
        let v = to_json("nvr.detections.cam1", None, b"\xff\x00junk", false);
        assert_eq!(v["type"], "unknown");
        assert!(v["note"].as_str().unwrap().contains("malformed"));
        let v = to_json("other.subject", None, b"hi", false);
        assert_eq!(v["payload_base64"], "aGk=");
    }
}
