//! ONNX Runtime session wrapper: runtime initialisation, backend selection,
//! model validation and the end-to-end `detect` call (letterbox, inference,
//! head decoding, class-aware NMS, optional appearance descriptors).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::builder::AutoDevicePolicy;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::decode::{decode_yolov8, decode_yolox, yolox_anchor_count, Candidate, ModelType};
use super::embed::{colour_descriptor, combine, OnnxEmbedder};
use super::image::RgbImage;
use super::labels::{label_of, COCO_LABELS};
use super::letterbox::{Geometry, Letterboxer};
use super::nms::nms;
use super::DetectError;

/// File name of the ONNX Runtime library installed by `scripts/setup`.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

/// Most candidates passed to NMS (the highest-scoring ones), bounding its cost
/// when a very low confidence threshold is configured.
pub const MAX_CANDIDATES: usize = 4096;

/// Most objects returned for one frame.
pub const MAX_DETECTIONS: usize = 300;

/// Execution provider to run the model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Plain CPU.
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// AMD ROCm.
    Rocm,
    /// Apple CoreML.
    CoreMl,
    /// Intel OpenVINO.
    OpenVino,
    /// NVIDIA TensorRT (through ONNX Runtime's TensorRT provider; layers it
    /// cannot take run on CUDA).
    TensorRt,
}

impl Backend {
    /// Config name of the backend.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Rocm => "rocm",
            Backend::CoreMl => "coreml",
            Backend::OpenVino => "openvino",
            Backend::TensorRt => "tensorrt",
        }
    }

    /// ONNX Runtime's name of the execution provider.
    pub fn provider_name(&self) -> &'static str {
        match self {
            Backend::Cpu => "CPUExecutionProvider",
            Backend::Cuda => ep::CUDA::NAME,
            Backend::Rocm => ep::ROCm::NAME,
            Backend::CoreMl => ep::CoreML::NAME,
            Backend::OpenVino => ep::OpenVINO::NAME,
            Backend::TensorRt => ep::TensorRT::NAME,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Backend::Cpu),
            "cuda" => Ok(Backend::Cuda),
            "rocm" => Ok(Backend::Rocm),
            "coreml" => Ok(Backend::CoreMl),
            "openvino" => Ok(Backend::OpenVino),
            "tensorrt" | "trt" => Ok(Backend::TensorRt),
            other => Err(DetectError::Config {
                what: "backend".into(),
                reason: format!(
                    "{other:?} (expected cpu, cuda, tensorrt, rocm, coreml or openvino)"
                ),
            }),
        }
    }
}

/// The data directory: `NVR_DATA_DIR` if set, else `./data` if it exists,
/// else the workspace's `data/` (where `scripts/setup` installs everything).
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NVR_DATA_DIR") {
        return PathBuf::from(d);
    }
    let local = PathBuf::from("data");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data"))
}

/// Where the ONNX Runtime library is loaded from: `ORT_DYLIB_PATH` if set,
/// else `<data dir>/onnxruntime/libonnxruntime.so.1.31.1`.
pub fn runtime_library_path() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => data_dir().join("onnxruntime").join(ORT_LIB_NAME),
    }
}

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment() -> Result<&'static Environment, DetectError> {
    RUNTIME
        .get_or_init(|| {
            let path = runtime_library_path();
            if !path.is_file() {
                return Err(format!(
                    "{} not found; run scripts/setup (or set ORT_DYLIB_PATH to libonnxruntime)",
                    path.display()
                ));
            }
            let path = path.canonicalize().unwrap_or(path);
            ort::init_from(&path)
                .map_err(|e| format!("{e}; run scripts/setup (or set ORT_DYLIB_PATH)"))?
                .with_name("nvr")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))
        })
        .as_ref()
        .map_err(|e| DetectError::Runtime(e.clone()))
}

/// Load the ONNX Runtime library once per process (later calls return the
/// first call's outcome).
pub fn init_runtime() -> Result<(), DetectError> {
    environment().map(|_| ())
}

/// Whether ONNX Runtime (after [`init_runtime`]) was built with `backend`.
pub fn backend_available(backend: Backend) -> Result<bool, DetectError> {
    environment()?;
    let r = match backend {
        Backend::Cpu => Ok(true),
        Backend::Cuda => ep::CUDA::is_available(),
        Backend::Rocm => ep::ROCm::is_available(),
        Backend::CoreMl => ep::CoreML::is_available(),
        Backend::OpenVino => ep::OpenVINO::is_available(),
        Backend::TensorRt => ep::TensorRT::is_available(),
    };
    r.map_err(|e| {
        DetectError::Runtime(format!(
            "listing execution providers: {}",
            one_line(&e.to_string())
        ))
    })
}

pub(super) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A model's name for logs and status: its file stem (the whole path when
/// it has none).
pub(super) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn model_err(path: &Path, reason: impl Into<String>) -> DetectError {
    DetectError::Model {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// How to create an ONNX Runtime session (shared by the detector, the re-ID
/// embedder and the benchmark).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Requested execution provider.
    pub backend: Backend,
    /// Accelerator index for CUDA and ROCm.
    pub device_id: i32,
    /// Use the CPU (with a warning) when the requested backend is unavailable.
    pub allow_cpu_fallback: bool,
    /// Intra-op threads; 0 = ONNX Runtime's default.
    pub threads: usize,
    /// GPU provider settings (CUDA and TensorRT).
    pub gpu: GpuOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            backend: Backend::Cpu,
            device_id: 0,
            allow_cpu_fallback: false,
            threads: 0,
            gpu: GpuOptions::default(),
        }
    }
}

/// Settings of the GPU execution providers that decide how long the first
/// inference takes and how fast the rest run.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuOptions {
    /// cuDNN convolution algorithm search: `heuristic` (fast first call, the
    /// default), `exhaustive` (benchmarks every algorithm on the first call
    /// of each shape: seconds per worker) or `default`.
    pub conv_search: String,
    /// TensorRT: build FP16 engines.
    pub trt_fp16: bool,
    /// TensorRT: directory where built engines are cached between starts
    /// (empty: no cache, every start rebuilds them).
    pub trt_cache_dir: String,
    /// TensorRT: largest batch of the engine's optimisation profile.
    pub max_batch: usize,
    /// Square input size, for the TensorRT profile.
    pub input_size: u32,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            conv_search: "heuristic".into(),
            trt_fp16: true,
            trt_cache_dir: String::new(),
            max_batch: 16,
            input_size: 416,
        }
    }
}

/// The cuDNN search named `name` (`heuristic`, `exhaustive` or `default`).
pub fn conv_search(name: &str) -> Result<ep::cuda::ConvAlgorithmSearch, DetectError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "heuristic" => Ok(ep::cuda::ConvAlgorithmSearch::Heuristic),
        "exhaustive" => Ok(ep::cuda::ConvAlgorithmSearch::Exhaustive),
        "default" => Ok(ep::cuda::ConvAlgorithmSearch::Default),
        other => Err(DetectError::Config {
            what: "cuda_conv_search".into(),
            reason: format!("{other:?} (expected heuristic, exhaustive or default)"),
        }),
    }
}

/// A session together with the backend it actually runs on.
pub(crate) struct BuiltSession {
    /// The ONNX Runtime session.
    pub session: Session,
    /// Effective backend (CPU after a fallback).
    pub backend: Backend,
    /// Why the requested backend is not the effective one.
    pub fallback_reason: Option<String>,
}

fn cuda(device_id: i32, gpu: &GpuOptions) -> ep::CUDA {
    let search = conv_search(&gpu.conv_search).unwrap_or(ep::cuda::ConvAlgorithmSearch::Heuristic);
    ep::CUDA::default()
        .with_device_id(device_id)
        .with_conv_algorithm_search(search)
}

fn dispatch(
    backend: Backend,
    device_id: i32,
    gpu: &GpuOptions,
    input_name: &str,
) -> Vec<ExecutionProviderDispatch> {
    let d = match backend {
        Backend::Cpu => return Vec::new(),
        Backend::TensorRt => {
            let s = gpu.input_size;
            let shape = |b: usize| format!("{input_name}:{b}x3x{s}x{s}");
            let mut trt = ep::TensorRT::default()
                .with_device_id(device_id)
                .with_fp16(gpu.trt_fp16)
                .with_profile_min_shapes(shape(1))
                .with_profile_opt_shapes(shape(gpu.max_batch.max(1)))
                .with_profile_max_shapes(shape(gpu.max_batch.max(1)));
            if !gpu.trt_cache_dir.is_empty() {
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&gpu.trt_cache_dir)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&gpu.trt_cache_dir);
            }
            // Layers TensorRT does not take run on CUDA.
            return vec![
                trt.build().error_on_failure(),
                cuda(device_id, gpu).build().error_on_failure(),
            ];
        }
        Backend::Cuda => cuda(device_id, gpu).build(),
        Backend::Rocm => ep::ROCm::default().with_device_id(device_id).build(),
        Backend::CoreMl => ep::CoreML::default().build(),
        Backend::OpenVino => ep::OpenVINO::default().build(),
    };
    vec![d.error_on_failure()]
}

/// Create a session for `path`, registering the requested execution provider
/// (checking that this ONNX Runtime build has it) and falling back to the CPU
/// only when `allow_cpu_fallback` is set.
pub(crate) fn build_session(
    path: &Path,
    opts: &RuntimeOptions,
) -> Result<BuiltSession, DetectError> {
    let env = environment()?;
    if !path.is_file() {
        return Err(model_err(
            path,
            "file not found (run scripts/setup to download the default models)",
        ));
    }
    // TensorRT's optimisation profile names the model's input.
    let input_name = if opts.backend == Backend::TensorRt {
        Session::builder(env)
            .and_then(|mut b| b.commit_from_file(path))
            .ok()
            .and_then(|s| s.inputs().first().map(|i| i.name().to_string()))
            .unwrap_or_else(|| "images".into())
    } else {
        String::new()
    };
    // Err(true, ..) when the execution provider failed, Err(false, ..) when the model did.
    let builder = |backend: Backend| -> Result<Session, (bool, String)> {
        let mut b = Session::builder(env).map_err(|e| (false, one_line(&e.to_string())))?;
        // No automatic device selection: the configured backend (or the CPU)
        // is exactly what runs, on every platform.
        b = b
            .with_auto_device(AutoDevicePolicy::PreferCPU)
            .map_err(|e| {
                (
                    false,
                    format!(
                        "disabling automatic device selection: {}",
                        one_line(&e.to_string())
                    ),
                )
            })?;
        if opts.threads > 0 {
            b = b.with_intra_threads(opts.threads).map_err(|e| {
                (
                    false,
                    format!(
                        "setting {} threads: {}",
                        opts.threads,
                        one_line(&e.to_string())
                    ),
                )
            })?;
        }
        let providers = dispatch(backend, opts.device_id, &opts.gpu, &input_name);
        if !providers.is_empty() {
            b = b
                .with_execution_providers(providers)
                .map_err(|e| (true, one_line(&e.to_string())))?;
        }
        b.commit_from_file(path)
            .map_err(|e| (backend != Backend::Cpu, one_line(&e.to_string())))
    };
    let requested = opts.backend;
    let failure = if backend_available(requested)? {
        match builder(requested) {
            Ok(session) => {
                return Ok(BuiltSession {
                    session,
                    backend: requested,
                    fallback_reason: None,
                })
            }
            Err((false, e)) => return Err(model_err(path, e)),
            Err((true, e)) => DetectError::BackendFailed {
                backend: requested.as_str().into(),
                reason: e,
            },
        }
    } else {
        DetectError::BackendUnavailable {
            backend: requested.as_str().into(),
            reason: format!(
                "{} missing; install an ONNX Runtime with {requested} support and point ORT_DYLIB_PATH at it, use backend cpu, or allow CPU fallback",
                requested.provider_name()
            ),
        }
    };
    if !opts.allow_cpu_fallback {
        return Err(failure);
    }
    let reason = failure.to_string();
    tracing::warn!(model = %path.display(), "{reason}; falling back to cpu");
    let session = builder(Backend::Cpu).map_err(|(_, e)| model_err(path, e))?;
    Ok(BuiltSession {
        session,
        backend: Backend::Cpu,
        fallback_reason: Some(reason),
    })
}

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
fn input_is_fixed(session: &Session) -> bool {
    session
        .inputs()
        .first()
        .and_then(|i| i.dtype().tensor_shape())
        .is_some_and(|s| dim(s, 2).is_some() && dim(s, 3).is_some())
}

/// Check the first output against `model_type`; returns the class count when
/// the shape fixes it.
fn validate_output(
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
        let allowed = if opts.labels.is_empty() {
            None
        } else {
            let mut ids = Vec::new();
            for l in &opts.labels {
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
                            reason: format!(
                                "unknown label {l:?} (not a COCO class name or class<N>)"
                            ),
                        })
                    }
                }
            }
            ids.sort_unstable();
            ids.dedup();
            Some(ids)
        };
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
        let reid =
            match &opts.reid_model {
                Some(p) if opts.embeddings => {
                    // TensorRT would build its profile for the detector's square
                    // input; the small crop network runs on CUDA instead.
                    let backend = match opts.backend {
                        Backend::TensorRt => Backend::Cuda,
                        b => b,
                    };
                    let reid = OnnxEmbedder::load(p, &RuntimeOptions { backend, ..runtime })
                        .map_err(|e| DetectError::Config {
                            what: "reid_model".into(),
                            reason: e.to_string(),
                        })?;
                    Some(reid)
                }
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
        let mut objects = self.finish(candidates, &geometry, img);
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

    /// NMS, mapping back to the source image and descriptors: the objects
    /// of one frame from its candidates.
    pub(super) fn finish(
        &self,
        mut candidates: Vec<Candidate>,
        geometry: &Geometry,
        img: &RgbImage,
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
            let embedding =
                (self.embeddings && c.class_id == 0).then(|| colour_descriptor(img, bbox));
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

#[cfg(test)]
mod tests {
    use super::*;

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
