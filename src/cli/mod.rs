//! The command line: one clap variant and one file per subcommand.
//!
//! To add a subcommand: write `src/cli/NAME.rs` with a clap `Args` struct and
//! `pub fn run(&Args) -> Result<(), Failure>`, declare the module below and
//! add one [`Command`] variant plus its arm in [`dispatch`].

mod adapters;
mod args;
mod assign;
mod bench;
mod bench_compare;
mod bench_files;
mod bench_json;
mod bench_plot;
mod demo;
mod encode;
mod exit;
mod failure;
mod inputs;
mod kmeans;
mod model;
mod pca;
mod peak_rss;
mod progress;
mod same_file;
mod soft;
mod streamed;
mod summary;

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use failure::Failure;

/// VLAD image encodings on any GPU, a fast CPU path, and an f64 reference.
///
/// Reads descriptors and centroids from `.npy` files and writes `.npy`
/// results. Exit status: 0 ok, 1 internal failure, 2 bad input or usage,
/// 3 requested backend unavailable, 4 verification failed.
#[derive(Debug, Parser)]
#[command(name = "vlad", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encode images into VLAD vectors: writes (T, K·F) float32.
    Encode(encode::EncodeArgs),
    /// Label each descriptor with its nearest centroid: writes (N,) int64.
    Assign(assign::AssignArgs),
    /// Train a codebook by k-means (Lloyd): writes (K, F) float32 centroids.
    Kmeans(kmeans::KMeansArgs),
    /// Learn a whitening (PCA, then (λ + ε)^p, SPEC §14) from encodings or
    /// from descriptors and a codebook: writes a model file (.npz).
    Pca(pca::PcaArgs),
    /// Bundle a codebook, its assignment and normalization and a whitening
    /// into one model file (.npz) for `vlad encode --model`.
    Model(model::ModelArgs),
    /// Run the whole pipeline on built-in synthetic data with every backend
    /// and check each against the reference.
    Demo(demo::DemoArgs),
    /// List the GPU adapters wgpu sees, what vlad uses of each, and which
    /// one --backend auto and --backend gpu would take (VLAD_ADAPTER picks
    /// one by index or name).
    Adapters(adapters::AdaptersArgs),
    /// Measure each backend and stage on synthetic data: median of repeats,
    /// descriptors/s, GB/s, GFLOP/s.
    Bench(bench::BenchArgs),
}

fn dispatch(command: &Command) -> Result<(), Failure> {
    match command {
        Command::Encode(args) => encode::run(args),
        Command::Assign(args) => assign::run(args),
        Command::Kmeans(args) => kmeans::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Pca(args) => pca::run(args),
        Command::Model(args) => model::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Adapters(args) => adapters::run(args),
    }
}

/// Parse the command line, run it, and map the outcome to SPEC §8's exit
/// status. Usage errors exit 2 and `--help`/`--version` 0 (clap's own
/// behaviour); a panic is an internal failure, exit 1, reported on one line.
pub fn main() -> ExitCode {
    quiet_mesa();
    let cli = Cli::parse();
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "vlad: error: internal failure{place}: {}",
            one_line(&message)
        );
    }));
    match panic::catch_unwind(AssertUnwindSafe(|| dispatch(&cli.command))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            eprintln!("vlad: error: {}", one_line(&failure.to_string()));
            ExitCode::from(failure.exit_code())
        }
        Err(_) => ExitCode::from(1),
    }
}

/// Messages are one line on stderr, whatever the error text contains.
fn one_line(message: &str) -> String {
    message.lines().collect::<Vec<_>>().join("; ")
}

/// Mesa's drivers (lavapipe, llvmpipe) print "XDG_RUNTIME_DIR is invalid or
/// not set in the environment" on stderr when that variable is unset — on
/// every run, into every test's output and the demo. A compute program has
/// no use for a runtime folder (it opens no window and no Wayland or X
/// socket), so when it is unset the command line points it at the system
/// temporary folder. Only when unset: a value the user gave is kept. This
/// runs first thing in `main`, before any thread exists, which is what makes
/// changing the environment sound. The library never does this.
fn quiet_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: single-threaded here (start of main, nothing spawned yet),
        // so no other thread can read the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}
