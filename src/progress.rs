//! Feedback on long work: a progress bar when stderr is a terminal, and a
//! plain line every ten seconds otherwise (logs and pipes stay readable).
//! Results still go to stdout; progress goes to stderr.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed without a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Progress of one piece of work with a known total.
pub struct Progress {
    /// The bar, on a terminal.
    bar: Option<ProgressBar>,
    /// What is being done, for plain lines.
    what: String,
    /// Unit of the count, for plain lines.
    unit: String,
    /// Total expected.
    total: u64,
    /// Done so far.
    done: u64,
    /// When the last plain line was printed.
    last_line: Instant,
}

impl Progress {
    /// Progress of `what`, `total` `unit`s in all.
    pub fn new(what: &str, total: u64, unit: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            let style = ProgressStyle::with_template(&format!(
                "{what} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}} left)"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Progress {
            bar,
            what: what.to_string(),
            unit: unit.to_string(),
            total,
            done: 0,
            last_line: Instant::now(),
        }
    }

    /// Sets how much is done.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total.max(done));
        match &self.bar {
            Some(b) => b.set_position(self.done),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}: {}/{} {}", self.what, self.done, self.total, self.unit);
            }
            None => {}
        }
    }

    /// Adds `n` to what is done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
