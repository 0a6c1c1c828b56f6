//! The GPU ceiling kernels against their CPU twins, and the measured
//! ceilings positive and finite.

use vlad::backend::gpu::stages::ceilings;
use vlad::twins::ceiling_fma;

#[test]
fn fma_kernel_matches_its_twin_bitwise() {
    let ctx = crate::common::gpu_or_skip!();
    // 1000 invocations: the last workgroup is partial.
    for (iters, add) in [(0, 1.0), (1, 1.0), (7, 3.0), (40, 2.0)] {
        let gpu = ceilings::fma_chains(&ctx, 1000, iters, 0.5, add).unwrap();
        let cpu = ceiling_fma::fma_chains(1000, iters, 0.5, add);
        assert_eq!(gpu, cpu, "iters {iters}, add {add}");
    }
}

#[test]
fn f16_fma_kernel_matches_its_twin_bitwise() {
    let ctx = crate::common::gpu_or_skip!();
    if !ctx.features.contains(wgpu::Features::SHADER_F16) {
        // Not a pass: the kernel cannot run here, and says so.
        let err = ceilings::fma_chains_f16(&ctx, 256, 1, 0.5, 1.0).unwrap_err();
        assert!(err.to_string().contains("SHADER_F16"), "{err}");
        assert_eq!(ceilings::fma_f16_gflops(&ctx).unwrap(), None);
        eprintln!("f16 FMA kernel not run: the adapter has no SHADER_F16");
        return;
    }
    for (iters, add) in [
        (0, 1.0),
        (1, 1.0),
        (4, 3.0),
        (ceiling_fma::F16_EXACT_ITERS, 8.0),
    ] {
        let gpu = ceilings::fma_chains_f16(&ctx, 1000, iters, 0.5, add).unwrap();
        let cpu = ceiling_fma::fma_chains_f16(1000, iters, 0.5, add);
        assert_eq!(gpu, cpu, "iters {iters}, add {add}");
    }
    let g = ceilings::fma_f16_gflops(&ctx).unwrap().expect("SHADER_F16");
    assert!(g.is_finite() && g > 0.0, "{g}");
}

#[test]
fn measured_ceilings_are_positive() {
    let ctx = crate::common::gpu_or_skip!();
    let c = ceilings::measure(&ctx, 1 << 20, 1 << 20).unwrap();
    for (name, x) in [
        ("fma", c.fma_gflops),
        ("memory", c.memory_gbps),
        ("upload", c.upload_gbps),
        ("readback", c.readback_gbps),
        ("dispatch", c.dispatch_seconds),
    ] {
        assert!(x.is_finite() && x > 0.0, "{name}: {x}");
    }
}
