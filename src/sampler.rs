//! Machine figures over time for the health page and the "When to Scale"
//! verdicts: CPU use of the machine and of this process, resident memory,
//! GPU utilisation where `nvidia-smi` exists. The seed's thresholds speak of
//! *sustained* use and of memory *growth*, so one reading is not enough: a
//! task samples every few seconds and keeps an hour of samples, from which
//! the one-minute means and the memory growth per hour are computed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Time between two samples.
const PERIOD: Duration = Duration::from_secs(5);
/// How long samples are kept (the memory-growth window).
const KEEP: Duration = Duration::from_secs(3600);
/// Window of the "sustained" means.
const SUSTAINED: Duration = Duration::from_secs(60);
/// Shortest span of samples a memory growth rate is computed from.
const GROWTH_MIN_SPAN: Duration = Duration::from_secs(600);

/// One reading.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was taken.
    at: Instant,
    /// Machine-wide CPU use, percent of all cores.
    cpu_pct: f64,
    /// This process's CPU use, percent of one core.
    process_cpu_pct: f64,
    /// Resident memory of this process, MiB.
    rss_mb: f64,
    /// GPU utilisation, percent (mean over GPUs), where `nvidia-smi` answers.
    gpu_pct: Option<f64>,
}

/// What the health page shows about the machine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MachineFigures {
    /// Cores of this machine.
    pub cores: usize,
    /// Latest machine-wide CPU use, percent.
    pub cpu_pct: Option<f64>,
    /// Mean machine-wide CPU use over the last minute, percent.
    pub cpu_1m_pct: Option<f64>,
    /// This process's CPU use, percent of one core.
    pub process_cpu_pct: Option<f64>,
    /// Resident memory of this process, MiB.
    pub rss_mb: f64,
    /// Memory growth of this process over up to an hour, MiB per hour
    /// (absent until ten minutes of samples exist).
    pub memory_growth_mb_per_h: Option<f64>,
    /// Mean GPU utilisation over the last minute, percent (absent without
    /// `nvidia-smi`).
    pub gpu_1m_pct: Option<f64>,
    /// Seconds of samples behind these figures.
    pub window_s: f64,
}

/// The sampler: shared by the API handlers, fed by one task.
#[derive(Debug, Default)]
pub struct Sampler {
    /// Samples of the last hour, oldest first.
    samples: Mutex<VecDeque<Sample>>,
    /// Cores of this machine.
    cores: usize,
}

impl Sampler {
    /// Starts sampling until `token` is cancelled.
    pub fn spawn(token: CancellationToken) -> Arc<Sampler> {
        let me = Arc::new(Sampler {
            samples: Mutex::new(VecDeque::new()),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        });
        let s = me.clone();
        tokio::spawn(async move {
            let mut sys = sysinfo::System::new();
            let pid = sysinfo::get_current_pid().ok();
            let gpu = has_nvidia_smi();
            // CPU use is a difference between two refreshes: prime once.
            refresh(&mut sys, pid);
            let mut tick = tokio::time::interval(PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                refresh(&mut sys, pid);
                let process_cpu_pct = pid
                    .and_then(|p| sys.process(p))
                    .map(|p| p.cpu_usage() as f64)
                    .unwrap_or(0.0);
                let gpu_pct = if gpu { gpu_utilisation().await } else { None };
                s.push(Sample {
                    at: Instant::now(),
                    cpu_pct: sys.global_cpu_usage() as f64,
                    process_cpu_pct,
                    rss_mb: nvr_actors::status::rss_mb(),
                    gpu_pct,
                });
            }
        });
        me
    }

    fn push(&self, s: Sample) {
        if let Ok(mut q) = self.samples.lock() {
            q.push_back(s);
            while q.front().is_some_and(|f| s.at.duration_since(f.at) > KEEP) {
                q.pop_front();
            }
        }
    }

    /// The figures of the samples kept so far.
    pub fn figures(&self) -> MachineFigures {
        let q = match self.samples.lock() {
            Ok(q) => q.iter().copied().collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        figures_of(&q, self.cores, nvr_actors::status::rss_mb())
    }
}

fn refresh(sys: &mut sysinfo::System, pid: Option<sysinfo::Pid>) {
    sys.refresh_cpu_usage();
    if let Some(p) = pid {
        sys.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[p]),
            true,
            sysinfo::ProcessRefreshKind::nothing().with_cpu(),
        );
    }
}

/// Whether `nvidia-smi` is on the PATH.
pub fn has_nvidia_smi() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nvidia-smi").is_file()))
}

/// Mean utilisation of the GPUs `nvidia-smi` lists, percent.
async fn gpu_utilisation() -> Option<f64> {
    let out = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The figures of `samples` (oldest first).
fn figures_of(samples: &[Sample], cores: usize, rss_now: f64) -> MachineFigures {
    let Some(last) = samples.last() else {
        return MachineFigures {
            cores,
            rss_mb: round1(rss_now),
            ..Default::default()
        };
    };
    let recent: Vec<&Sample> = samples
        .iter()
        .filter(|s| last.at.duration_since(s.at) <= SUSTAINED)
        .collect();
    let mean = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = recent.iter().filter_map(|s| f(s)).collect();
        (!v.is_empty()).then(|| round1(v.iter().sum::<f64>() / v.len() as f64))
    };
    let span = last.at.duration_since(samples[0].at);
    let growth = (span >= GROWTH_MIN_SPAN).then(|| {
        let t0 = samples[0].at;
        let pts: Vec<(f64, f64)> = samples
            .iter()
            .map(|s| (s.at.duration_since(t0).as_secs_f64() / 3600.0, s.rss_mb))
            .collect();
        round1(slope(&pts))
    });
    MachineFigures {
        cores,
        cpu_pct: Some(round1(last.cpu_pct)),
        cpu_1m_pct: mean(&|s| Some(s.cpu_pct)),
        process_cpu_pct: Some(round1(last.process_cpu_pct)),
        rss_mb: round1(last.rss_mb),
        memory_growth_mb_per_h: growth,
        gpu_1m_pct: mean(&|s| s.gpu_pct),
        window_s: round1(span.as_secs_f64()),
    }
}

/// Least-squares slope of `y` over `x`.
fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(minutes: u64, cpu: f64, rss0: f64, mb_per_h: f64) -> Vec<Sample> {
        let t0 = Instant::now();
        (0..=minutes * 12)
            .map(|i| {
                let secs = i * 5;
                Sample {
                    at: t0 + Duration::from_secs(secs),
                    cpu_pct: cpu,
                    process_cpu_pct: cpu / 2.0,
                    rss_mb: rss0 + mb_per_h * secs as f64 / 3600.0,
                    gpu_pct: None,
                }
            })
            .collect()
    }

    #[test]
    fn growth_needs_ten_minutes_then_is_the_slope() {
        let short = figures_of(&series(5, 50.0, 100.0, 240.0), 2, 0.0);
        assert_eq!(short.memory_growth_mb_per_h, None);
        assert_eq!(short.cpu_1m_pct, Some(50.0));
        let long = figures_of(&series(20, 90.0, 100.0, 240.0), 2, 0.0);
        let g = long.memory_growth_mb_per_h.unwrap();
        assert!((g - 240.0).abs() < 1.0, "{g}");
        assert_eq!(long.gpu_1m_pct, None);
    }

    #[test]
    fn no_samples_no_guesses() {
        let f = figures_of(&[], 4, 12.34);
        assert_eq!(f.cpu_1m_pct, None);
        assert_eq!(f.rss_mb, 12.3);
        assert_eq!(f.cores, 4);
    }
}
