//! MOT-challenge text format (`frame,id,x,y,w,h,score,...`, frames from 1,
//! boxes as top-left + size): read detections, run a whole sequence through
//! the [`Tracker`] at a given frame rate, and write its output in the same
//! format for scoring with standard MOT tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nvr_subjects::{DetectedObject, TrackState};

use super::{Tracker, TrackerParams};

/// One line of a MOT-challenge file.
#[derive(Debug, Clone, PartialEq)]
pub struct MotRow {
    /// Frame number, from 1.
    pub frame: u32,
    /// Object id (`-1` for raw detections).
    pub id: i64,
    /// Box as `[left, top, width, height]`.
    pub tlwh: [f32; 4],
    /// Detection or track confidence.
    pub score: f32,
}

/// A MOT file that could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("MOT line {line}: {msg}")]
pub struct MotError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub msg: String,
}

/// Parses MOT-challenge text. Blank lines and lines starting with `#` are
/// skipped; at least 7 comma- (or space-) separated fields are required.
pub fn parse_mot(text: &str) -> Result<Vec<MotRow>, MotError> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: String| MotError { line: i + 1, msg };
        let fields: Vec<&str> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        if fields.len() < 7 {
            return Err(err(format!(
                "expected at least 7 fields, found {}",
                fields.len()
            )));
        }
        let num = |k: usize, name: &str| -> Result<f64, MotError> {
            fields[k]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(format!("{name} is not a number: {:?}", fields[k])))
        };
        let frame = num(0, "frame")?;
        if frame < 1.0 || frame.fract() != 0.0 || frame > u32::MAX as f64 {
            return Err(err(format!(
                "frame must be a positive integer, got {}",
                fields[0]
            )));
        }
        let tlwh = [
            num(2, "x")? as f32,
            num(3, "y")? as f32,
            num(4, "w")? as f32,
            num(5, "h")? as f32,
        ];
        rows.push(MotRow {
            frame: frame as u32,
            id: num(1, "id")? as i64,
            tlwh,
            score: num(6, "score")? as f32,
        });
    }
    Ok(rows)
}

/// Groups detection rows by frame as `person` detections with `[x1,y1,x2,y2]` boxes
/// in the file's units. Rows with a non-positive size are dropped.
pub fn detections_by_frame(rows: &[MotRow]) -> BTreeMap<u32, Vec<DetectedObject>> {
    let mut by: BTreeMap<u32, Vec<DetectedObject>> = BTreeMap::new();
    for r in rows {
        let [x, y, w, h] = r.tlwh;
        if w <= 0.0 || h <= 0.0 {
            continue;
        }
        by.entry(r.frame).or_default().push(DetectedObject {
            class_id: 0,
            label: "person".to_string(),
            score: r.score,
            bbox: [x, y, x + w, y + h],
            embedding: None,
        });
    }
    by
}

/// Runs a tracker over frames `1..=last_frame` (default: the last frame with
/// a detection; frames without detections still get an update) at `fps`,
/// frame `f` at message time `(f - 1) / fps`. Returns one row per confirmed
/// track matched in each frame (the usual MOT output), boxes from the filter.
pub fn run_sequence(
    params: TrackerParams,
    dets: &[MotRow],
    fps: f64,
    last_frame: Option<u32>,
) -> Vec<MotRow> {
    let by = detections_by_frame(dets);
    let last = last_frame
        .or_else(|| dets.iter().map(|r| r.frame).max())
        .unwrap_or(0);
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        5.0
    };
    let mut tracker = Tracker::new(params);
    let empty = Vec::new();
    let mut out = Vec::new();
    for frame in 1..=last {
        let ts = ((frame - 1) as f64 * 1e9 / fps).round() as u64;
        let o = tracker.update(ts, by.get(&frame).unwrap_or(&empty));
        for t in o.tracks {
            if t.state != TrackState::Confirmed {
                continue;
            }
            let b = t.bbox;
            out.push(MotRow {
                frame,
                id: t.track_id as i64,
                tlwh: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                score: t.score,
            });
        }
    }
    out
}

/// Formats rows as MOT-challenge text (`frame,id,x,y,w,h,score,-1,-1,-1`).
pub fn format_mot(rows: &[MotRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let [x, y, w, h] = r.tlwh;
        let _ = writeln!(
            s,
            "{},{},{:.2},{:.2},{:.2},{:.2},{:.4},-1,-1,-1",
            r.frame, r.id, x, y, w, h, r.score
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_bad_lines() {
        let rows =
            parse_mot("1,-1,10,20,30,40,0.9,-1,-1,-1\n\n2 -1 11 20 30 40 0.8\n").expect("parse");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].frame, 2);
        assert_eq!(rows[0].tlwh, [10.0, 20.0, 30.0, 40.0]);
        let e = parse_mot("1,-1,10,20,30,40,0.9\n1,-1,x,20,30,40,0.9\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("x is not a number"), "{e}");
        assert!(parse_mot("0,-1,1,1,1,1,1").is_err());
        assert!(parse_mot("1,2,3").is_err());
    }

    #[test]
    fn runs_a_sequence_with_empty_frames() {
        let mut text = String::new();
        for f in 1..=10u32 {
            if f == 5 {
                continue; // a frame with no detections
            }
            let _ = writeln!(text, "{f},-1,{},100,40,100,0.9,-1,-1,-1", 100 + 8 * f);
        }
        let rows = parse_mot(&text).expect("parse");
        let out = run_sequence(TrackerParams::default(), &rows, 5.0, Some(12));
        assert!(
            out.iter().all(|r| r.id == out[0].id),
            "one id expected: {out:?}"
        );
        assert_eq!(
            out.len(),
            9,
            "frames 1..=10 minus frame 5 (cold start confirms frame 1)"
        );
        let text = format_mot(&out);
        let back = parse_mot(&text).expect("reparse");
        assert_eq!(back.len(), out.len());
    }
}
