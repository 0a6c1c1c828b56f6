//! k-means progress on stderr, drawn from the library's
//! [`KMeansProgress`] callback: a bar when stderr is a terminal, plain lines
//! when it is a file or a pipe (logs stay readable).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use vlad::kmeans::KMeansProgress;

use super::summary::format_seconds;

/// Where the progress goes.
pub enum Progress {
    Lines,
    Bar(ProgressBar),
}

impl Progress {
    /// A bar on a terminal, else lines.
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Progress::Bar(ProgressBar::hidden())
        } else {
            Progress::Lines
        }
    }

    fn note(&self, message: &str) {
        match self {
            Progress::Lines => eprintln!("kmeans: {message}"),
            Progress::Bar(bar) => bar.println(format!("kmeans: {message}")),
        }
    }

    /// Show one event.
    pub fn show(&self, event: &KMeansProgress) {
        match event {
            KMeansProgress::Started {
                clusters,
                points,
                training_points,
                dim,
                init,
                backend,
                fallback_reason,
            } => {
                if let Some(reason) = fallback_reason {
                    eprintln!("vlad: {reason}");
                }
                self.note(&format!(
                    "{clusters} centroids from {training_points} of {points} points \
                     ({dim} dims), init {init}, backend {backend}"
                ));
            }
            KMeansProgress::Seeded { seconds } => {
                self.note(&format!("init took {}", format_seconds(*seconds)));
            }
            KMeansProgress::Iteration {
                iteration,
                max_iterations,
                inertia,
            } => match self {
                Progress::Lines => eprintln!(
                    "kmeans: iteration {iteration}/{max_iterations}: inertia {inertia:.6e}"
                ),
                Progress::Bar(bar) => {
                    if bar.is_hidden() {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                        if let Ok(style) = ProgressStyle::with_template(
                            "kmeans [{bar:30}] {pos}/{len} {msg} ({elapsed})",
                        ) {
                            bar.set_style(style.progress_chars("=> "));
                        }
                    }
                    bar.set_length(*max_iterations as u64);
                    bar.set_position(*iteration as u64);
                    bar.set_message(format!("inertia {inertia:.6e}"));
                }
            },
            KMeansProgress::Finished {
                iterations,
                inertia,
                seconds,
            } => {
                if let Progress::Bar(bar) = self {
                    bar.finish_and_clear();
                }
                self.note(&format!(
                    "{iterations} iterations, inertia {inertia:.6e}, {}",
                    format_seconds(*seconds)
                ));
            }
            _ => {}
        }
    }
}
