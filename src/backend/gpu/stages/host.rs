//! What every stage's host file is made of, written once: its shader text
//! ([`wgsl!`]), its uniform block ([`uniform_block!`]: the `#[repr(C)]`
//! struct and the layout its shader contract checks, from one field list)
//! and the pass of a single dispatch ([`record_dispatch`]).

use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::error::Result;

/// The text of `shaders/<name>.wgsl`, compiled into the binary.
macro_rules! wgsl {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/",
            $name,
            ".wgsl"
        ))
    };
}
pub(crate) use wgsl;

/// A shader's uniform block: the `#[repr(C)]` plain-old-data struct that is
/// uploaded as is, and its `layout()` (every field, in order) for the
/// shader contract, so the field list is written once and a field added to
/// the struct cannot be missed by the check against the WGSL.
macro_rules! uniform_block {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field: $ty),*
        }

        impl $name {
            /// The layout the shader contracts check against the WGSL.
            pub(crate) fn layout() -> $crate::backend::gpu::contract::UniformLayout {
                $crate::backend::gpu::contract::uniform_layout!($name { $($field),* })
            }
        }
    };
}
pub(crate) use uniform_block;

/// Record a pass of one dispatch of `pipeline`: `params` uploaded as the
/// uniform at binding 0, `bindings` at their numbers, `workgroups`
/// workgroups split over two dimensions of at most `max_per_dim` each (the
/// shader recovers the linear id). `label` names the pass, its bind group
/// and (as `"{label} params"`) its uniform.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_dispatch<P: bytemuck::Pod>(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &P,
    bindings: &[(u32, wgpu::BindingResource<'_>)],
    workgroups: u32,
    max_per_dim: u32,
) -> Result<()> {
    let uniform = ctx.uniform(&format!("{label} params"), params)?;
    let mut entries = Vec::with_capacity(bindings.len() + 1);
    entries.push((0, uniform.as_entire_binding()));
    entries.extend(bindings.iter().cloned());
    let group = ctx.bind_group_numbered(label, pipeline, &entries)?;
    let (x, y) = dispatch_2d(workgroups, max_per_dim);
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, &group, &[]);
    pass.dispatch_workgroups(x, y, 1);
    Ok(())
}
