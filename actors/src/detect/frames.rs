//! Reading frames of an image or video file through an `ffmpeg` child
//! process (`-f rawvideo -pix_fmt rgb24`). Used by the raw benchmark and the
//! model tests; cameras have their own streaming reader.

use std::path::Path;
use std::process::{Command, Stdio};

use super::image::RgbImage;
use super::DetectError;

fn io_err(what: &str, e: std::io::Error) -> DetectError {
    if e.kind() == std::io::ErrorKind::NotFound {
        DetectError::Image(format!("{what} not found on PATH; run scripts/setup"))
    } else {
        DetectError::Image(format!("running {what}: {e}"))
    }
}

/// Width and height of the first video stream of `path` (via `ffprobe`).
pub fn probe_size(path: &Path) -> Result<(u32, u32), DetectError> {
    if !path.is_file() {
        return Err(DetectError::Image(format!(
            "{} not found; run scripts/setup",
            path.display()
        )));
    }
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=s=x:p=0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_err("ffprobe", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    let parsed = first
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if out.status.success() && w > 0 && h > 0 => Ok((w, h)),
        _ => Err(DetectError::Image(format!(
            "ffprobe could not read the size of {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Decode up to `max_frames` frames of `path` as packed RGB, starting at
/// frame `start` and keeping every `step`-th frame (`step` 0 counts as 1).
pub fn read_frames(
    path: &Path,
    start: usize,
    step: usize,
    max_frames: usize,
) -> Result<Vec<RgbImage>, DetectError> {
    let (width, height) = probe_size(path)?;
    let step = step.max(1);
    let filter = format!("select='gte(n\\,{start})*not(mod(n-{start}\\,{step}))'");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args([
            "-vf",
            &filter,
            "-fps_mode",
            "passthrough",
            "-frames:v",
            &max_frames.to_string(),
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_err("ffmpeg", e))?;
    if !out.status.success() {
        return Err(DetectError::Image(format!(
            "ffmpeg failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let frame_len = width as usize * height as usize * 3;
    Ok(out
        .stdout
        .chunks_exact(frame_len)
        .map(|c| RgbImage {
            width,
            height,
            data: c.to_vec(),
        })
        .collect())
}
