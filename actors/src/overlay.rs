//! Drawing a camera's tracks on its frame: the image behind
//! `/api/v1/cameras/<id>/latest.jpg`. Boxes in a per-track colour, each with
//! a label (`#<track id> <LABEL> <score>`) in a small built-in bitmap font,
//! so the picture needs no font files or image libraries beyond the JPEG
//! codec the detectors already use. Pure functions; the API does the I/O.

use nvr_subjects::{CameraTracks, Frame, FrameEncoding, TrackState};

use crate::detect::image::{decode_jpeg, encode_jpeg, RgbImage};
use crate::detect::DetectError;

/// Glyph height of the built-in font in font pixels.
const GLYPH_H: u32 = 7;
/// Glyph width of the built-in font in font pixels.
const GLYPH_W: u32 = 5;

/// One box to draw: where (in the image's pixels), what it says, its colour.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxLabel {
    /// `[x1, y1, x2, y2]` in pixels of the image drawn on.
    pub bbox: [f32; 4],
    /// Text above the box (upper-cased; characters outside the font show as `?`).
    pub text: String,
    /// Line and label background colour.
    pub color: [u8; 3],
    /// Drawn dashed (a tentative or coasting track) rather than solid.
    pub dashed: bool,
}

/// A colour per track id, stable across frames and processes, readable on
/// video (saturated, never near black or white).
pub fn track_color(id: u64) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 10] = [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ];
    PALETTE[(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % PALETTE.len()]
}

/// The boxes of `tracks` (normalised 0..1 of the frame, as on the wire) in
/// pixels of an image of `width` x `height`; tracks only predicted in this
/// frame (`lost`) are left out.
pub fn track_boxes(tracks: &CameraTracks, width: u32, height: u32) -> Vec<BoxLabel> {
    let (w, h) = (width as f32, height as f32);
    tracks
        .tracks
        .iter()
        .filter(|t| t.state != TrackState::Lost)
        .map(|t| BoxLabel {
            bbox: [t.bbox[0] * w, t.bbox[1] * h, t.bbox[2] * w, t.bbox[3] * h],
            text: format!("#{} {} {:.2}", t.track_id, t.label, t.score),
            color: track_color(t.track_id),
            dashed: t.state != TrackState::Confirmed,
        })
        .collect()
}

/// The frame's pixels, whatever its encoding.
pub fn frame_image(frame: &Frame) -> Result<RgbImage, DetectError> {
    match frame.encoding {
        FrameEncoding::Jpeg => decode_jpeg(&frame.data),
        FrameEncoding::Rgb24 => {
            RgbImage::from_raw(frame.data_width, frame.data_height, frame.data.clone())
        }
    }
}

/// `frame` as a JPEG with `tracks` drawn on it (none: the plain frame) and a
/// caption line (camera, sequence number) in the top-left corner; also the
/// number of boxes drawn.
pub fn render(
    frame: &Frame,
    tracks: Option<&CameraTracks>,
) -> Result<(Vec<u8>, usize), DetectError> {
    let mut img = frame_image(frame)?;
    let boxes = tracks
        .map(|t| track_boxes(t, img.width, img.height))
        .unwrap_or_default();
    draw_boxes(&mut img, &boxes);
    let scale = font_scale(img.width);
    let caption = format!("{} #{}", frame.camera, frame.seq);
    draw_label(&mut img, 2, 2, &caption, [40, 40, 40], scale);
    Ok((encode_jpeg(&img, 80)?, boxes.len()))
}

/// Font pixels per glyph pixel: readable on small and large frames.
fn font_scale(width: u32) -> u32 {
    (width / 480).clamp(1, 4)
}

/// Draws every box and its label.
pub fn draw_boxes(img: &mut RgbImage, boxes: &[BoxLabel]) {
    let scale = font_scale(img.width);
    let thick = scale.max(2);
    for b in boxes {
        let x1 = clamp_coord(b.bbox[0], img.width);
        let y1 = clamp_coord(b.bbox[1], img.height);
        let x2 = clamp_coord(b.bbox[2], img.width);
        let y2 = clamp_coord(b.bbox[3], img.height);
        if x2 <= x1 || y2 <= y1 {
            continue;
        }
        rect_outline(img, (x1, y1, x2, y2), thick, b.color, b.dashed);
        let label_h = GLYPH_H * scale + 2;
        let ly = if y1 >= label_h { y1 - label_h } else { y1 };
        draw_label(img, x1, ly, &b.text, b.color, scale);
    }
}

fn clamp_coord(v: f32, max: u32) -> u32 {
    if v.is_finite() {
        (v.max(0.0) as u32).min(max.saturating_sub(1))
    } else {
        0
    }
}

fn put(img: &mut RgbImage, x: u32, y: u32, c: [u8; 3]) {
    if x < img.width && y < img.height {
        let i = (y as usize * img.width as usize + x as usize) * 3;
        img.data[i..i + 3].copy_from_slice(&c);
    }
}

fn rect_outline(
    img: &mut RgbImage,
    (x1, y1, x2, y2): (u32, u32, u32, u32),
    thick: u32,
    c: [u8; 3],
    dashed: bool,
) {
    let on = |i: u32| !dashed || (i / 6).is_multiple_of(2);
    for t in 0..thick {
        for x in x1..=x2 {
            if on(x - x1) {
                put(img, x, y1 + t, c);
                put(img, x, y2.saturating_sub(t), c);
            }
        }
        for y in y1..=y2 {
            if on(y - y1) {
                put(img, x1 + t, y, c);
                put(img, x2.saturating_sub(t), y, c);
            }
        }
    }
}

/// Text on a filled background of colour `bg`, black or white glyphs
/// (whichever reads better on `bg`), top-left corner at `(x, y)`.
fn draw_label(img: &mut RgbImage, x: u32, y: u32, text: &str, bg: [u8; 3], scale: u32) {
    let luma = 0.299 * bg[0] as f32 + 0.587 * bg[1] as f32 + 0.114 * bg[2] as f32;
    let fg = if luma > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    };
    let chars: Vec<char> = text.chars().map(|c| c.to_ascii_uppercase()).collect();
    let w = chars.len() as u32 * (GLYPH_W + 1) * scale + 2;
    let h = GLYPH_H * scale + 2;
    for yy in y..(y + h).min(img.height) {
        for xx in x..(x + w).min(img.width) {
            put(img, xx, yy, bg);
        }
    }
    for (i, ch) in chars.iter().enumerate() {
        let rows = glyph(*ch);
        let gx = x + 1 + i as u32 * (GLYPH_W + 1) * scale;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(
                                img,
                                gx + col * scale + dx,
                                y + 1 + r as u32 * scale + dy,
                                fg,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Rows of a 5x7 glyph, top to bottom, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        ' ' => [0; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvr_subjects::{Track, SCHEMA_VERSION};

    fn frame(w: u32, h: u32) -> Frame {
        let img = RgbImage::filled(w, h, [128, 128, 128]);
        Frame {
            v: SCHEMA_VERSION,
            camera: "lobby".into(),
            seq: 7,
            ts_ns: 1,
            width: w * 2,
            height: h * 2,
            encoding: FrameEncoding::Rgb24,
            data: img.data,
            data_width: w,
            data_height: h,
        }
    }

    fn tracks(bbox: [f32; 4]) -> CameraTracks {
        CameraTracks {
            v: SCHEMA_VERSION,
            camera: "lobby".into(),
            seq: 7,
            ts_ns: 1,
            width: 640,
            height: 480,
            tracks: vec![Track {
                track_id: 3,
                label: "person".into(),
                score: 0.91,
                bbox,
                state: TrackState::Confirmed,
                hits: 5,
                age_ms: 800,
                embedding: None,
            }],
        }
    }

    #[test]
    fn boxes_scale_from_normalised_to_image_pixels() {
        let b = track_boxes(&tracks([0.15625, 0.2083333, 0.3125, 0.625]), 320, 240);
        assert_eq!(b.len(), 1);
        let want = [50.0, 50.0, 100.0, 150.0];
        assert!(
            b[0].bbox
                .iter()
                .zip(want)
                .all(|(a, w)| (a - w).abs() < 0.01),
            "{:?}",
            b[0].bbox
        );
        assert_eq!(b[0].text, "#3 person 0.91");
        assert_eq!(b[0].color, track_color(3));
    }

    #[test]
    fn render_draws_box_in_track_colour() {
        let f = frame(320, 240);
        let (jpeg, n) =
            render(&f, Some(&tracks([0.15625, 0.2083333, 0.46875, 0.8333333]))).unwrap();
        assert_eq!(n, 1);
        let img = decode_jpeg(&jpeg).unwrap();
        assert_eq!((img.width, img.height), (320, 240));
        // The left edge of the box (x = 50 after scaling), half-way down.
        let px = img.pixel(51, 150);
        let want = track_color(3);
        let close = |a: u8, b: u8| (a as i32 - b as i32).abs() < 40;
        assert!((0..3).all(|i| close(px[i], want[i])), "{px:?} vs {want:?}");
        // Inside the box the frame is untouched.
        let inside = img.pixel(100, 150);
        assert!((0..3).all(|i| close(inside[i], 128)), "{inside:?}");
    }

    #[test]
    fn hostile_boxes_are_clipped_not_fatal() {
        let mut img = RgbImage::filled(64, 48, [0, 0, 0]);
        let boxes = vec![
            BoxLabel {
                bbox: [f32::NAN, -5.0, 1e9, f32::INFINITY],
                text: "\u{1F600} weird".into(),
                color: [255, 0, 0],
                dashed: true,
            },
            BoxLabel {
                bbox: [40.0, 40.0, 10.0, 10.0],
                text: String::new(),
                color: [0, 255, 0],
                dashed: false,
            },
        ];
        draw_boxes(&mut img, &boxes);
        assert_eq!(img.data.len(), 64 * 48 * 3);
    }

    #[test]
    fn label_text_is_drawn() {
        let mut img = RgbImage::filled(100, 20, [0, 0, 0]);
        draw_label(&mut img, 0, 0, "#1", [0, 0, 0], 1);
        assert!(img.data.contains(&255), "no glyph pixel set");
    }

    #[test]
    fn colours_are_stable_and_vary() {
        assert_eq!(track_color(5), track_color(5));
        let distinct: std::collections::BTreeSet<[u8; 3]> = (0..50).map(track_color).collect();
        assert!(distinct.len() >= 6, "{distinct:?}");
    }
}
