//! The detector: a model loaded on a backend and checked, and the
//! end-to-end `detect` call (letterbox, inference, head decoding,
//! class-aware NMS, optional appearance descriptors).

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use super::decode::{Candidate, ModelType};
use super::embed::{colour_descriptor_balanced, combine, OnnxEmbedder};
use super::image::RgbImage;
use super::labels::{label_of, COCO_LABELS};
use super::letterbox::{Geometry, Letterboxer};
use super::model_io::*;
use super::nms::nms;
use super::runtime::*;
use super::white_balance::{Gain, NEUTRAL};
use super::DetectError;

/// Everything needed to load a [`Detector`].
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// ONNX model file.
    pub model_path: PathBuf,
    /// Output head layout of the model.
    pub model_type: ModelType,
    /// Square letterbox input size in pixels (a model with a fixed input
    /// size uses its own, with a warning if they differ).
    pub input_size: u32,
    /// Requested execution provider.
    pub backend: Backend,
    /// Accelerator index for GPU backends.
    pub device_id: i32,
    /// Use the CPU when the requested backend is unavailable (with a warning).
    pub allow_cpu_fallback: bool,
    /// Intra-op threads; 0 = ONNX Runtime's default.
    pub threads: usize,
    /// IoU threshold of class-aware NMS.
    pub nms_iou: f32,
    /// Class names to keep (COCO names, or `class<N>` for other class ids); empty keeps all.
    pub labels: Vec<String>,
    /// Attach a colour descriptor to each person.
    pub embeddings: bool,
    /// Appearance model whose embedding of each person's crop is appended to
    /// the colour descriptor (with `embeddings`); `None` = colour only.
    pub reid_model: Option<PathBuf>,
    /// Share of the appearance model in the combined embedding's cosine.
    pub reid_weight: f32,
    /// GPU provider settings.
    pub gpu: GpuOptions,
}

impl DetectorOptions {
    /// Options for `model_path` with the defaults used by the shipped YOLOX
    /// model: 416 input, CPU, NMS IoU 0.45, all labels, no embeddings.
    pub fn new(model_path: impl Into<PathBuf>) -> DetectorOptions {
        DetectorOptions {
            model_path: model_path.into(),
            model_type: ModelType::Yolox,
            input_size: 416,
            backend: Backend::Cpu,
            device_id: 0,
            allow_cpu_fallback: false,
            threads: 0,
            nms_iou: 0.45,
            labels: Vec::new(),
            embeddings: false,
            reid_model: None,
            reid_weight: 0.5,
            gpu: GpuOptions::default(),
        }
    }
}

/// Dimension `i` of a shape, `None` when symbolic.
pub(super) fn dim(shape: &[i64], i: usize) -> Option<usize> {
    shape
        .get(i)
        .and_then(|&d| usize::try_from(d).ok())
        .filter(|&d| d > 0)
}

pub(super) fn fmt_shape(shape: &[i64]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|&d| {
            if d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// A loaded detection model.
pub struct Detector {
    /// The ONNX Runtime session.
    pub(super) session: Session,
    /// How to decode the output head.
    pub(super) model_type: ModelType,
    /// Side of the square model input.
    pub(super) input_size: u32,
    /// Effective backend.
    pub(super) backend: Backend,
    /// Why the requested backend was not used.
    pub(super) fallback_reason: Option<String>,
    /// File stem of the model.
    pub(super) model_name: String,
    /// NMS IoU threshold.
    pub(super) nms_iou: f32,
    /// Class ids to keep; `None` keeps all.
    pub(super) allowed: Option<Vec<usize>>,
    /// Attach colour descriptors to persons.
    pub(super) embeddings: bool,
    /// Appearance model run on the crops of persons, when configured.
    pub(super) reid: Option<OnnxEmbedder>,
    /// Share of `reid` in the combined embedding's cosine.
    pub(super) reid_weight: f32,
    /// Reusable letterbox buffers.
    pub(super) letterbox: Letterboxer,
    /// Whether one session call may carry several frames: the model's batch
    /// dimension is symbolic and a batch gave the same outputs as single
    /// frames when the model was loaded (see `batch.rs`).
    pub(super) batchable: bool,
    /// Why batching is off for this model, when it is.
    pub(super) batch_note: Option<String>,
    /// Reusable batch input tensor (`[B, 3, S, S]`).
    pub(super) batch_input: Vec<f32>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.model_name)
            .field("model_type", &self.model_type)
            .field("input_size", &self.input_size)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Load the model and check its input and output shapes against
    /// `model_type`. A missing, corrupt or mismatched model gives a one-line
    /// error naming the path and what is wrong.
    pub fn load(opts: DetectorOptions) -> Result<Detector, DetectError> {
        let path = opts.model_path.as_path();
        if !(opts.nms_iou > 0.0 && opts.nms_iou <= 1.0) {
            return Err(DetectError::Config {
                what: "nms_iou".into(),
                reason: format!("{} (must be in (0, 1])", opts.nms_iou),
            });
        }
        let allowed = allowed_labels(&opts.labels)?;
        let runtime = RuntimeOptions {
            backend: opts.backend,
            device_id: opts.device_id,
            allow_cpu_fallback: opts.allow_cpu_fallback,
            threads: opts.threads,
            gpu: opts.gpu.clone(),
        };
        let built = build_session(
            path,
            &RuntimeOptions {
                gpu: GpuOptions {
                    input_size: opts.input_size,
                    ..opts.gpu.clone()
                },
                ..runtime.clone()
            },
        )?;
        let input_size = validate_input(&built.session, path, opts.input_size)?;
        let input_fixed = input_is_fixed(&built.session);
        validate_output(
            &built.session,
            path,
            opts.model_type,
            input_size,
            input_fixed,
        )?;
        let model_name = file_stem(path);
        let reid = match &opts.reid_model {
            Some(p) if opts.embeddings => Some(load_reid(p, opts.backend, runtime)?),
            _ => None,
        };
        let batch_symbolic = built
            .session
            .inputs()
            .first()
            .and_then(|i| i.dtype().tensor_shape())
            .is_some_and(|s| dim(s, 0).is_none());
        let mut detector = Detector {
            session: built.session,
            model_type: opts.model_type,
            input_size,
            backend: built.backend,
            fallback_reason: built.fallback_reason,
            model_name,
            nms_iou: opts.nms_iou,
            allowed,
            embeddings: opts.embeddings,
            reid,
            reid_weight: opts.reid_weight,
            letterbox: Letterboxer::new(),
            batchable: false,
            batch_note: None,
            batch_input: Vec::new(),
        };
        if batch_symbolic {
            detector.check_batching()?;
        } else {
            detector.batch_note = Some("the model's batch dimension is fixed at 1".into());
        }
        Ok(detector)
    }

    /// Effective backend ("cpu" after a fallback).
    pub fn backend(&self) -> &str {
        self.backend.as_str()
    }

    /// Why the requested backend was not used, if it was not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Model file stem.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Square input size.
    pub fn input_size(&self) -> u32 {
        self.input_size
    }

    /// Output head layout.
    pub fn model_type(&self) -> ModelType {
        self.model_type
    }

    /// What each person's embedding is made of: `colour`, or `colour+<model
    /// file stem>` with an appearance model; `none` without embeddings.
    pub fn appearance(&self) -> String {
        match (&self.reid, self.embeddings) {
            (_, false) => "none".into(),
            (None, true) => "colour".into(),
            (Some(r), true) => format!("colour+{}", r.model_name()),
        }
    }

    /// Appends the appearance model's embedding of each object that has a
    /// colour descriptor (persons) to that descriptor, all crops of the frame
    /// in one model call. Nothing to do without an appearance model.
    pub(super) fn add_model_embeddings(
        &mut self,
        objects: &mut [nvr_subjects::DetectedObject],
        img: &RgbImage,
    ) -> Result<(), DetectError> {
        let Some(reid) = self.reid.as_mut() else {
            return Ok(());
        };
        let boxes: Vec<[f32; 4]> = objects
            .iter()
            .filter(|o| o.embedding.is_some())
            .map(|o| o.bbox)
            .collect();
        if boxes.is_empty() {
            return Ok(());
        }
        let model = reid.embed(img, &boxes)?;
        let persons = objects.iter_mut().filter_map(|o| o.embedding.as_mut());
        for (colour, m) in persons.zip(&model) {
            *colour = combine(colour, m, self.reid_weight);
        }
        Ok(())
    }

    /// Detect objects with score >= `min_confidence`. The bbox of each
    /// object is normalised 0..1 of `img` (so it is also normalised of the
    /// original frame even if `img` was downscaled).
    pub fn detect(
        &mut self,
        img: &RgbImage,
        min_confidence: f32,
    ) -> Result<Vec<nvr_subjects::DetectedObject>, DetectError> {
        self.detect_balanced(img, min_confidence, &NEUTRAL)
    }

    /// [`Detector::detect`] for a frame of a camera whose colour
    /// descriptors take out its cast with `gain` (see
    /// [`super::white_balance`]).
    pub fn detect_balanced(
        &mut self,
        img: &RgbImage,
        min_confidence: f32,
        gain: &Gain,
    ) -> Result<Vec<nvr_subjects::DetectedObject>, DetectError> {
        let geometry = self.letterbox.run(img, self.input_size)?;
        let (model_type, size, allowed) = (self.model_type, self.input_size, self.allowed.clone());
        let candidates = self.run_input(1, |shape, data| {
            decode_head(
                model_type,
                size,
                allowed.as_deref(),
                data,
                shape,
                min_confidence,
            )
        })?;
        let mut objects = self.finish(candidates, &geometry, img, gain);
        self.add_model_embeddings(&mut objects, img)?;
        Ok(objects)
    }

    /// Runs the model on the letterboxed input of `n` frames (`[n, 3, S, S]`:
    /// the letterboxer's tensor for one frame, `batch_input` for more) and
    /// hands the output head's shape and data to `read`.
    pub(super) fn run_input<R>(
        &mut self,
        n: usize,
        read: impl FnOnce(&[i64], &[f32]) -> Result<R, DetectError>,
    ) -> Result<R, DetectError> {
        let inference = |e: ort::Error| DetectError::Inference(one_line(&e.to_string()));
        let s = self.input_size as usize;
        let pixels = if n == 1 {
            self.letterbox.tensor()
        } else {
            &self.batch_input[..]
        };
        let input = TensorRef::from_array_view(([n, 3, s, s], pixels)).map_err(inference)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(inference)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(inference)?;
        let shape: &[i64] = shape;
        if shape.len() != 3 || shape[0] != n as i64 || data.len() % n.max(1) != 0 {
            return Err(DetectError::Inference(format!(
                "{n} frames gave an output of shape {}, expected [{n},..] of rank 3",
                fmt_shape(shape)
            )));
        }
        read(shape, data)
    }

    /// NMS, mapping back to the source image and descriptors (their pixels
    /// scaled by `gain`): the objects of one frame from its candidates.
    pub(super) fn finish(
        &self,
        mut candidates: Vec<Candidate>,
        geometry: &Geometry,
        img: &RgbImage,
        gain: &Gain,
    ) -> Vec<nvr_subjects::DetectedObject> {
        if candidates.len() > MAX_CANDIDATES {
            candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
            candidates.truncate(MAX_CANDIDATES);
        }
        let kept: Vec<Candidate> = nms(candidates, self.nms_iou);
        let mut objects = Vec::with_capacity(kept.len().min(MAX_DETECTIONS));
        for c in kept.into_iter().take(MAX_DETECTIONS) {
            let bbox = geometry.to_normalised(c.bbox);
            if bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
                continue;
            }
            let label = label_of(c.class_id);
            let embedding = (self.embeddings && c.class_id == 0)
                .then(|| colour_descriptor_balanced(img, bbox, gain));
            objects.push(nvr_subjects::DetectedObject {
                class_id: c.class_id as u32,
                label,
                score: c.score,
                bbox,
                embedding,
            });
        }
        objects
    }
}

/// The COCO class indices `labels` names (by name or as `class<N>`), sorted
/// and deduplicated; `None` (every class) when the list is empty.
fn allowed_labels(labels: &[String]) -> Result<Option<Vec<usize>>, DetectError> {
    if labels.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::new();
    for l in labels {
        let want = l.trim().to_ascii_lowercase();
        let by_name = COCO_LABELS.iter().position(|c| *c == want);
        let by_index = want
            .strip_prefix("class")
            .and_then(|n| n.parse::<usize>().ok());
        match by_name.or(by_index) {
            Some(i) => ids.push(i),
            None => {
                return Err(DetectError::Config {
                    what: "labels".into(),
                    reason: format!("unknown label {l:?} (not a COCO class name or class<N>)"),
                })
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Some(ids))
}

/// Loads the appearance network `path` on the detector's backend; under
/// TensorRT it runs on CUDA, since TensorRT would build its profile for the
/// detector's square input rather than the small crop network's.
fn load_reid(
    path: &Path,
    backend: Backend,
    runtime: RuntimeOptions,
) -> Result<OnnxEmbedder, DetectError> {
    let backend = match backend {
        Backend::TensorRt => Backend::Cuda,
        b => b,
    };
    OnnxEmbedder::load(path, &RuntimeOptions { backend, ..runtime }).map_err(|e| {
        DetectError::Config {
            what: "reid_model".into(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_by_name_or_index_sorted_and_deduplicated() {
        let l = |v: &[&str]| allowed_labels(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(l(&[]).unwrap(), None);
        assert_eq!(
            l(&["car", " Person ", "class0", "person"]).unwrap(),
            Some(vec![0, 2])
        );
        let e = l(&["person", "unicorn"]).unwrap_err().to_string();
        assert!(e.contains("labels") && e.contains("unicorn"), "{e}");
    }

    #[test]
    fn backend_parses_and_prints() {
        for name in ["cpu", "cuda", "rocm", "coreml", "openvino"] {
            let b: Backend = name.parse().unwrap();
            assert_eq!(b.as_str(), name);
        }
        assert_eq!("CUDA".parse::<Backend>().unwrap(), Backend::Cuda);
        let e = "tpu".parse::<Backend>().unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("cuda"), "{e}");
    }

    #[test]
    fn detector_can_move_to_a_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Detector>();
        assert_send::<crate::detect::embed::OnnxEmbedder>();
    }

    #[test]
    fn shape_helpers() {
        assert_eq!(fmt_shape(&[1, -1, 85]), "[1,?,85]");
        assert_eq!(dim(&[1, -1, 85], 1), None);
        assert_eq!(dim(&[1, -1, 85], 2), Some(85));
        assert_eq!(dim(&[1], 5), None);
    }
}
