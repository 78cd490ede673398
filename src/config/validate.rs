//! Checks of the values that types alone cannot express, and the helpers
//! that parse, redact and describe a configuration.

use super::*;

/// Every tuning value finite and in its range.
fn check_tuning(t: &SpatialTuning) -> Result<(), ConfigError> {
    let unit = [
        ("appearance_weight", t.appearance_weight),
        ("impostor_quantile", t.impostor_quantile),
        ("alpha", t.alpha),
        ("beta", t.beta),
    ];
    for (k, v) in unit {
        if !(0.0..=1.0).contains(&v) {
            return err(format!("spatial.tuning.{k} = {v}: must be within 0..1"));
        }
    }
    let non_negative = [
        ("gate_m", t.gate_m),
        ("max_speed_mps", t.max_speed_mps),
        ("max_handoff_radius_m", t.max_handoff_radius_m),
        ("min_handoff_similarity", t.min_handoff_similarity),
        ("min_similarity", t.min_similarity),
        ("unbind_similarity", t.unbind_similarity),
        ("swap_check_similarity", t.swap_check_similarity),
        ("swap_margin", t.swap_margin),
        ("merge_m", t.merge_m),
        ("pair_m", t.pair_m),
        ("merge_similarity", t.merge_similarity),
        ("unbind_m", t.unbind_m),
        ("foot_offset_m", t.foot_offset_m),
        ("static_after_s", t.static_after_s),
        ("static_m", t.static_m),
        ("static_max_score", t.static_max_score),
        ("static_max_detected", t.static_max_detected),
        ("overlap_gate_m", t.overlap_gate_m),
        ("companion_max_s", t.companion_max_s),
        ("relink_window_s", t.relink_window_s),
    ];
    for (k, v) in non_negative {
        if !(v >= 0.0 && v.is_finite()) {
            return err(format!(
                "spatial.tuning.{k} = {v}: must be a finite number >= 0"
            ));
        }
    }
    Ok(())
}

/// Checks the values that types alone cannot.
pub fn validate(c: &Config) -> Result<(), ConfigError> {
    check_general(c)?;
    check_limits(c)?;
    check_detection(c)?;
    check_tracking(c)?;
    check_spatial(c)?;
    check_layout(c)?;
    Ok(())
}

/// Logging and the NATS settings.
fn check_general(c: &Config) -> Result<(), ConfigError> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    if !["text", "json"].contains(&c.log_format.as_str()) {
        return err(format!(
            "log_format = {:?}: must be text or json",
            c.log_format
        ));
    }
    if !LEVELS.contains(&c.log_level.to_ascii_lowercase().as_str()) {
        return err(format!(
            "log_level = {:?}: must be one of {}",
            c.log_level,
            LEVELS.join(", ")
        ));
    }
    parse_listen(&c.api.address)
        .map_err(|e| ConfigError(format!("api.address = {:?}: {e}", c.api.address)))?;
    validate_nats_url(&c.nats.url)?;
    if !c.nats.mqtt_listen.is_empty() {
        parse_listen(&c.nats.mqtt_listen).map_err(|e| {
            ConfigError(format!("nats.mqtt_listen = {:?}: {e}", c.nats.mqtt_listen))
        })?;
    }
    if c.nats.replicas == 0 || c.nats.replicas > 5 {
        return err(format!(
            "nats.replicas = {}: must be 1..=5",
            c.nats.replicas
        ));
    }
    let r = &c.nats.retention;
    if r.frames_max_age_ms == 0 {
        return err("nats.retention.frames_max_age_ms = 0: must be positive");
    }
    if r.frames_per_camera <= 0 {
        return err(format!(
            "nats.retention.frames_per_camera = {}: must be positive",
            r.frames_per_camera
        ));
    }
    if r.max_age_hours.is_nan() || r.max_age_hours * 3600.0 < 120.0 {
        return err(format!(
            "nats.retention.max_age_hours = {}: must be at least 2 minutes (0.0334), the streams' de-duplication window",
            r.max_age_hours
        ));
    }
    if !matches!(c.nats.roles.as_str(), "auto" | "on" | "off") {
        return err(format!(
            "nats.roles = {:?}: must be auto, on or off",
            c.nats.roles
        ));
    }
    Ok(())
}

/// `limits.*`: the bounds every received message is checked against.
fn check_limits(c: &Config) -> Result<(), ConfigError> {
    let l = &c.limits;
    for (key, v, min) in [
        ("limits.max_ahead_ms", l.max_ahead_ms, 1),
        ("limits.max_behind_ms", l.max_behind_ms, 1_000),
        ("limits.max_objects", l.max_objects as u64, 1),
        ("limits.max_embedding_len", l.max_embedding_len as u64, 1),
        ("limits.max_seq_jump", l.max_seq_jump, 1),
        ("limits.max_image_pixels", l.max_image_pixels, 64 * 64),
    ] {
        if v < min {
            return err(format!("{key} = {v}: must be at least {min}"));
        }
    }
    if !(0.0..=1.0).contains(&l.bbox_tolerance) {
        return err(format!(
            "limits.bbox_tolerance = {}: must be in 0..=1",
            l.bbox_tolerance
        ));
    }
    if c.spatial.embedding_dim > l.max_embedding_len {
        return err(format!(
            "spatial.embedding_dim = {}: larger than limits.max_embedding_len ({})",
            c.spatial.embedding_dim, l.max_embedding_len
        ));
    }
    Ok(())
}

/// `detection.*`.
fn check_detection(c: &Config) -> Result<(), ConfigError> {
    let d = &c.detection;
    host_port(&d.address)
        .map_err(|e| ConfigError(format!("detection.address = {:?}: {e}", d.address)))?;
    d.backend
        .parse::<nvr_actors::detect::runtime::Backend>()
        .map_err(|_| {
            ConfigError(format!(
                "detection.backend = {:?}: must be one of cpu, cuda, rocm, coreml, openvino",
                d.backend
            ))
        })?;
    d.model_type
        .parse::<nvr_actors::detect::decode::ModelType>()
        .map_err(|_| {
            ConfigError(format!(
                "detection.model_type = {:?}: must be yolox or yolov8",
                d.model_type
            ))
        })?;
    if d.input_size < 64 || d.input_size > 2048 || !d.input_size.is_multiple_of(32) {
        return err(format!(
            "detection.input_size = {}: must be a multiple of 32 between 64 and 2048 (e.g. 320, 416, 640)",
            d.input_size
        ));
    }
    if d.workers > 64 {
        return err(format!("detection.workers = {}: at most 64", d.workers));
    }
    if d.max_batch > 64 {
        return err(format!(
            "detection.max_batch = {}: at most 64 (0 = automatic)",
            d.max_batch
        ));
    }
    if d.batch_window_ms > 1000 {
        return err(format!(
            "detection.batch_window_ms = {}: at most 1000",
            d.batch_window_ms
        ));
    }
    if nvr_actors::detect::runtime::conv_search(&d.cuda_conv_search).is_err() {
        return err(format!(
            "detection.cuda_conv_search = {:?}: must be heuristic, exhaustive or default",
            d.cuda_conv_search
        ));
    }
    if d.batch_size == 0 || d.batch_size > 256 {
        return err(format!(
            "detection.batch_size = {}: must be 1..=256",
            d.batch_size
        ));
    }
    check_fps("detection.default_fps", d.default_fps)?;
    check_unit("detection.min_confidence", d.min_confidence)?;
    check_unit("detection.nms_iou", d.nms_iou)?;
    if !(d.reid_weight > 0.0 && d.reid_weight <= 1.0) {
        return err(format!(
            "detection.reid_weight = {}: must be in (0, 1]",
            d.reid_weight
        ));
    }
    if d.max_frame_age_ms == 0 {
        return err("detection.max_frame_age_ms = 0: must be positive");
    }
    if d.jpeg_quality == 0 || d.jpeg_quality > 100 {
        return err(format!(
            "detection.jpeg_quality = {}: must be 1..=100",
            d.jpeg_quality
        ));
    }
    if d.timeout_seconds == 0 {
        return err("detection.timeout_seconds = 0: must be positive");
    }
    for l in &d.labels {
        if !nvr_actors::detect::labels::COCO_LABELS.contains(&l.as_str()) && d.model_type == "yolox"
        {
            return err(format!(
                "detection.labels: {l:?} is not a label of the model"
            ));
        }
    }
    Ok(())
}

/// `tracking.*`: the per-camera trackers.
fn check_tracking(c: &Config) -> Result<(), ConfigError> {
    let t = &c.tracking;
    check_unit("tracking.high_threshold", t.high_threshold)?;
    check_unit("tracking.low_threshold", t.low_threshold)?;
    check_unit("tracking.new_track_threshold", t.new_track_threshold)?;
    check_unit("tracking.birth_threshold", t.birth_threshold)?;
    if t.birth_threshold > t.new_track_threshold {
        return err(format!(
            "tracking.birth_threshold = {}: must not exceed tracking.new_track_threshold ({})",
            t.birth_threshold, t.new_track_threshold
        ));
    }
    check_unit("tracking.match_iou", t.match_iou)?;
    check_unit(
        "tracking.appearance_reference_median",
        t.appearance_reference_median,
    )?;
    if !(0.0..1.0).contains(&t.embedding_momentum) {
        return err(format!(
            "tracking.embedding_momentum = {}: must be at least 0 and below 1",
            t.embedding_momentum
        ));
    }
    if !(0.0..1.0).contains(&t.appearance_momentum) {
        return err(format!(
            "tracking.appearance_momentum = {}: must be at least 0 and below 1",
            t.appearance_momentum
        ));
    }
    if t.low_threshold > t.high_threshold {
        return err(format!(
            "tracking.low_threshold = {}: must not exceed tracking.high_threshold ({})",
            t.low_threshold, t.high_threshold
        ));
    }
    Ok(())
}

/// `spatial.*` settings of the tracker.
fn check_spatial(c: &Config) -> Result<(), ConfigError> {
    let s = &c.spatial;
    host_port(&s.address)
        .map_err(|e| ConfigError(format!("spatial.address = {:?}: {e}", s.address)))?;
    if !(s.max_gap_seconds >= 0.0 && s.max_gap_seconds.is_finite()) {
        return err(format!(
            "spatial.max_gap_seconds = {}: must be >= 0",
            s.max_gap_seconds
        ));
    }
    if !(s.max_coast_seconds >= 0.0 && s.max_coast_seconds.is_finite()) {
        return err(format!(
            "spatial.max_coast_seconds = {}: must be >= 0",
            s.max_coast_seconds
        ));
    }
    if !(s.track_ttl_seconds > 0.0 && s.track_ttl_seconds.is_finite()) {
        return err(format!(
            "spatial.track_ttl_seconds = {}: must be positive",
            s.track_ttl_seconds
        ));
    }
    if s.max_tracks == 0 {
        return err("spatial.max_tracks = 0: must be positive");
    }
    if s.matching_interval_ms == 0 {
        return err("spatial.matching_interval_ms = 0: must be positive");
    }
    check_tuning(&s.tuning)?;
    Ok(())
}

/// Floors, cameras and spatial shards: unique ids, each reference resolves, calibrations are sound.
fn check_layout(c: &Config) -> Result<(), ConfigError> {
    let s = &c.spatial;
    let mut floors = std::collections::BTreeSet::new();
    for (i, f) in c.floors.iter().enumerate() {
        token(&format!("floors[{i}].id"), &f.id)?;
        if !floors.insert(f.id.as_str()) {
            return err(format!("floors[{i}].id = {:?}: duplicate floor id", f.id));
        }
        if f.size_m.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return err(format!(
                "floors[{i}].size_m = {:?}: must be non-negative metres",
                f.size_m
            ));
        }
    }
    let mut cams = std::collections::BTreeSet::new();
    for (i, cam) in c.cameras.iter().enumerate() {
        let key = format!("cameras[{i}]");
        token(&format!("{key}.id"), &cam.id)?;
        if !cams.insert(cam.id.as_str()) {
            return err(format!("{key}.id = {:?}: duplicate camera id", cam.id));
        }
        if let Some(url) = &cam.url {
            validate_camera_url(url).map_err(|e| {
                ConfigError(format!("{key}.url = {url:?} (camera {}): {e}", cam.id))
            })?;
        }
        if let Some(t) = &cam.rtsp_transport {
            if t != "tcp" && t != "udp" {
                return err(format!("{key}.rtsp_transport = {t:?}: must be tcp or udp"));
            }
        }
        if let Some(fps) = cam.detection.fps {
            check_fps(&format!("{key}.detection.fps"), fps)?;
        }
        if let Some(mc) = cam.detection.min_confidence {
            check_unit(&format!("{key}.detection.min_confidence"), mc)?;
        }
        if let Some(wp) = cam.detection.white_point {
            if wp.iter().any(|v| !v.is_finite() || *v < 1.0 || *v > 255.0) {
                return err(format!(
                    "{key}.detection.white_point = {wp:?} (camera {}): each of R, G, B must be a \
                     mean colour from 1 to 255, as the detection status measures it",
                    cam.id
                ));
            }
        }
        if let Some(f) = &cam.floor {
            if !floors.contains(f.as_str()) {
                return err(format!(
                    "{key}.floor = {f:?} (camera {}): no such floor in floors[]",
                    cam.id
                ));
            }
        }
        if let Some(cal) = &cam.calibration {
            camera_homography(cam, cal)?;
        }
    }
    for (i, sh) in s.shards.iter().enumerate() {
        token(&format!("spatial.shards[{i}].name"), &sh.name)?;
        for cam in &sh.cameras {
            if !cams.contains(cam.as_str()) {
                return err(format!(
                    "spatial.shards[{i}].cameras: {cam:?} is not a configured camera"
                ));
            }
        }
    }
    if !s.shard.is_empty() {
        token("spatial.shard", &s.shard)?;
    }
    for cam in &s.cameras {
        token("spatial.cameras", cam)?;
    }
    Ok(())
}

/// The homography of a camera's calibration, with a message naming the
/// camera when the points are degenerate or inconsistent.
pub fn camera_homography(
    cam: &CameraConfig,
    cal: &Calibration,
) -> Result<nvr_actors::spatial::homography::Homography, ConfigError> {
    use nvr_actors::spatial::homography::Homography;
    if let Some(m) = cal.homography {
        return Homography::from_matrix(m)
            .map_err(|e| ConfigError(format!("camera {}: calibration.homography: {e}", cam.id)));
    }
    let img: Vec<[f64; 2]> = cal.points.iter().map(|p| p.image).collect();
    let floor: Vec<[f64; 2]> = cal.points.iter().map(|p| p.floor).collect();
    Homography::from_points(&img, &floor)
        .map_err(|e| ConfigError(format!("camera {}: calibration.points: {e}", cam.id)))
}

fn token(key: &str, v: &str) -> Result<(), ConfigError> {
    nvr_subjects::subjects::validate_token(v).map_err(|e| ConfigError(format!("{key}: {e}")))
}

fn check_fps(key: &str, v: f64) -> Result<(), ConfigError> {
    if !(v > 0.0 && v <= 120.0) {
        return err(format!(
            "{key} = {v}: must be between 0 and 120 frames per second"
        ));
    }
    Ok(())
}

fn check_unit(key: &str, v: f32) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&v) {
        return err(format!("{key} = {v}: must be between 0 and 1"));
    }
    Ok(())
}

/// `host:port` with a valid port.
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number 0..65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("host is empty".into());
    }
    Ok((host.to_string(), port))
}

/// A socket address to listen on (`host:port`; `localhost` allowed).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = host_port(s)?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address or localhost"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A NATS URL: `nats://`, `tls://`, `ws://`, `wss://` or bare `host:port`;
/// several may be given separated by commas.
pub fn validate_nats_url(url: &str) -> Result<(), ConfigError> {
    for one in url.split(',') {
        let one = one.trim();
        let rest = match one.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    return err(format!(
                        "nats.url = {url:?}: scheme {scheme:?} is not nats, tls, ws or wss"
                    ));
                }
                rest
            }
            None => one,
        };
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        host_port(hostport).map_err(|e| ConfigError(format!("nats.url = {url:?}: {e}")))?;
    }
    Ok(())
}

/// Replaces every secret of the configuration by `***`: passwords and
/// tokens, in their own keys and inside URLs.
pub fn redact(c: &mut Config) {
    for secret in [&mut c.nats.password, &mut c.nats.token, &mut c.api.token] {
        if !secret.is_empty() {
            *secret = "***".into();
        }
    }
    c.nats.url = redact_nats_url(&c.nats.url);
    for cam in &mut c.cameras {
        if let Some(u) = &cam.url {
            cam.url = Some(nvr_actors::bus::mask_url(u));
        }
    }
}

/// A NATS URL (or comma-separated list) with any `user:password@` or
/// `token@` replaced by `***`.
pub fn redact_nats_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = match one.split_once("://") {
                Some((s, r)) => (format!("{s}://"), r),
                None => (String::new(), one),
            };
            match rest.rsplit_once('@') {
                Some((auth, host)) => match auth.split_once(':') {
                    Some((user, _)) => format!("{scheme}{user}:***@{host}"),
                    None => format!("{scheme}***@{host}"),
                },
                None => one.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a camera URL with the rules the camera itself applies
/// ([`nvr_actors::video::classify`]: scheme, file existence), plus a host
/// for network sources.
pub fn validate_camera_url(url: &str) -> Result<(), String> {
    use nvr_actors::video::SourceKind;
    let kind = nvr_actors::video::classify(url).map_err(|e| e.to_string())?;
    if matches!(kind, SourceKind::Rtsp | SourceKind::Http) {
        let rest = url.trim().split_once("://").map_or("", |(_, r)| r);
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        if host.is_empty() {
            return Err("has no host".into());
        }
    }
    Ok(())
}
