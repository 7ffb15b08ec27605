//! Figures: percentiles, medians and the printed report.

use std::fmt;
use std::time::Duration;

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    /// Percentiles of `sample` (sorted in place).
    pub fn of(sample: &mut [Duration]) -> Self {
        sample.sort_unstable();
        let at = |q: f64| {
            if sample.is_empty() {
                Duration::ZERO
            } else {
                sample[((sample.len() - 1) as f64 * q).round() as usize]
            }
        };
        Self {
            count: sample.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: sample.last().copied().unwrap_or_default(),
        }
    }

    /// p50 in milliseconds.
    pub fn p50_ms(&self) -> f64 {
        self.p50.as_secs_f64() * 1e3
    }

    /// p99 in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.p99.as_secs_f64() * 1e3
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms (n={})",
            self.p50_ms(),
            self.p99_ms(),
            self.max.as_secs_f64() * 1e3,
            self.count
        )
    }
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Rates as a short list.
pub fn list(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ")
}

/// A request phase's figure: the median rate, every round's rate, and the latencies.
pub fn requests(median_rate: f64, rates: &[f64], latency: &Stats) -> String {
    format!("{median_rate:.0} req/s (rounds: {}) {latency}", list(rates))
}

/// A target in words, and whether the figure met it.
type Target = (String, bool);

/// The lines to print at the end: what, the figure, the target if any.
#[derive(Default)]
pub struct Report {
    lines: Vec<(String, String, Option<Target>)>,
}

impl Report {
    /// Adds a figure, with its target and whether it was met when there is one; prints it now
    /// as well, so a long run shows progress.
    pub fn line(&mut self, what: &str, figure: String, target: Option<(&str, bool)>) {
        let target = target.map(|(text, met)| (text.to_owned(), met));
        println!("{}", Self::format(what, &figure, target.as_ref()));
        self.lines.push((what.to_owned(), figure, target));
    }

    fn format(what: &str, figure: &str, target: Option<&Target>) -> String {
        let verdict = match target {
            Some((text, true)) => format!("   [target {text}: met]"),
            Some((text, false)) => format!("   [target {text}: MISSED]"),
            None => String::new(),
        };
        format!("{what:<48} {figure}{verdict}")
    }

    /// Prints the summary.
    pub fn print(&self) {
        println!("\n== summary ==");
        for (what, figure, target) in &self.lines {
            println!("{}", Self::format(what, figure, target.as_ref()));
        }
    }
}
