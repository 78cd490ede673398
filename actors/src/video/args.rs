//! The pure parts of running ffmpeg: output frame size, the command line,
//! and reading the stream size out of ffmpeg's log. No I/O.

use std::time::Duration;

use super::url::file_path;
use super::{SourceError, SourceKind, SourceSpec, VideoInfo};

/// Socket I/O timeout handed to ffmpeg for network sources, so that a dead
/// camera fails instead of hanging.
pub const NET_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Output size for a `w x h` stream so that `max(out) <= max_side`, keeping
/// the aspect ratio with even dimensions. `max_side == 0` or a stream that
/// already fits keeps the original size.
pub fn output_dims(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let long = w.max(h);
    if max_side == 0 || long <= max_side || w == 0 || h == 0 {
        return (w, h);
    }
    let even = |v: u64| (v & !1).max(2) as u32;
    let long_out = even(max_side as u64);
    let short = w.min(h) as u64;
    // Nearest rounding of short * long_out / long, then down to even.
    let short_out = (short * long_out as u64 * 2 + long as u64) / (2 * long as u64);
    let short_out = even(short_out.max(2)).min(long_out);
    if w >= h {
        (long_out, short_out)
    } else {
        (short_out, long_out)
    }
}

/// Formats an fps value the way ffmpeg's `fps=` filter reads it.
fn fmt_fps(fps: f64) -> String {
    let s = format!("{fps:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Checks the spec's numbers and transport; errors name the url and field.
pub fn validate(spec: &SourceSpec, url: &str) -> Result<(), SourceError> {
    let invalid = |reason: String| SourceError::InvalidSpec {
        url: url.to_string(),
        reason,
    };
    if !(spec.fps.is_finite() && spec.fps > 0.0 && spec.fps <= 1000.0) {
        return Err(invalid(format!("fps = {}: must be in (0, 1000]", spec.fps)));
    }
    if let Some(t) = &spec.rtsp_transport {
        if !matches!(t.as_str(), "tcp" | "udp") {
            return Err(invalid(format!(
                "rtsp_transport = {t:?}: must be \"tcp\" or \"udp\""
            )));
        }
    }
    Ok(())
}

/// The input part of the command line (everything up to and including `-i`).
/// `for_probe` leaves out `-re` and `-stream_loop`.
pub fn input_args(spec: &SourceSpec, kind: SourceKind, for_probe: bool) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let timeout_us = NET_IO_TIMEOUT.as_micros().to_string();
    let input = match kind {
        SourceKind::Rtsp => {
            let t = spec.rtsp_transport.as_deref().unwrap_or("tcp");
            a.extend(["-rtsp_transport".into(), t.into()]);
            // ffmpeg >= 5 names the RTSP socket timeout `-timeout` (microseconds).
            a.extend(["-timeout".into(), timeout_us]);
            spec.url.trim().to_string()
        }
        SourceKind::Http => {
            a.extend(["-rw_timeout".into(), timeout_us]);
            spec.url.trim().to_string()
        }
        SourceKind::File => {
            if !for_probe {
                if spec.realtime {
                    a.push("-re".into());
                }
                if spec.looping {
                    a.extend(["-stream_loop".into(), "-1".into()]);
                }
            }
            // The `file:` prefix keeps a path with a colon from reading as a protocol.
            format!("file:{}", file_path(&spec.url).display())
        }
    };
    a.extend(["-i".into(), input]);
    a
}

/// The full command line for reading frames of `out_w x out_h` RGB24.
pub fn run_args(spec: &SourceSpec, kind: SourceKind, out_w: u32, out_h: u32) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(input_args(spec, kind, false));
    a.extend(
        [
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-vf",
            &format!("fps={},scale={out_w}:{out_h}:flags=area", fmt_fps(spec.fps)),
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
            "-flush_packets",
            "1",
            "pipe:1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    a
}

/// The command line for probing: ffmpeg prints the input's streams at
/// level `info` and exits (no output is named).
pub fn probe_args(spec: &SourceSpec, kind: SourceKind) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "info", "-nostdin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(input_args(spec, kind, true));
    a
}

/// Reads the first video stream's size and rate from ffmpeg's log, e.g.
/// `Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 768x576 [SAR 1:1 DAR 4:3], 10 fps, 10 tbr`.
pub fn parse_stream_info(log: &str) -> Option<VideoInfo> {
    for line in log.lines() {
        let line = line.trim();
        if !line.starts_with("Stream #") {
            continue;
        }
        let Some(pos) = line.find(": Video:") else {
            continue;
        };
        let desc = &line[pos + ": Video:".len()..];
        let tokens: Vec<&str> = desc
            .split([',', ' ', '[', ']', '(', ')'])
            .filter(|t| !t.is_empty())
            .collect();
        let size = tokens.iter().find_map(|t| parse_size(t));
        let Some((width, height)) = size else {
            continue;
        };
        let rate = |unit: &str| {
            tokens
                .windows(2)
                .find(|w| w[1] == unit)
                .and_then(|w| parse_rate(w[0]))
        };
        let fps = rate("fps").or_else(|| rate("tbr"));
        return Some(VideoInfo { width, height, fps });
    }
    None
}

/// `768x576` -> (768, 576); rejects hex like `0x31637661` and zero sizes.
fn parse_size(t: &str) -> Option<(u32, u32)> {
    let (w, h) = t.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(w) || !digits(h) || w.starts_with('0') || h.starts_with('0') {
        return None;
    }
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// `10`, `29.97`, `1k` (ffmpeg writes large rates with a k suffix).
fn parse_rate(t: &str) -> Option<f64> {
    let (num, mult) = match t.strip_suffix('k') {
        Some(n) => (n, 1000.0),
        None => (t, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dims_of_samples() {
        assert_eq!(output_dims(768, 576, 416), (416, 312));
        assert_eq!(output_dims(1920, 1080, 640), (640, 360));
        assert_eq!(output_dims(1080, 1920, 640), (360, 640));
        assert_eq!(output_dims(768, 576, 0), (768, 576));
        assert_eq!(output_dims(768, 576, 1000), (768, 576));
        assert_eq!(output_dims(4000, 10, 415), (414, 2));
    }

    #[test]
    fn parses_ffmpeg_stream_lines() {
        let mp4 = "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'v.mp4':\n  Duration: 00:01:19.50\n  \
            Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 768x576 [SAR 1:1 DAR 4:3], 343 kb/s, 10 fps, 10 tbr, 10240 tbn (default)\n\
            At least one output file must be specified\n";
        assert_eq!(
            parse_stream_info(mp4),
            Some(VideoInfo {
                width: 768,
                height: 576,
                fps: Some(10.0)
            })
        );
        let rtsp = "  Stream #0:0: Video: h264 (High), yuv420p(progressive), 768x576, 10 fps, 10 tbr, 90k tbn\n";
        assert_eq!(
            parse_stream_info(rtsp).map(|i| (i.width, i.height)),
            Some((768, 576))
        );
        let audio_first = "  Stream #0:0: Audio: aac, 48000 Hz, stereo\n  Stream #0:1: Video: hevc (Main), yuvj420p(pc), 2560x1440, 29.97 tbr, 90k tbn\n";
        assert_eq!(
            parse_stream_info(audio_first),
            Some(VideoInfo {
                width: 2560,
                height: 1440,
                fps: Some(29.97)
            })
        );
        assert_eq!(parse_stream_info("rtsp://x: Connection refused\n"), None);
    }

    #[test]
    fn command_lines() {
        let spec = SourceSpec {
            url: "rtsp://u:p@cam/x".into(),
            fps: 5.0,
            ..Default::default()
        };
        let a = run_args(&spec, SourceKind::Rtsp, 416, 312).join(" ");
        assert!(
            a.contains("-rtsp_transport tcp -timeout 10000000 -i rtsp://u:p@cam/x"),
            "{a}"
        );
        assert!(a.contains("-vf fps=5,scale=416:312:flags=area"), "{a}");
        assert!(a.ends_with("-f rawvideo -flush_packets 1 pipe:1"), "{a}");
        let file = SourceSpec {
            url: "data/v.avi".into(),
            fps: 2.5,
            looping: true,
            realtime: true,
            ..Default::default()
        };
        let a = run_args(&file, SourceKind::File, 8, 6).join(" ");
        assert!(a.contains("-re -stream_loop -1 -i file:data/v.avi"), "{a}");
        assert!(a.contains("fps=2.5,"), "{a}");
        let p = probe_args(&file, SourceKind::File).join(" ");
        assert!(!p.contains("-re") && !p.contains("stream_loop"), "{p}");
    }

    #[test]
    fn validation() {
        let mut s = SourceSpec {
            url: "x".into(),
            ..Default::default()
        };
        assert!(validate(&s, "x").is_ok());
        s.fps = 0.0;
        assert!(validate(&s, "x").unwrap_err().to_string().contains("fps"));
        s.fps = f64::NAN;
        assert!(validate(&s, "x").is_err());
        s.fps = 5.0;
        s.rtsp_transport = Some("http".into());
        assert!(validate(&s, "x")
            .unwrap_err()
            .to_string()
            .contains("rtsp_transport"));
    }

    proptest! {
        #[test]
        fn dims_fit_keep_aspect_and_are_even(w in 2u32..8000, h in 2u32..8000, max_side in 16u32..4000) {
            let (ow, oh) = output_dims(w, h, max_side);
            if w.max(h) <= max_side {
                prop_assert_eq!((ow, oh), (w, h));
            } else {
                prop_assert!(ow.max(oh) <= max_side);
                prop_assert!(ow.is_multiple_of(2) && oh.is_multiple_of(2) && ow >= 2 && oh >= 2);
                // Aspect within the rounding of the short side (2 px after evening).
                let want = w as f64 / h as f64;
                let short = ow.min(oh) as f64;
                let tol = 2.0 / short * want.max(1.0 / want) + 1e-9;
                let got = ow as f64 / oh as f64;
                prop_assert!(((got - want) / want).abs() <= tol + 2.0 / short, "{w}x{h} -> {ow}x{oh}");
            }
        }

        #[test]
        fn fps_formats_round_trip(fps in 0.01f64..1000.0) {
            let s = fmt_fps(fps);
            let back: f64 = s.parse().unwrap();
            prop_assert!((back - fps).abs() < 1e-6);
        }
    }
}
