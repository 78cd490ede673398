//! ONNX Runtime: the shared library and its one environment, backends
//! (execution providers) and what is available of them, and building a
//! session for a model file on a backend with CPU fallback.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::builder::AutoDevicePolicy;
use ort::session::Session;

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

pub(super) fn environment() -> Result<&'static Environment, DetectError> {
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

pub(super) fn model_err(path: &Path, reason: impl Into<String>) -> DetectError {
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

pub(super) fn cuda(device_id: i32, gpu: &GpuOptions) -> ep::CUDA {
    let search = conv_search(&gpu.conv_search).unwrap_or(ep::cuda::ConvAlgorithmSearch::Heuristic);
    ep::CUDA::default()
        .with_device_id(device_id)
        .with_conv_algorithm_search(search)
}

pub(super) fn dispatch(
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
