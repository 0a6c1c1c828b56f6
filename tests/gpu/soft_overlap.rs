//! The soft route (SPEC §10) on the hard path's host machinery: pooled
//! buffers, reused staging, two slots. Overlapped chunks (upload of chunk
//! i+1 and read-back of chunk i−1 while chunk i computes) give the same
//! bits as chunks run one after the other, for soft assignment from `W`/`b`
//! and from `α`, hard assignment with `rn` (computed and given labels),
//! f32/f64/u8, with many chunks and split images (small binding caps) and
//! without; and buffers the pool hands from one call to the next (hard and
//! soft routes sharing them) never leak stale values into a result.
//! Software adapters run sequentially by default, so this forces each mode.

use ndarray::Array2;
use vlad::backend::gpu::{GpuBackend, GpuOptions};
use vlad::{Assignment, Batch, Element, Normalization, StageTimes};

use crate::common::soft_case::{self, Case, ragged_offsets};
use crate::util::encode;

fn backend(cap: Option<u64>, overlap: bool) -> GpuBackend {
    let gpu = GpuBackend::new(&GpuOptions {
        max_binding_bytes: cap,
        ..Default::default()
    })
    .expect("a GPU session");
    gpu.set_overlap(Some(overlap));
    gpu
}

fn case<E: Element>(seed: u64, scale: f32, make: impl Fn(f32) -> E) -> Case<E> {
    soft_case::case(seed, 16, 8, scale, make, |rng| {
        ragged_offsets(rng, 9, 60, 4, 300)
    })
}

fn bits(x: &Array2<f32>) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Every assignment and steps list of interest on `gpu`: (what, encoding,
/// labels) in a fixed order.
fn encode_all<E: Element>(
    gpu: &GpuBackend,
    case: &Case<E>,
) -> Vec<(String, Array2<f32>, Vec<u32>)> {
    let batch = Batch::ragged(case.rows.view(), &case.offsets).expect("valid batch");
    let n = case.rows.nrows();
    let given: Vec<u32> = (0..n).map(|i| (i * 5 % 8) as u32).collect();
    let labelled = Batch::ragged(case.rows.view(), &case.offsets)
        .expect("valid batch")
        .with_labels(&given, 8)
        .expect("labels in range");
    let mut out = Vec::new();
    let mut times = StageTimes::new();
    for (name, assignment) in [
        ("soft W/b", &case.soft),
        ("soft α", &case.alpha),
        ("hard", &Assignment::Hard),
    ] {
        for norm in ["rn,mass,intra,l2", "mass,ssr,l2", "none"] {
            if assignment.is_hard() && !norm.starts_with("rn") {
                continue;
            }
            let steps: Normalization = norm.parse().expect("valid steps");
            let (vlad, labels) =
                encode(gpu, &case.codebook, assignment, &batch, &steps, &mut times)
                    .expect("encodes");
            out.push((format!("{name} {norm}"), vlad, labels));
            if assignment.is_hard() {
                let (vlad, labels) = encode(
                    gpu,
                    &case.codebook,
                    &Assignment::Hard,
                    &labelled,
                    &steps,
                    &mut times,
                )
                .expect("encodes with given labels");
                assert_eq!(labels, given, "given labels come back unchanged");
                out.push((format!("{name} given labels {norm}"), vlad, labels));
            }
        }
    }
    out
}

fn same_bits<E: Element>(dtype: &str, case: &Case<E>) {
    for cap in [Some(4096u64), Some(16384), None] {
        let seq = encode_all(&backend(cap, false), case);
        let ovl = encode_all(&backend(cap, true), case);
        assert_eq!(seq.len(), ovl.len());
        for ((what, a, la), (_, b, lb)) in seq.iter().zip(&ovl) {
            assert_eq!(bits(a), bits(b), "{dtype} {what}, cap {cap:?}: encodings");
            assert_eq!(la, lb, "{dtype} {what}, cap {cap:?}: labels");
        }
    }
}

#[test]
fn soft_overlapped_chunks_give_the_sequential_bits() {
    crate::common::gpu_or_skip!();
    same_bits("f32", &case(31, 1.0, |x| x));
    same_bits("f64", &case(32, 1.0, |x| x as f64 * 2.0 - 1.0));
    same_bits("u8", &case(33, 255.0, |x| (x * 255.0) as u8));
}

/// One session running the hard route, then the soft one, then both again
/// (sharing pooled blocks, counts, labels and staging, left holding the
/// other route's values): each result is the bits a fresh session gives,
/// and the second round allocates nothing.
#[test]
fn pooled_buffers_shared_with_the_hard_route_leave_no_trace() {
    crate::common::gpu_or_skip!();
    let case = case(34, 1.0, |x| x);
    let batch = Batch::ragged(case.rows.view(), &case.offsets).expect("valid batch");
    let hard_norm: Normalization = "ssr,l2".parse().expect("valid steps");
    let soft_norm: Normalization = "mass,intra,l2".parse().expect("valid steps");
    for cap in [Some(4096u64), None] {
        let mut t = StageTimes::new();
        let fresh_soft = encode(
            &backend(cap, false),
            &case.codebook,
            &case.soft,
            &batch,
            &soft_norm,
            &mut t,
        )
        .expect("encodes");
        let fresh_hard = encode(
            &backend(cap, false),
            &case.codebook,
            &Assignment::Hard,
            &batch,
            &hard_norm,
            &mut t,
        )
        .expect("encodes");
        let gpu = backend(cap, false);
        let mut allocated = 0;
        for round in 0..2 {
            let hard = encode(
                &gpu,
                &case.codebook,
                &Assignment::Hard,
                &batch,
                &hard_norm,
                &mut t,
            )
            .expect("encodes");
            let soft = encode(&gpu, &case.codebook, &case.soft, &batch, &soft_norm, &mut t)
                .expect("encodes");
            assert_eq!(bits(&hard.0), bits(&fresh_hard.0), "hard, round {round}");
            assert_eq!(hard.1, fresh_hard.1, "hard labels, round {round}");
            assert_eq!(bits(&soft.0), bits(&fresh_soft.0), "soft, round {round}");
            assert_eq!(soft.1, fresh_soft.1, "soft labels, round {round}");
            let now = gpu.pool_allocations().expect("a healthy session");
            if round == 1 {
                assert_eq!(now, allocated, "the second round allocates nothing");
            }
            allocated = now;
        }
    }
}
