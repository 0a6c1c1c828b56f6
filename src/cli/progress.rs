//! Progress on stderr, drawn from the library's callbacks (the library
//! never prints): k-means' [`KMeansProgress`] (a bar when stderr is a
//! terminal, plain lines when it is a file or a pipe, so logs stay
//! readable) and a stream's [`StreamProgress`] (a bar on a terminal only).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use vlad::kmeans::KMeansProgress;
use vlad::stream::StreamProgress;

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

    /// Show one event: a line each (the event's own text), except that a
    /// bar follows the iterations on a terminal.
    pub fn show(&self, event: &KMeansProgress) {
        if let KMeansProgress::Started {
            fallback_reason: Some(reason),
            ..
        } = event
        {
            eprintln!("vlad: {reason}");
        }
        match (self, event) {
            (
                Progress::Bar(bar),
                KMeansProgress::Iteration {
                    iteration,
                    max_iterations,
                    inertia,
                },
            ) => {
                if bar.is_hidden() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    set_style(bar, "kmeans [{bar:30}] {pos}/{len} {msg} ({elapsed})");
                }
                bar.set_length(*max_iterations as u64);
                bar.set_position(*iteration as u64);
                bar.set_message(format!("inertia {inertia:.6e}"));
            }
            (Progress::Bar(bar), KMeansProgress::Finished { .. }) => {
                bar.finish_and_clear();
                self.note(&event.to_string());
            }
            _ => self.note(&event.to_string()),
        }
    }
}

/// The bars' one look: `template` with `=> ` progress characters.
fn set_style(bar: &ProgressBar, template: &str) {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

/// A streamed encode's or assign's bar on stderr, only when stderr is a
/// terminal: images done of all, descriptors per second, ETA.
pub struct StreamBar {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl StreamBar {
    pub fn new(verb: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            set_style(
                &bar,
                &format!("{verb} [{{bar:30}}] {{pos}}/{{len}} images, {{msg}}, ETA {{eta}}"),
            );
            bar
        });
        StreamBar {
            bar,
            start: Instant::now(),
        }
    }

    pub fn update(&self, p: StreamProgress) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_length(p.images_total as u64);
        bar.set_position(p.images_done as u64);
        let seconds = self.start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{:.3e} descriptors/s",
            p.rows_done as f64 / seconds
        ));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
