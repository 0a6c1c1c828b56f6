//! The Rust in-process time of `Encoder::encode` on descriptors and
//! centroids read from `.npy` files: what `benches/python_bench.py`
//! compares the Python call with, on the very same data.
//!
//! ```sh
//! cargo run --release --example time_encode -- D.npy C.npy [REPEATS] [BACKEND]
//! ```
//!
//! Prints one JSON object: the median, min and max seconds of `REPEATS`
//! (default 7) timed calls after one warm-up. Each call is what a Rust user
//! calls with a `(T, L, F)` view: input checks, then the encoding.

use std::time::Instant;

use ndarray::Ix3;
use vlad::io::{self, DescriptorArray};
use vlad::{Backend, Element, Encoder};

fn main() {
    if let Err(message) = run() {
        eprintln!("time_encode: {message}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(descriptors), Some(centroids)) = (args.first(), args.get(1)) else {
        return Err("usage: time_encode D.npy C.npy [REPEATS] [BACKEND]".to_string());
    };
    let repeats: usize = match args.get(2) {
        Some(r) => r.parse().map_err(|e| format!("REPEATS {r:?}: {e}"))?,
        None => 7,
    };
    let backend: Backend = match args.get(3) {
        Some(b) => b.parse().map_err(|e| format!("{e}"))?,
        None => Backend::Cpu,
    };
    let codebook = io::read_centroids(centroids).map_err(|e| e.to_string())?;
    let encoder = Encoder::builder(codebook).backend(backend).build();
    let times = match io::read_descriptors(descriptors).map_err(|e| e.to_string())? {
        DescriptorArray::F32(a) => time(&encoder, &a, repeats),
        DescriptorArray::F64(a) => time(&encoder, &a, repeats),
        DescriptorArray::U8(a) => time(&encoder, &a, repeats),
    }?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    println!(
        "{{\"median_seconds\": {median}, \"min_seconds\": {}, \"max_seconds\": {}, \"repeats\": {n}}}",
        sorted[0],
        sorted[n - 1]
    );
    Ok(())
}

fn time<E: Element>(
    encoder: &Encoder,
    array: &ndarray::ArrayD<E>,
    repeats: usize,
) -> Result<Vec<f64>, String> {
    let view = array
        .view()
        .into_dimensionality::<Ix3>()
        .map_err(|e| format!("descriptors must be (T, L, F): {e}"))?;
    encoder.encode(view).map_err(|e| e.to_string())?; // warm-up
    (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            let out = encoder.encode(view).map_err(|e| e.to_string())?;
            let seconds = start.elapsed().as_secs_f64();
            std::hint::black_box(out);
            Ok(seconds)
        })
        .collect()
}
