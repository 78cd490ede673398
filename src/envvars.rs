//! One environment variable for every configuration key, generated from the
//! configuration itself: the seed's names where it gives one
//! ([`crate::config::ENV_VARS`]), otherwise the key path in capitals with
//! `_` for `.` (`tracking.max_lost_ms` is `TRACKING_MAX_LOST_MS`). Each key's
//! meaning comes from the comment on its line in the sample configuration
//! (`config/config.yaml`), so `nvr config env` and the generated reference
//! (`config/ENV.md`) say the same as the sample.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Config, ENV_VARS};

/// The sample configuration, whose comments document the keys.
const SAMPLE: &str = include_str!("../config/config.yaml");

/// One variable.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvVar {
    /// Variable name.
    pub var: String,
    /// Key path it sets.
    pub key: String,
    /// Built-in default, as text (empty: none).
    pub default: String,
    /// What the key means (from the sample configuration).
    pub doc: String,
}

/// Keys that are lists of objects or maps: set in the file, not by a variable.
fn settable(v: &Value) -> bool {
    match v {
        // An empty list may be one of objects: only named ones get a variable.
        Value::Array(items) => {
            !items.is_empty() && items.iter().all(|i| !i.is_object() && !i.is_array())
        }
        Value::Object(_) => false,
        _ => true,
    }
}

fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if child.is_object() {
                    leaves(&path, child, out);
                } else if settable(child) {
                    out.push((path, child.clone()));
                }
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(as_text).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        // An f32 field's default reads as it was written (0.45, not 0.449999...).
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && (f as f32) as f64 == f => (f as f32).to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The comment of every key line of the sample, by key path.
fn sample_docs() -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in SAMPLE.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        if !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        let path = stack
            .iter()
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if let Some((_, comment)) = rest.split_once(" #") {
            docs.entry(path)
                .or_insert_with(|| strip_var(comment.trim()));
        }
    }
    docs
}

/// A comment without its leading `VAR` / `VAR / --flag` naming.
fn strip_var(comment: &str) -> String {
    let mut rest = comment;
    loop {
        let word_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let after = rest[word_end..].trim_start();
        let is_var = word_end >= 3
            && (rest[..word_end].contains('_')
                || after.starts_with([':', ';', '/'])
                || after.is_empty());
        if is_var {
            rest = rest[word_end..].trim_start();
        } else if let Some(r) = rest.strip_prefix("--") {
            rest = r.trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '-');
            rest = rest.trim_start();
        } else if let Some(r) = rest.strip_prefix('/') {
            rest = r.trim_start();
            continue;
        } else {
            break;
        }
        if let Some(r) = rest.strip_prefix('/') {
            rest = r.trim_start();
            continue;
        }
        break;
    }
    rest.trim_start_matches([':', ';', ',']).trim().to_string()
}

/// Every variable, in key order.
pub fn all() -> Vec<EnvVar> {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut keys = Vec::new();
    leaves("", &defaults, &mut keys);
    let named: BTreeMap<&str, &str> = ENV_VARS.iter().map(|(v, k)| (*k, *v)).collect();
    let docs = sample_docs();
    let mut out: Vec<EnvVar> = keys
        .into_iter()
        .map(|(key, default)| EnvVar {
            var: named
                .get(key.as_str())
                .map(|v| v.to_string())
                .unwrap_or_else(|| key.replace('.', "_").to_ascii_uppercase()),
            default: as_text(&default),
            doc: docs.get(&key).cloned().unwrap_or_default(),
            key,
        })
        .collect();
    // Keys without a default value (optional ones) that the seed names.
    for (var, key) in ENV_VARS {
        if !out.iter().any(|e| e.key == *key) {
            out.push(EnvVar {
                var: var.to_string(),
                key: key.to_string(),
                default: String::new(),
                doc: docs.get(*key).cloned().unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// The reference as a Markdown table (`config/ENV.md`).
pub fn markdown() -> String {
    let mut s = String::from(
        "# Environment variables\n\n\
         Generated by `nvr config env --markdown` from the configuration and the \
         comments of `config/config.yaml`; a test keeps it up to date. Every key \
         has one; a variable beats the configuration file, a command-line flag \
         beats both. Values are parsed as the key's type (a list is \
         comma-separated; a boolean is true/yes/on/1 or false/no/off/0).\n\n\
         | variable | key | default | meaning |\n|---|---|---|---|\n",
    );
    for e in all() {
        let default = if e.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", e.default)
        };
        s += &format!(
            "| `{}` | `{}` | {} | {} |\n",
            e.var,
            e.key,
            default,
            e.doc.replace('|', "\\|")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_variable_and_seed_names_win() {
        let vars = all();
        let mut names = std::collections::BTreeSet::new();
        for e in &vars {
            assert!(names.insert(e.var.clone()), "{} used twice", e.var);
        }
        let find = |k: &str| vars.iter().find(|e| e.key == k).map(|e| e.var.as_str());
        assert_eq!(find("api.address"), Some("NVR_API_ADDR"));
        assert_eq!(find("tracking.max_lost_ms"), Some("TRACKING_MAX_LOST_MS"));
        assert_eq!(
            find("detection.allow_cpu_fallback"),
            Some("DETECTION_ALLOW_CPU_FALLBACK")
        );
        assert_eq!(find("spatial.cameras"), Some("SPATIAL_CAMERAS"));
        assert!(
            find("cameras").is_none(),
            "lists of objects are set in the file"
        );
    }

    #[test]
    fn docs_come_from_the_sample() {
        let vars = all();
        let doc = |k: &str| vars.iter().find(|e| e.key == k).map(|e| e.doc.clone());
        assert_eq!(
            doc("tracking.max_lost_ms").as_deref(),
            Some("a track unmatched this long is removed")
        );
        assert!(doc("api.address")
            .unwrap_or_default()
            .starts_with("HTTP API"));
        assert!(doc("log_format")
            .unwrap_or_default()
            .starts_with("text, or json"));
    }

    #[test]
    fn the_reference_is_up_to_date() {
        assert!(
            include_str!("../config/ENV.md") == markdown(),
            "config/ENV.md is stale: run `nvr config env --markdown > config/ENV.md`"
        );
    }

    #[test]
    fn var_names_are_stripped_from_comments() {
        assert_eq!(strip_var("NATS_URL / --nats-url; with x"), "with x");
        assert_eq!(strip_var("LOG_FORMAT / --log-format: text"), "text");
        assert_eq!(strip_var("NVR_API_TOKEN: when set"), "when set");
        assert_eq!(
            strip_var("ByteTrack first-stage score"),
            "ByteTrack first-stage score"
        );
        assert_eq!(strip_var("ONNX model file"), "ONNX model file");
    }
}
