//! Progress reporting: a [`RunObserver`] the run loop calls once per committed
//! batch (never per document), and [`ProgressBar`], a terminal progress bar with
//! docs/s and an ETA sized from `_count`.

use std::fmt;

/// Told about the run's progress by [`crate::run()`], after each committed batch.
pub trait RunObserver: Send + Sync + fmt::Debug {
    /// A batch of `documents` documents (`bytes` of `_source`) was committed.
    fn batch_committed(&self, documents: u64, bytes: u64);

    /// After a committed batch at the cursor: now minus its last document's
    /// timestamp (how far behind the index the run is).
    fn lag(&self, _seconds: f64) {}

    /// The run is over (caught up with `once`, shut down, or failed).
    fn finished(&self) {}
}

/// An `indicatif` progress bar on stderr: documents, docs/s and ETA. Sized from
/// the documents left to read (`_count`); grows when more arrive meanwhile.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl fmt::Debug for ProgressBar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressBar")
            .field("position", &self.bar.position())
            .field("length", &self.bar.length())
            .finish()
    }
}

impl ProgressBar {
    /// A bar for `total` documents (`None`: a counter without ETA).
    pub fn new(total: Option<u64>) -> Self {
        let (bar, template) = match total {
            Some(total) => (
                indicatif::ProgressBar::new(total),
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} docs, {per_sec}, ETA {eta} {msg}",
            ),
            None => (
                indicatif::ProgressBar::no_length(),
                "{spinner} [{elapsed_precise}] {human_pos} docs, {per_sec} {msg}",
            ),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        ProgressBar { bar }
    }

    /// Whether stderr is a terminal (where a bar makes sense).
    pub fn stderr_is_terminal() -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    }
}

impl RunObserver for ProgressBar {
    fn batch_committed(&self, documents: u64, _bytes: u64) {
        self.bar.inc(documents);
        if let Some(length) = self.bar.length()
            && self.bar.position() > length
        {
            self.bar.set_length(self.bar.position());
        }
    }

    fn lag(&self, seconds: f64) {
        self.bar.set_message(lag_message(seconds));
    }

    fn finished(&self) {
        // The run summary follows: clear the bar rather than leave it on its line.
        self.bar.finish_and_clear();
    }
}

/// How the bar shows the lag: `lag 4.2s`, `lag 3m05s`, `lag 2h03m`.
fn lag_message(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("lag {s:.1}s")
    } else if s < 3600.0 {
        format!("lag {}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "lag {}h{:02}m",
            (s / 3600.0) as u64,
            (s % 3600.0 / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_reads_at_a_glance() {
        assert_eq!(lag_message(4.24), "lag 4.2s");
        assert_eq!(lag_message(185.0), "lag 3m05s");
        assert_eq!(lag_message(7_380.0), "lag 2h03m");
        assert_eq!(lag_message(-1.0), "lag 0.0s");
    }
}
