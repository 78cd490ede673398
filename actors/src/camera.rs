//! `CameraActor`: one per camera with a URL. It owns an `ffmpeg` child that
//! samples the source at the camera's detection fps and downsizes it to the
//! detector's input size; each frame is JPEG-encoded off the async runtime
//! and published as a `Frame` with its de-duplication id. When the source
//! fails or ends, the actor reconnects with exponential backoff; its status
//! (state, fps in/out, counters, last error) is shared with the API.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use nvr_subjects::{subjects, Frame, FrameEncoding, SCHEMA_VERSION};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::bus::{self, mask_url, now_ns};
use crate::detect::RgbImage;
use crate::status::{CameraState, CameraStatus, RateMeter};
use crate::video::{Backoff, FfmpegSource, SourceSpec, VideoFrame};

/// What a camera actor needs.
pub struct CameraArgs {
    /// Camera id.
    pub id: String,
    /// Source description for ffmpeg.
    pub source: SourceSpec,
    /// JPEG quality of published frames.
    pub jpeg_quality: u8,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Status shared with the API.
    pub status: Arc<Mutex<CameraStatus>>,
}

/// Messages of the camera actor (it is driven by its own pump task).
#[derive(Debug)]
pub enum CameraMsg {
    /// The pump task ended unexpectedly; fail so the supervisor restarts us.
    PumpFailed(String),
}

/// State of the camera actor.
pub struct CameraState_ {
    /// Stops the pump task.
    cancel: CancellationToken,
    /// The pump task.
    pump: Option<JoinHandle<()>>,
}

/// The camera actor.
#[derive(Clone, Copy)]
pub struct CameraActor;

impl Actor for CameraActor {
    type Msg = CameraMsg;
    type State = CameraState_;
    type Arguments = CameraArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CameraArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        if let Ok(mut s) = args.status.lock() {
            s.id = args.id.clone();
            s.url = Some(mask_url(&args.source.url));
            s.state = CameraState::Starting;
        }
        let pump = tokio::spawn(async move {
            let id = args.id.clone();
            let r = std::panic::AssertUnwindSafe(pump(args, token.clone()));
            let r = futures::FutureExt::catch_unwind(r).await;
            if !token.is_cancelled() {
                let why = match r {
                    Ok(()) => format!("camera {id}: pump ended"),
                    Err(_) => format!("camera {id}: pump panicked"),
                };
                let _ = myself.cast(CameraMsg::PumpFailed(why));
            }
        });
        Ok(CameraState_ {
            cancel,
            pump: Some(pump),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CameraMsg::PumpFailed(why) => Err(why.into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        if let Some(p) = state.pump.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), p).await;
        }
        Ok(())
    }
}

fn set(status: &Mutex<CameraStatus>, f: impl FnOnce(&mut CameraStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

/// Reads, encodes and publishes frames until cancelled, reconnecting with backoff.
async fn pump(args: CameraArgs, cancel: CancellationToken) {
    let status = args.status.clone();
    let url = mask_url(&args.source.url);
    let mut backoff = Backoff::new();
    // Sequence numbers start at the wall-clock millisecond so that they keep
    // increasing across restarts (JetStream de-duplicates on `<camera>-<seq>`).
    let mut seq = now_ns() / 1_000_000;
    let rate_in = RateMeter::default();
    let rate_out = RateMeter::default();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let started = tokio::select! {
            r = FfmpegSource::start(&args.source) => r,
            _ = cancel.cancelled() => break,
        };
        let mut source = match started {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                warn!(camera = %args.id, "{msg}");
                set(&status, |s| {
                    s.state = CameraState::Reconnecting;
                    s.errors += 1;
                    s.last_error = Some(msg);
                });
                if wait_backoff(&mut backoff, &cancel, &status).await {
                    break;
                }
                continue;
            }
        };
        info!(camera = %args.id, url = %url, "camera source started");
        let healthy_since = Instant::now();
        let mut reset_done = false;
        let outcome = loop {
            let next = tokio::select! {
                r = source.next_frame() => r,
                _ = cancel.cancelled() => break None,
            };
            let frame = match next {
                Ok(Some(f)) => f,
                Ok(None) => break Some("stream ended".to_string()),
                Err(e) => break Some(e.to_string()),
            };
            rate_in.tick();
            if !reset_done && backoff.note_run(healthy_since.elapsed()) {
                reset_done = true;
            }
            if let Err(why) = publish_frame(&args, frame, seq + 1, &rate_in, &rate_out).await {
                break Some(why);
            }
            seq += 1;
        };
        source.stop().await;
        match outcome {
            None => break,
            Some(why) => {
                warn!(camera = %args.id, url = %url, "camera source stopped: {why}; reconnecting");
                set(&status, |s| {
                    s.state = CameraState::Reconnecting;
                    s.errors += 1;
                    s.last_error = Some(why);
                });
                if wait_backoff(&mut backoff, &cancel, &status).await {
                    break;
                }
            }
        }
    }
    set(&status, |s| s.state = CameraState::Stopped);
}

/// Encodes `frame` as JPEG and publishes it as frame `seq` of the camera,
/// updating its status. A frame the bus refuses (queue full, server away)
/// is dropped and counted; an encoding failure is returned, and the source
/// restarts.
async fn publish_frame(
    args: &CameraArgs,
    frame: VideoFrame,
    seq: u64,
    rate_in: &RateMeter,
    rate_out: &RateMeter,
) -> Result<(), String> {
    let status = &args.status;
    let ts_ns = now_ns();
    let quality = args.jpeg_quality;
    let (orig_w, orig_h) = (frame.orig_width, frame.orig_height);
    let img = RgbImage {
        width: frame.width,
        height: frame.height,
        data: frame.data,
    };
    let jpeg =
        tokio::task::spawn_blocking(move || crate::detect::image::encode_jpeg(&img, quality)).await;
    let data = match jpeg {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(format!("jpeg encode: {e}")),
        Err(e) => return Err(format!("jpeg encode task: {e}")),
    };
    let msg = Frame {
        v: SCHEMA_VERSION,
        camera: args.id.clone(),
        seq,
        ts_ns,
        width: orig_w,
        height: orig_h,
        encoding: FrameEncoding::Jpeg,
        data,
        data_width: 0,
        data_height: 0,
    };
    let id = nvr_subjects::msg_id(&args.id, seq);
    match bus::publish_js(&args.js, subjects::frames(&args.id), &msg, Some(&id)).await {
        Ok(_) => {
            rate_out.tick();
            set(status, |s| {
                s.state = CameraState::Streaming;
                s.frames_published += 1;
                s.width = orig_w;
                s.height = orig_h;
                s.fps_in = rate_in.rate();
                s.fps_out = rate_out.rate();
            });
        }
        Err(e) => {
            // Queue full (discard new) or the server is away: the frame is dropped and counted.
            let msg = e.to_string();
            set(status, |s| {
                s.frames_dropped += 1;
                s.fps_in = rate_in.rate();
                s.last_error = Some(msg.clone());
            });
            tracing::debug!(camera = %args.id, "frame dropped: {msg}");
        }
    }
    Ok(())
}

/// Sleeps for the next backoff delay; true when cancelled meanwhile.
async fn wait_backoff(
    backoff: &mut Backoff,
    cancel: &CancellationToken,
    status: &Mutex<CameraStatus>,
) -> bool {
    let d = backoff.next_delay();
    set(status, |s| s.reconnects += 1);
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_caps_and_resets() {
        let mut r = Backoff::new();
        let d: Vec<u64> = (0..8).map(|_| r.next_delay().as_millis() as u64).collect();
        assert_eq!(d, vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        r.reset();
        assert_eq!(r.next_delay(), Duration::from_millis(500));
    }
}
