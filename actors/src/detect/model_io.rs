//! A model's inputs and outputs checked against what the detector feeds and
//! decodes, and the raw head output decoded into candidates.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorElementType;

use super::decode::{decode_yolov8, decode_yolox, yolox_anchor_count, Candidate, ModelType};
use super::DetectError;

use super::model::*;
use super::runtime::*;

/// Check the session's input against the image convention and return the
/// input size to use (the model's own when it is fixed).
pub(crate) fn validate_input(
    session: &Session,
    path: &Path,
    wanted: u32,
) -> Result<u32, DetectError> {
    let inputs = session.inputs();
    if inputs.len() != 1 {
        return Err(model_err(
            path,
            format!("expected 1 image input, the model has {}", inputs.len()),
        ));
    }
    let input = &inputs[0];
    let (Some(ty), Some(shape)) = (input.dtype().tensor_type(), input.dtype().tensor_shape())
    else {
        return Err(model_err(
            path,
            format!("input {:?} is not a tensor", input.name()),
        ));
    };
    if ty != TensorElementType::Float32 {
        return Err(model_err(
            path,
            format!("input {:?} is {ty:?}, expected float32", input.name()),
        ));
    }
    let shape: &[i64] = shape;
    if shape.len() != 4
        || dim(shape, 1).is_some_and(|c| c != 3)
        || dim(shape, 0).is_some_and(|n| n != 1)
    {
        return Err(model_err(
            path,
            format!(
                "input {:?} has shape {}, expected [1,3,H,W]",
                input.name(),
                fmt_shape(shape)
            ),
        ));
    }
    match (dim(shape, 2), dim(shape, 3)) {
        (Some(h), Some(w)) if h != w => Err(model_err(
            path,
            format!("input is {w}x{h}; only square inputs are supported"),
        )),
        (Some(h), Some(_)) => {
            let fixed = h as u32;
            if fixed != wanted {
                tracing::warn!(
                    model = %path.display(),
                    "model has a fixed {fixed}x{fixed} input; using it instead of input_size {wanted}"
                );
            }
            Ok(fixed)
        }
        _ => {
            if wanted < 32 || !wanted.is_multiple_of(32) {
                return Err(DetectError::Config {
                    what: "input_size".into(),
                    reason: format!(
                        "{wanted} (must be a positive multiple of 32, e.g. 320, 416, 640)"
                    ),
                });
            }
            Ok(wanted)
        }
    }
}

/// Whether the model's image input has a fixed height and width.
pub(super) fn input_is_fixed(session: &Session) -> bool {
    session
        .inputs()
        .first()
        .and_then(|i| i.dtype().tensor_shape())
        .is_some_and(|s| dim(s, 2).is_some() && dim(s, 3).is_some())
}

/// Check the first output against `model_type`; returns the class count when
/// the shape fixes it.
pub(super) fn validate_output(
    session: &Session,
    path: &Path,
    model_type: ModelType,
    input_size: u32,
    input_fixed: bool,
) -> Result<Option<usize>, DetectError> {
    let Some(output) = session.outputs().first() else {
        return Err(model_err(path, "model has no outputs"));
    };
    let (Some(ty), Some(shape)) = (output.dtype().tensor_type(), output.dtype().tensor_shape())
    else {
        return Err(model_err(
            path,
            format!("output {:?} is not a tensor", output.name()),
        ));
    };
    let shape: &[i64] = shape;
    let what = match model_type {
        ModelType::Yolox => "a YOLOX head [1,N,5+classes]",
        ModelType::Yolov8 => "an Ultralytics head [1,4+classes,N]",
    };
    let bad = |why: String| {
        model_err(
            path,
            format!(
                "output {:?} has shape {} ({why}), expected {what} for model type {}",
                output.name(),
                fmt_shape(shape),
                model_type.as_str()
            ),
        )
    };
    if ty != TensorElementType::Float32 {
        return Err(bad(format!("element type {ty:?}")));
    }
    if shape.len() != 3 || dim(shape, 0).is_some_and(|b| b != 1) {
        return Err(bad("wrong rank".into()));
    }
    let (d1, d2) = (dim(shape, 1), dim(shape, 2));
    match model_type {
        ModelType::Yolox => {
            if let (Some(n), Some(k)) = (d1, d2) {
                if k > n {
                    return Err(bad("looks like an Ultralytics layout".into()));
                }
            }
            // A symbolic input size makes the declared anchor count meaningless
            // (ONNX Runtime may report the count of the export size).
            if let (Some(n), true) = (d1, input_fixed) {
                let want = yolox_anchor_count(input_size, input_size);
                if n != want {
                    return Err(bad(format!(
                        "{n} anchors, a {input_size} input needs {want}"
                    )));
                }
            }
            match d2 {
                Some(k) if k < 6 => Err(bad(format!("{k} values per anchor"))),
                Some(k) => Ok(Some(k - 5)),
                None => Ok(None),
            }
        }
        ModelType::Yolov8 => {
            if let (Some(c), Some(n)) = (d1, d2) {
                if c > n {
                    return Err(bad("looks like a YOLOX layout".into()));
                }
            }
            match d1 {
                Some(c) if c < 5 => Err(bad(format!("{c} channels"))),
                Some(c) => Ok(Some(c - 4)),
                None => Ok(None),
            }
        }
    }
}

/// Candidates of one frame's slice `data` of the output head (`shape` is the
/// head's shape; its batch dimension is ignored), keeping the classes in
/// `allowed` (all when `None`).
pub(super) fn decode_head(
    model_type: ModelType,
    input_size: u32,
    allowed: Option<&[usize]>,
    data: &[f32],
    shape: &[i64],
    min_confidence: f32,
) -> Result<Vec<Candidate>, DetectError> {
    let threshold = if min_confidence.is_nan() {
        0.0
    } else {
        min_confidence.clamp(0.0, 1.0)
    };
    let keep = |c: usize| allowed.is_none_or(|a| a.binary_search(&c).is_ok());
    match model_type {
        ModelType::Yolox => decode_yolox(
            data,
            dim(shape, 2).unwrap_or(0),
            input_size,
            input_size,
            threshold,
            &keep,
        ),
        ModelType::Yolov8 => decode_yolov8(data, dim(shape, 1).unwrap_or(0), threshold, &keep),
    }
}
