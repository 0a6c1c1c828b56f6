//! `vlad bench --plot FILE.svg`: the stages on the device's roofline
//! (Williams, Waterman & Patterson 2009). x: a stage's arithmetic intensity
//! (modelled FLOPs per modelled byte), y: its achieved GFLOP/s, both on log
//! scales; each backend's ceilings as lines: the FMA rate flat, the memory
//! bandwidth × intensity rising to meet it. Stages that do no counted
//! arithmetic (sort, transfers) have no place on a roofline and are left
//! out. Drawn by plotters' SVG backend from the `vlad-bench/2` document
//! the run printed, so a file of `--json` draws the same.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use plotters::prelude::*;
use serde_json::Value;
use vlad::VladError;

use super::bench_json::runs_of;
use super::failure::Failure;

/// A point: backend, run, stage, intensity, GFLOP/s.
struct Stage {
    backend: String,
    run: String,
    stage: String,
    intensity: f64,
    gflops: f64,
}

/// One backend's roof.
struct Roof {
    backend: String,
    label: String,
    fma_gflops: f64,
    memory_gbps: f64,
}

fn io_error(path: &Path, action: &'static str, e: impl std::fmt::Display) -> Failure {
    VladError::Io {
        action,
        path: path.to_path_buf(),
        source: Arc::new(std::io::Error::other(e.to_string())),
    }
    .into()
}

/// Draw `doc` (one run or a suite) into `path`, written atomically.
pub fn write(doc: &Value, path: &Path) -> Result<(), Failure> {
    let runs = runs_of(doc).map_err(VladError::InvalidArgument)?;
    let (mut stages, mut roofs) = (Vec::new(), Vec::<Roof>::new());
    for run in runs {
        let name = run["label"].as_str().unwrap_or("").to_string();
        for c in run["ceilings"].as_array().into_iter().flatten() {
            let backend = c["backend"].as_str().unwrap_or("?").to_string();
            if roofs.iter().any(|r| r.backend == backend) {
                continue;
            }
            let (Some(fma), Some(memory)) = (c["fma_gflops"].as_f64(), c["memory_gbps"].as_f64())
            else {
                continue;
            };
            let mut label = match c["adapter"].as_str() {
                Some(a) => format!("{backend} on {a}"),
                None => format!("{backend} ({})", doc["host"]["cpu"].as_str().unwrap_or("?")),
            };
            if c["emulation"].as_bool() == Some(true) {
                label.push_str(" — software adapter: CPU emulation, not GPU speed");
            }
            roofs.push(Roof {
                backend,
                label,
                fma_gflops: fma,
                memory_gbps: memory,
            });
        }
        for r in run["rows"].as_array().into_iter().flatten() {
            let (Some(ai), Some(g)) = (
                r["arithmetic_intensity"].as_f64(),
                r["gigaflops_per_second"].as_f64(),
            ) else {
                continue;
            };
            if r["stage"] == "total" || !(ai > 0.0 && g > 0.0) {
                continue;
            }
            stages.push(Stage {
                backend: r["backend"].as_str().unwrap_or("?").to_string(),
                run: name.clone(),
                stage: r["stage"].as_str().unwrap_or("?").to_string(),
                intensity: ai,
                gflops: g,
            });
        }
    }
    if roofs.is_empty() {
        return Err(VladError::InvalidArgument(
            "--plot: the run measured no ceilings to draw".to_string(),
        )
        .into());
    }
    let mut svg = String::new();
    draw(&mut svg, &roofs, &stages).map_err(|e| io_error(path, "cannot draw", e))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(folder).map_err(|e| io_error(path, "cannot write", e))?;
    tmp.write_all(svg.as_bytes())
        .map_err(|e| io_error(path, "cannot write", e))?;
    tmp.persist(path)
        .map_err(|e| io_error(path, "cannot write", e.error))?;
    Ok(())
}

fn draw(svg: &mut String, roofs: &[Roof], stages: &[Stage]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    // The axes span every roof's ridge point and every stage, a decade of
    // margin either side.
    let ridge = |r: &Roof| r.fma_gflops / r.memory_gbps.max(1e-12);
    let xs = roofs
        .iter()
        .map(ridge)
        .chain(stages.iter().map(|s| s.intensity));
    let (mut x0, mut x1) = (f64::INFINITY, 0.0f64);
    for x in xs {
        x0 = x0.min(x);
        x1 = x1.max(x);
    }
    let (x0, x1) = (x0 / 10.0, x1 * 10.0);
    let top = roofs.iter().map(|r| r.fma_gflops).fold(0.0f64, f64::max);
    let low = roofs
        .iter()
        .map(|r| r.memory_gbps * x0)
        .chain(stages.iter().map(|s| s.gflops))
        .fold(f64::INFINITY, f64::min);
    let (y0, y1) = (low / 10.0, top * 3.0);
    let root = SVGBackend::with_string(svg, (1000, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("vlad bench: stages on the roofline", ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (modelled FLOP per modelled byte)")
        .y_desc("GFLOP/s")
        .draw()
        .map_err(|x| e(&x))?;
    let colours = [RED, BLUE, GREEN, MAGENTA, CYAN];
    for (i, roof) in roofs.iter().enumerate() {
        let colour = colours[i % colours.len()];
        // The roof sampled along x: min(FMA, bandwidth × intensity).
        let line = (0..=200).map(|j| {
            let x = x0 * (x1 / x0).powf(j as f64 / 200.0);
            (x, (roof.memory_gbps * x).min(roof.fma_gflops))
        });
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!(
                "{}: FMA {:.1} GFLOP/s, memory {:.1} GB/s",
                roof.label, roof.fma_gflops, roof.memory_gbps
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        let points: Vec<&Stage> = stages
            .iter()
            .filter(|s| s.backend == roof.backend)
            .collect();
        chart
            .draw_series(points.iter().map(|s| {
                let name = if s.run.is_empty() {
                    s.stage.clone()
                } else {
                    format!("{} {}", s.run, s.stage)
                };
                EmptyElement::at((s.intensity, s.gflops))
                    + Circle::new((0, 0), 5, colour.filled())
                    + Text::new(name, (8, -12), ("sans-serif", 13))
            }))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
