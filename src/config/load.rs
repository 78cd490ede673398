//! Loading: the file parsed into a document tree, environment variables
//! and flags written over it by key path (each write recording where the
//! value came from), floor plans merged in, and the result deserialised.

use super::validate::redact;
use super::*;

/// What the command line asked for, as key-path overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`
    pub config_path: Option<PathBuf>,
    /// (key path, value, flag name)
    pub values: Vec<(String, Value, String)>,
    /// `--floor-plans`
    pub floor_plans: Option<PathBuf>,
}

impl Overrides {
    /// Records `--flag value` for key `path`.
    pub fn set(&mut self, path: &str, value: Value, flag: &str) {
        self.values.push((path.into(), value, flag.into()));
    }
}

/// A loaded configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Source of each key path that did not come from the default.
    pub sources: BTreeMap<String, Source>,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
}

/// Environment variables the seed names and the key path each one sets;
/// every other key gets its path in capitals (see [`crate::envvars`]).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("LOG_LEVEL", "log_level"),
    ("LOG_FORMAT", "log_format"),
    ("NVR_API_ADDR", "api.address"),
    ("NVR_API_TOKEN", "api.token"),
    ("NATS_URL", "nats.url"),
    ("NATS_EMBEDDED", "nats.embedded"),
    ("NATS_STORE_DIR", "nats.store_dir"),
    ("NATS_CREDS", "nats.credentials"),
    ("NATS_USER", "nats.user"),
    ("NATS_PASSWORD", "nats.password"),
    ("NATS_TOKEN", "nats.token"),
    ("NATS_NKEY_SEED_FILE", "nats.nkey_seed_file"),
    ("NATS_ROLES", "nats.roles"),
    ("NATS_CA_FILE", "nats.tls_ca_file"),
    ("NATS_CERT_FILE", "nats.tls_cert_file"),
    ("NATS_KEY_FILE", "nats.tls_key_file"),
    ("NATS_MQTT_LISTEN", "nats.mqtt_listen"),
    ("NATS_JSON_EVENTS", "nats.json_events"),
    ("DETECTION_ADDR", "detection.address"),
    ("DETECTION_EMBEDDED", "detection.embedded"),
    ("DETECTION_BACKEND", "detection.backend"),
    ("DETECTION_DEVICE_ID", "detection.device_id"),
    ("DETECTION_DEFAULT_FPS", "detection.default_fps"),
    ("DETECTION_MIN_CONFIDENCE", "detection.min_confidence"),
    ("DETECTION_MODELS_PATH", "detection.models_path"),
    ("DETECTION_MODEL", "detection.model"),
    ("DETECTION_INPUT_SIZE", "detection.input_size"),
    ("DETECTION_REID_MODEL", "detection.reid_model"),
    ("DETECTION_REID_WEIGHT", "detection.reid_weight"),
    ("DETECTION_WORKERS", "detection.workers"),
    ("DETECTION_THREADS", "detection.threads"),
    ("DETECTION_MAX_BATCH", "detection.max_batch"),
    ("DETECTION_BATCH_WINDOW_MS", "detection.batch_window_ms"),
    ("DETECTION_CUDA_CONV_SEARCH", "detection.cuda_conv_search"),
    ("DETECTION_TRT_FP16", "detection.trt_fp16"),
    ("DETECTION_TRT_CACHE_DIR", "detection.trt_cache_dir"),
    ("SPATIAL_ADDR", "spatial.address"),
    ("SPATIAL_EMBEDDED", "spatial.embedded"),
    ("SPATIAL_REID_ENABLED", "spatial.reid_enabled"),
    ("SPATIAL_MAX_GAP_SECONDS", "spatial.max_gap_seconds"),
    ("SPATIAL_TRACK_TTL_SECONDS", "spatial.track_ttl_seconds"),
    ("SPATIAL_MAX_TRACKS", "spatial.max_tracks"),
    ("SPATIAL_SHARD", "spatial.shard"),
    ("SPATIAL_CAMERAS", "spatial.cameras"),
];

/// Parses an environment variable's text as the type of the field it sets
/// (read from the defaults): text stays text (a shard or camera named `1`),
/// a boolean accepts true/yes/on/1 and false/no/off/0, a number must parse,
/// a list is comma-separated. A field without a default value (an optional
/// one) gets the natural type of the text. A value that does not fit is
/// passed on as text, so the error names the key, the variable and the type.
pub fn env_value(path: &str, text: &str) -> Value {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let target = path
        .split('.')
        .try_fold(&defaults, |v, k| v.get(k))
        .unwrap_or(&Value::Null);
    let t = text.trim();
    let as_text = || Value::String(text.to_string());
    match target {
        Value::String(_) => as_text(),
        Value::Bool(_) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => as_text(),
        },
        Value::Number(_) => guess_scalar(t)
            .filter(Value::is_number)
            .unwrap_or_else(as_text),
        Value::Array(_) => Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        _ => guess_scalar(t).unwrap_or_else(as_text),
    }
}

/// A boolean or a finite number, when `t` reads as one.
fn guess_scalar(t: &str) -> Option<Value> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Some(Value::Bool(true)),
        "false" | "no" | "off" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::from)
}

/// Writes `value` at dotted `path` in `doc`, creating maps on the way.
fn set_path(doc: &mut Value, path: &str, value: Value) -> Result<(), ConfigError> {
    let mut cur = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            if cur.is_null() {
                *cur = Value::Object(Default::default());
            } else {
                return err(format!(
                    "{}: expected a map, found {}",
                    parts[..i].join("."),
                    short(cur)
                ));
            }
        }
        let map = cur
            .as_object_mut()
            .ok_or_else(|| ConfigError(path.into()))?;
        if i + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return Ok(());
        }
        cur = map.entry((*part).to_string()).or_insert(Value::Null);
    }
    Ok(())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..57])
    } else {
        s
    }
}

/// Every leaf key path of a document.
fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Reads a YAML file into a document tree.
fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    parse_yaml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

fn parse_yaml(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(v),
        other => Err(format!("top level must be a map, found {}", short(&other))),
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Loads the configuration: file (from `--config`, `NVR_CONFIG` or the
/// default path), then environment, then flags; then validates it.
pub fn load(ov: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut sources = BTreeMap::new();
    let (path, explicit) = match (&ov.config_path, env("NVR_CONFIG")) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let (mut doc, file) = if path.exists() {
        let doc = read_yaml(&path)?;
        let mut leaves = Vec::new();
        leaf_paths(&doc, "", &mut leaves);
        for l in leaves {
            sources.insert(l, Source::File(path.clone()));
        }
        (doc, Some(path.clone()))
    } else if explicit {
        return err(format!(
            "config file {} does not exist (from {})",
            path.display(),
            if ov.config_path.is_some() {
                "--config"
            } else {
                "NVR_CONFIG"
            }
        ));
    } else {
        (Value::Object(Default::default()), None)
    };

    for e in crate::envvars::all() {
        let (var, key) = (&e.var.as_str(), &e.key.as_str());
        if let Some(text) = env(var) {
            set_path(&mut doc, key, env_value(key, &text))?;
            sources.insert((*key).to_string(), Source::Env((*var).to_string()));
            if *key == "nats.url" && env("NATS_EMBEDDED").is_none() {
                // Naming a server means using it, not starting one.
                set_path(&mut doc, "nats.embedded", Value::Bool(false))?;
                sources.insert("nats.embedded".into(), Source::Env((*var).to_string()));
            }
        }
    }
    for (key, value, flag) in &ov.values {
        set_path(&mut doc, key, value.clone())?;
        sources.insert(key.clone(), Source::Flag(flag.clone()));
    }
    if let Some(dir) = &ov.floor_plans {
        merge_floor_plans(&mut doc, dir, &mut sources)?;
    }

    let config: Config = serde_path_to_error::deserialize(doc.clone()).map_err(|e| {
        let key = e.path().to_string();
        let source = sources
            .get(&key)
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        let value = lookup(&doc, &key)
            .map(|v| format!(" = {}", short(v)))
            .unwrap_or_default();
        ConfigError(format!(
            "{key}{value}: {}{source}",
            one_line(&e.inner().to_string())
        ))
    })?;
    validate(&config)?;
    Ok(Loaded {
        config,
        sources,
        file,
    })
}

fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = doc;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => {
                let idx = part.trim_start_matches('[').trim_end_matches(']');
                a.get(idx.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Adds the floors and cameras of every `*.yaml` in `dir` to the document.
fn merge_floor_plans(
    doc: &mut Value,
    dir: &Path,
    sources: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError(format!("--floor-plans {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    if files.is_empty() {
        return err(format!(
            "--floor-plans {}: no .yaml floor files in the directory",
            dir.display()
        ));
    }
    for f in files {
        let v = read_yaml(&f)?;
        let plan: FloorPlanFile = serde_path_to_error::deserialize(v).map_err(|e| {
            ConfigError(format!(
                "{}: {}: {}",
                f.display(),
                e.path(),
                one_line(&e.inner().to_string())
            ))
        })?;
        let floor = FloorConfig {
            id: plan.id.clone(),
            size_m: plan.size_m,
            plan: plan.plan.clone(),
        };
        push_array(
            doc,
            "floors",
            serde_json::to_value(floor).unwrap_or(Value::Null),
        )?;
        sources.insert("floors".into(), Source::FloorPlan(f.clone()));
        for mut cam in plan.cameras {
            if cam.floor.is_none() {
                cam.floor = Some(plan.id.clone());
            }
            push_array(
                doc,
                "cameras",
                serde_json::to_value(cam).unwrap_or(Value::Null),
            )?;
            sources.insert("cameras".into(), Source::FloorPlan(f.clone()));
        }
    }
    Ok(())
}

fn push_array(doc: &mut Value, key: &str, item: Value) -> Result<(), ConfigError> {
    let map = doc
        .as_object_mut()
        .ok_or_else(|| ConfigError("top level must be a map".into()))?;
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    match entry {
        Value::Array(a) => {
            a.push(item);
            Ok(())
        }
        Value::Null => {
            *entry = Value::Array(vec![item]);
            Ok(())
        }
        other => err(format!("{key}: expected a list, found {}", short(other))),
    }
}

/// Lines of `path = value  # source` for every leaf of the effective config.
pub fn describe(loaded: &Loaded) -> Vec<String> {
    let mut redacted = loaded.config.clone();
    redact(&mut redacted);
    let doc = serde_json::to_value(&redacted).unwrap_or(Value::Null);
    let mut leaves = Vec::new();
    leaf_paths(&doc, "", &mut leaves);
    let mut out = Vec::new();
    for path in leaves {
        let value = lookup(&doc, &path)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let top = path.split('.').next().unwrap_or("");
        let source = loaded
            .sources
            .get(&path)
            .or_else(|| {
                // Lists are sourced as a whole.
                loaded.sources.iter().find_map(|(k, s)| {
                    (path.starts_with(&format!("{k}.")) || k == top).then_some(s)
                })
            })
            .cloned()
            .unwrap_or(Source::Default);
        out.push(format!("{path} = {value}  # {source}"));
    }
    out
}
