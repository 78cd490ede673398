//! Prometheus exposition through `prometheus-client`: a scrape turns the
//! status documents the API and the nodes already keep into counters,
//! gauges and histograms (seconds, bytes), labelled per node, worker,
//! camera and shard, and encodes them in the OpenMetrics text format.
//!
//! The aggregated counters stay monotonic when a detection node leaves or a
//! worker restarts: [`Monotonic`] adds the last value of every series it has
//! seen reset or vanish to what it reports.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use nvr_actors::status::{histogram_from_b64, DetectionNodeStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::node::SpatialNodeStatus;

/// Content type of [`Exposition::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`to_prometheus_text`]'s output.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Label pairs of one series.
type Labels = Vec<(String, String)>;

/// One sample of a family.
#[derive(Debug)]
enum Sample {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram: sum, count and cumulative bucket counts.
    Histogram(f64, u64, Vec<(f64, u64)>),
}

/// A metric family: name (without `_total` or the unit), help, unit, type
/// and its labelled samples.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, Sample)>,
}

/// The metrics of one scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Families by name, in the order they were first added.
    families: Vec<Family>,
}

/// Labels from `(key, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Exposition {
    fn family(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        kind: MetricType,
    ) -> &mut Family {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    unit,
                    kind,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    /// A counter sample (`name` gets `_total` appended).
    pub fn counter(&mut self, name: &str, help: &str, l: Labels, v: u64) {
        self.family(name, help, None, MetricType::Counter)
            .samples
            .push((l, Sample::Counter(v)));
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, l: Labels, v: f64) {
        self.family(name, help, unit, MetricType::Gauge)
            .samples
            .push((l, Sample::Gauge(v)));
    }

    /// A latency histogram in seconds from an HDR histogram of microseconds
    /// (`name` gets `_seconds` appended).
    pub fn seconds(&mut self, name: &str, help: &str, l: Labels, h: &Histogram<u64>) {
        let count = h.len();
        let sum = h.mean() * count as f64 / 1e6;
        // The encoder takes each bucket's own count and accumulates them.
        let mut below = 0;
        let buckets = BUCKETS_S
            .iter()
            .map(|b| (*b, h.count_between(0, (b * 1e6) as u64)))
            .chain(std::iter::once((f64::INFINITY, count)))
            .map(|(b, cumulative)| {
                let own = cumulative.saturating_sub(below);
                below = below.max(cumulative);
                (b, own)
            })
            .collect();
        self.family(name, help, Some(Unit::Seconds), MetricType::Histogram)
            .samples
            .push((l, Sample::Histogram(sum, count, buckets)));
    }

    /// The OpenMetrics text of everything added.
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut fam = encoder.encode_descriptor(&f.name, &f.help, f.unit.as_ref(), f.kind)?;
            for (l, s) in &f.samples {
                let mut m = fam.encode_family(l)?;
                match s {
                    Sample::Counter(v) => ConstCounter::new(*v).encode(m)?,
                    Sample::Gauge(v) => ConstGauge::new(*v).encode(m)?,
                    Sample::Histogram(sum, count, buckets) => {
                        m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition, for
/// scrapers and tools that do not ask for OpenMetrics (`promtool check
/// metrics` among them): counter families are named with their `_total`
/// suffix, and the `# UNIT` and `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Totals that never go down although the series they sum (a worker's
/// counter) reset or disappear.
#[derive(Debug, Default)]
pub struct Monotonic {
    /// Per counter and series: the last value seen and what earlier resets
    /// of that series had reached.
    seen: Mutex<BTreeMap<(String, String), (u64, u64)>>,
}

impl Monotonic {
    /// The total of counter `name` given the current value of each live
    /// series; series seen before and gone now keep their last value.
    pub fn total(&self, name: &str, series: &[(String, u64)]) -> u64 {
        let Ok(mut seen) = self.seen.lock() else {
            return series.iter().map(|s| s.1).sum();
        };
        for (id, v) in series {
            let e = seen.entry((name.to_string(), id.clone())).or_insert((0, 0));
            if *v < e.0 {
                e.1 += e.0;
            }
            e.0 = *v;
        }
        seen.iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, (last, before))| last + before)
            .sum()
    }
}

/// The process's [`Monotonic`] totals.
pub fn totals() -> &'static Monotonic {
    static TOTALS: std::sync::OnceLock<Monotonic> = std::sync::OnceLock::new();
    TOTALS.get_or_init(Monotonic::default)
}

/// Per-worker metrics of detection nodes.
pub fn detection_workers(exp: &mut Exposition, nodes: &[DetectionNodeStatus]) {
    for n in nodes {
        let node = labels(&[("node", &n.node), ("backend", &n.backend)]);
        exp.gauge(
            "nvr_detection_node_capacity_fps",
            "Frames per second the node's warmed-up workers sustain (warm-up measurement)",
            None,
            node.clone(),
            n.layout.capacity_fps,
        );
        exp.gauge(
            "nvr_detection_node_warming_workers",
            "Workers still warming up",
            None,
            node,
            n.layout.warming as f64,
        );
        for w in &n.workers {
            let l = labels(&[("node", &n.node), ("worker", &w.worker)]);
            let c = |exp: &mut Exposition, name: &str, help: &str, v: u64| {
                exp.counter(name, help, l.clone(), v)
            };
            c(
                exp,
                "nvr_detection_worker_frames_processed",
                "Frames with published detections, per worker",
                w.processed_count,
            );
            c(
                exp,
                "nvr_detection_worker_frames_skipped",
                "Frames skipped as too old, per worker",
                w.skipped_count,
            );
            c(
                exp,
                "nvr_detection_worker_frames_failed",
                "Frames that failed for good, per worker",
                w.error_count,
            );
            exp.gauge(
                "nvr_detection_worker_fps",
                "Frames processed per second over the last 10 s, per worker",
                None,
                l.clone(),
                w.fps,
            );
            exp.gauge(
                "nvr_detection_worker_in_flight",
                "Frames a worker has pulled and not yet acknowledged (left for redelivery if it dies)",
                None,
                l.clone(),
                w.in_flight as f64,
            );
            if let Some(h) = histogram_from_b64(&w.latency_hist) {
                exp.seconds(
                    "nvr_detection_inference",
                    "Time of a model call (decode, inference, NMS) per frame",
                    l.clone(),
                    &h,
                );
            }
            if let Some(h) = histogram_from_b64(&w.e2e_hist) {
                exp.seconds(
                    "nvr_detection_end_to_end",
                    "Capture to detections published",
                    l.clone(),
                    &h,
                );
            }
        }
    }
}

/// Per-shard metrics of spatial nodes.
pub fn spatial_shards(exp: &mut Exposition, nodes: &[SpatialNodeStatus]) {
    for n in nodes {
        for sh in &n.shards {
            let l = labels(&[("node", &n.node), ("shard", &sh.shard)]);
            let states = [
                ("observed_or_coasting", sh.stats.active_tracks),
                ("lost", sh.stats.lost_tracks),
                ("static", sh.stats.static_tracks),
                ("duplicate", sh.stats.duplicate_tracks),
            ];
            for (state, v) in states {
                let mut ls = l.clone();
                ls.push(("state".into(), state.into()));
                exp.gauge(
                    "nvr_spatial_identities",
                    "Global identities held by the shard, by state",
                    None,
                    ls,
                    v as f64,
                );
            }
            let c = |exp: &mut Exposition, name: &str, help: &str, v: u64| {
                exp.counter(name, help, l.clone(), v)
            };
            c(
                exp,
                "nvr_spatial_identities_created",
                "Global identities created",
                sh.stats.total_tracks,
            );
            c(
                exp,
                "nvr_spatial_handoffs",
                "Completed handoffs between cameras",
                sh.stats.handoffs_completed,
            );
            c(
                exp,
                "nvr_spatial_handoff_failures",
                "Handoffs refused on appearance",
                sh.stats.handoff_failures,
            );
            c(
                exp,
                "nvr_spatial_identities_merged",
                "Identities merged into an older one they coincided with",
                sh.stats.merged,
            );
            c(
                exp,
                "nvr_spatial_identities_relinked",
                "Young identities taken over by the lost identity they turned out to be",
                sh.stats.relinked,
            );
            c(
                exp,
                "nvr_spatial_sources_unbound",
                "Camera tracks unbound from an identity they disagreed with",
                sh.stats.unbound_sources,
            );
            c(
                exp,
                "nvr_spatial_sources_rebound",
                "Camera tracks moved to the identity another camera gives at their floor point",
                sh.stats.rebound_sources,
            );
            c(
                exp,
                "nvr_spatial_handoffs_undone",
                "Handoffs across a blind gap undone because every camera track they bound was taken away again",
                sh.stats.handoffs_undone,
            );
            c(
                exp,
                "nvr_spatial_cycles",
                "Matching cycles run",
                sh.stats.cycles,
            );
            c(
                exp,
                "nvr_spatial_messages_ingested",
                "Camera-tracks messages taken in",
                sh.ingested,
            );
            if let Some(h) = histogram_from_b64(&sh.processing_hist) {
                exp.seconds(
                    "nvr_spatial_cycle",
                    "Time of one matching cycle",
                    l.clone(),
                    &h,
                );
            }
        }
    }
}

/// Process-level gauges every role exports.
pub fn process(exp: &mut Exposition) {
    exp.gauge(
        "nvr_process_resident_memory",
        "Resident memory of this process",
        Some(Unit::Bytes),
        Vec::new(),
        nvr_actors::status::rss_mb() * 1024.0 * 1024.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_totals_survive_resets_and_departures() {
        let m = Monotonic::default();
        let s = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(m.total("p", &s(&[("a", 10), ("b", 5)])), 15);
        // b leaves: its 5 stay.
        assert_eq!(m.total("p", &s(&[("a", 12)])), 17);
        // a restarts from 0: its 12 stay.
        assert_eq!(m.total("p", &s(&[("a", 3)])), 20);
        assert_eq!(m.total("other", &s(&[("a", 1)])), 1);
    }

    #[test]
    fn exposition_names_units_and_types() {
        let mut e = Exposition::default();
        e.counter("nvr_x_frames", "Frames", labels(&[("camera", "door")]), 7);
        e.gauge("nvr_y", "Y", None, Vec::new(), 1.5);
        let mut h = nvr_actors::status::new_histogram();
        h.record(2_000).unwrap();
        h.record(30_000).unwrap();
        e.seconds("nvr_z", "Z", Vec::new(), &h);
        let text = e.render();
        assert!(text.contains("# TYPE nvr_x_frames counter"), "{text}");
        assert!(
            text.contains("nvr_x_frames_total{camera=\"door\"} 7"),
            "{text}"
        );
        assert!(text.contains("nvr_y 1.5"), "{text}");
        assert!(text.contains("# TYPE nvr_z_seconds histogram"), "{text}");
        assert!(
            text.contains("nvr_z_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("nvr_z_seconds_count 2"), "{text}");
        assert!(
            text.contains("nvr_z_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("nvr_z_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        let prom = to_prometheus_text(&text);
        assert!(prom.contains("# TYPE nvr_x_frames_total counter"), "{prom}");
        assert!(prom.contains("# HELP nvr_x_frames_total Frames"), "{prom}");
        assert!(
            !prom.contains("# EOF") && !prom.contains("# UNIT"),
            "{prom}"
        );
        assert!(prom.contains("# TYPE nvr_z_seconds histogram"), "{prom}");
    }
}
