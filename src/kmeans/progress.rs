//! Progress on stderr: a bar when stderr is a terminal, plain lines when it
//! is a file or a pipe (logs stay readable), nothing when silenced.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) enum Progress {
    Silent,
    Lines { iterations: usize },
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(verbose: bool, iterations: usize) -> Self {
        if !verbose {
            return Progress::Silent;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { iterations };
        }
        let bar = ProgressBar::new(iterations as u64);
        if let Ok(style) =
            ProgressStyle::with_template("kmeans [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress::Bar(bar)
    }

    /// A one-off message (setup, init time).
    pub fn note(&self, message: &str) {
        match self {
            Progress::Silent => {}
            Progress::Lines { .. } => eprintln!("kmeans: {message}"),
            Progress::Bar(bar) => bar.println(format!("kmeans: {message}")),
        }
    }

    /// Iteration `done` (1-based) finished with this inertia.
    pub fn iteration(&self, done: usize, inertia: f64) {
        match self {
            Progress::Silent => {}
            Progress::Lines { iterations } => {
                eprintln!("kmeans: iteration {done}/{iterations}: inertia {inertia:.6e}")
            }
            Progress::Bar(bar) => {
                bar.set_position(done as u64);
                bar.set_message(format!("inertia {inertia:.6e}"));
            }
        }
    }

    /// The run is over.
    pub fn finish(&self, message: &str) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
        self.note(message);
    }
}
