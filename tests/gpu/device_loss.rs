//! A lost GPU device (simulated: destroyed mid-call, as a driver reset
//! would) fails only the call that meets it: `gpu` reports a GPU error,
//! `auto` falls back to the CPU for that call, and the next call makes a
//! new device and runs on the GPU again with the same, bitwise output.

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::{Backend, Batch, Codebook, Encoder, VladError};

fn data() -> (Codebook, Array3<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let c = Array2::from_shape_fn((8, 16), |_| rng.random_range(-1.0f32..1.0));
    let x = Array3::from_shape_fn((5, 40, 16), |_| rng.random_range(-1.0f32..1.0));
    (Codebook::new(c.view()).unwrap(), x)
}

#[test]
fn gpu_backend_recovers_from_a_lost_device() {
    crate::common::gpu_or_skip!();
    let (codebook, x) = data();
    let batch = Batch::fixed(x.view()).unwrap();
    let encoder = Encoder::builder(codebook).backend(Backend::Gpu).build();
    let before = encoder.encode_batch(&batch).unwrap();
    assert_eq!(before.report.backend, Backend::Gpu);

    encoder.simulate_gpu_device_loss();
    match encoder.encode_batch(&batch) {
        Err(VladError::Gpu(msg)) => assert!(msg.contains("lost"), "{msg}"),
        Err(other) => panic!("a lost device must be a GPU error, got {other}"),
        Ok(_) => panic!("a call whose device was lost must not succeed"),
    }

    // The next call makes a new device and gives the same bits.
    let after = encoder.encode_batch(&batch).unwrap();
    assert_eq!(after.report.backend, Backend::Gpu);
    assert_eq!(after.vlad, before.vlad);
    assert_eq!(after.labels, before.labels);
    // And keeps working.
    let again = encoder.assign_batch(&batch).unwrap();
    assert_eq!(again.report.backend, Backend::Gpu);
    assert_eq!(again.labels, before.labels);
}

#[test]
fn auto_falls_back_to_cpu_for_the_call_that_loses_the_device() {
    crate::common::gpu_or_skip!();
    let (codebook, x) = data();
    let batch = Batch::fixed(x.view()).unwrap();
    let encoder = Encoder::new(codebook.clone());
    let first = encoder.encode_batch(&batch).unwrap();
    if first.report.backend != Backend::Gpu {
        // `auto` may decline this adapter (e.g. a software one) up front:
        // then there is no device to lose.
        eprintln!(
            "*** auto did not pick the GPU ({:?}); nothing to lose ***",
            first.report.fallback_reason
        );
        assert!(first.report.fallback_reason.is_some());
        return;
    }

    encoder.simulate_gpu_device_loss();
    let lost = encoder.encode_batch(&batch).unwrap();
    assert_eq!(lost.report.backend, Backend::Cpu);
    let reason = lost.report.fallback_reason.expect("auto says why");
    assert!(reason.contains("lost"), "{reason}");
    let cpu = Encoder::builder(codebook)
        .backend(Backend::Cpu)
        .build()
        .encode_batch(&batch)
        .unwrap();
    assert_eq!(lost.vlad, cpu.vlad);

    let back = encoder.encode_batch(&batch).unwrap();
    assert_eq!(back.report.backend, Backend::Gpu);
    assert_eq!(back.report.fallback_reason, None);
    assert_eq!(back.vlad, first.vlad);
}
