//! The GPU context opens on the adapter wgpu finds and reports it honestly.

use crate::common::gpu_or_skip;

#[test]
fn context_opens_and_reads_limits() {
    let ctx = gpu_or_skip!();
    eprintln!(
        "adapter: {} software={} subgroups={} {:?} timestamps={} max_binding={}",
        ctx.adapter_name(),
        ctx.is_software(),
        ctx.has_subgroups(),
        ctx.subgroup_sizes,
        ctx.has_timestamps(),
        ctx.max_binding_bytes()
    );
    assert!(ctx.max_binding_bytes() >= 4096);
    assert!(ctx.max_workgroups_per_dim() >= 65_535);
    // Round trip through a storage buffer.
    let data: Vec<u32> = (0..1000).collect();
    let buf = ctx.upload("round trip", &data).unwrap();
    let back: Vec<u32> = ctx.read_back("round trip", &buf, 10, 990).unwrap();
    assert_eq!(back, data[10..]);
}

#[test]
fn binding_cap_is_honoured() {
    let opts = vlad::backend::gpu::GpuOptions {
        max_binding_bytes: Some(10_000),
        ..Default::default()
    };
    let ctx = gpu_or_skip!(&opts);
    assert_eq!(ctx.max_binding_bytes(), 10_000);
}
