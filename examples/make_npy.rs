//! Write large synthetic `.npy` inputs for the streaming benchmarks without
//! holding them in memory: `(T, L, F)` float32 descriptors clustered as
//! `vlad::synthetic` draws them, generated and appended a few images at a
//! time, and a `(K, F)` codebook taken from the first descriptors.
//!
//!     cargo run --release --example make_npy -- D.npy C.npy T L F K [seed]

use std::process::ExitCode;

use vlad::io::npy_stream::NpyStream;
use vlad::io::{OutputFile, write_npy_atomic};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: make_npy D.npy C.npy T L F K [seed]";
    if args.len() < 6 {
        eprintln!("{usage}");
        return ExitCode::from(2);
    }
    let numbers: Result<Vec<usize>, _> = args[2..].iter().map(|s| s.parse::<usize>()).collect();
    let Ok(numbers) = numbers else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let (t, l, f, k) = (numbers[0], numbers[1], numbers[2], numbers[3]);
    let seed = numbers.get(4).copied().unwrap_or(1) as u64;
    match run(&args[0], &args[1], t, l, f, k, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make_npy: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(d: &str, c: &str, t: usize, l: usize, f: usize, k: usize, seed: u64) -> vlad::Result<()> {
    let bytes = (t * l * f * 4) as u64;
    let mut out = NpyStream::start(OutputFile::create(d)?, "<f4", &[t, l, f], bytes)?;
    // ~64 MB of descriptors per step.
    let step = ((64 << 20) / (l * f * 4)).max(1);
    let mut first = None;
    let mut done = 0;
    while done < t {
        let n = step.min(t - done);
        let images = vlad::synthetic::clustered_images(n, l, f, 64, seed + done as u64);
        let values = images.as_slice().unwrap_or(&[]);
        if first.is_none() {
            first = Some(values[..(k * f).min(values.len())].to_vec());
        }
        out.append(bytemuck::cast_slice(values))?;
        done += n;
    }
    out.commit()?;
    let mut centroids = first.unwrap_or_default();
    centroids.resize(k * f, 0.0);
    let centroids = ndarray::Array2::from_shape_vec((k, f), centroids)
        .map_err(|e| vlad::VladError::InvalidArgument(e.to_string()))?;
    write_npy_atomic(c, &centroids)
}
