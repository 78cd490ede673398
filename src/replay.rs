//! `nvr replay`: reads the stored detections of a camera from JetStream
//! (from the start of the stream or a sequence) and runs them through a
//! fresh tracker in `seq` order, printing each `CameraTracks` as a JSON line
//! (or its MessagePack bytes as hex). Because tracking runs on message time
//! only, a replay reproduces the live output byte for byte.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use clap::Args;
use futures::StreamExt;
use nvr_subjects::{decode, encode, streams, subjects, CameraTracks, Detections, SCHEMA_VERSION};

/// Arguments of `nvr replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Camera whose detections to replay (`nvr replay <camera>`).
    #[arg(
        value_name = "CAMERA",
        required_unless_present = "camera",
        conflicts_with = "camera"
    )]
    pub camera_arg: Option<String>,
    /// The same, as a flag.
    #[arg(long)]
    pub camera: Option<String>,
    /// Print MessagePack bytes as hex instead of JSON.
    #[arg(long)]
    pub hex: bool,
}

/// Runs the tracker over `dets` (sorted by seq) and returns the outputs.
/// Objects go through the same boundary checks as in the live track actor
/// (`limits`), so a replay sees exactly what the live tracker saw.
pub fn track_all(
    params: nvr_actors::track::TrackerParams,
    limits: &nvr_actors::guard::Limits,
    mut dets: Vec<Detections>,
) -> Vec<CameraTracks> {
    dets.sort_by_key(|d| d.seq);
    dets.dedup_by_key(|d| d.seq);
    dets.retain_mut(|d| nvr_actors::guard::clean_detections(&mut d.objects, limits).is_ok());
    let mut tracker = nvr_actors::track::Tracker::new(params);
    dets.into_iter()
        .map(|d| {
            let out = tracker.update(d.ts_ns, &d.objects);
            CameraTracks {
                v: SCHEMA_VERSION,
                camera: d.camera,
                seq: d.seq,
                ts_ns: d.ts_ns,
                width: d.width,
                height: d.height,
                tracks: out.published(),
            }
        })
        .collect()
}

/// Runs `nvr replay`.
pub async fn run(cfg: &crate::config::Config, args: ReplayArgs) -> Result<ExitCode> {
    let Some(camera) = args.camera_arg.as_deref().or(args.camera.as_deref()) else {
        anyhow::bail!("name the camera to replay: nvr replay <camera>");
    };
    let client = crate::nats::connect(cfg, &cfg.nats.url, "nvr replay").await?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(streams::DETECTIONS)
        .await
        .with_context(|| format!("stream {}", streams::DETECTIONS))?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects::detections(camera),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut dets = Vec::new();
    let mut bad = 0u64;
    let mut messages = consumer.messages().await?;
    let mut progress: Option<crate::progress::Progress> = None;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
            Ok(Some(Ok(m))) => {
                match decode::<Detections>(&m.payload) {
                    Ok(d) => dets.push(d),
                    Err(_) => bad += 1,
                }
                let pending = m.info().map(|i| i.pending).ok();
                let read = dets.len() as u64 + bad;
                progress
                    .get_or_insert_with(|| {
                        let total = read + pending.unwrap_or(0);
                        crate::progress::Progress::new("nvr replay reading", total, "messages")
                    })
                    .set(read);
                if pending == Some(0) {
                    break;
                }
            }
            Ok(Some(Err(e))) => anyhow::bail!("reading {}: {e}", streams::DETECTIONS),
            Ok(None) | Err(_) => break,
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    if bad > 0 {
        eprintln!("skipped {bad} malformed detections messages");
    }
    dets.retain(|d| d.camera == camera);
    for t in track_all(cfg.tracking.params(), &cfg.limits.limits(), dets) {
        if args.hex {
            let bytes = encode(&t)?;
            println!(
                "{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        } else {
            println!("{}", serde_json::to_string(&t)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
