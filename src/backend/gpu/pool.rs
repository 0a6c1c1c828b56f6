//! Device buffers reused across chunks and across `encode` calls.
//!
//! Allocating device memory is slow on every driver (and validated by
//! wgpu), so each role keeps one buffer that only ever grows, to the next
//! power of two, capped at what one binding (or, for read-back staging, one
//! buffer) may be. Repeated encodes of similar batches then allocate
//! nothing.

use std::collections::HashMap;

use crate::backend::gpu::context::GpuContext;
use crate::error::Result;

/// Which of the two upload slots: the next chunk's inputs are written into
/// the other slot while the current chunk computes.
pub type Slot = usize;

/// What a pooled buffer is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A chunk's descriptors (f32 or packed u8).
    Descriptors(Slot),
    /// A chunk's local CSR offsets.
    ImageOffsets(Slot),
    /// Sort keys built on the host from given labels.
    GivenKeys(Slot),
    /// Row indices that go with [`Role::GivenKeys`].
    GivenValues(Slot),
    /// Labels written by the assignment.
    Labels,
    /// Sort keys written by the assignment.
    Keys,
    /// Row indices written by the assignment.
    Values,
    /// The sort's ping-pong partner of the keys.
    AltKeys,
    /// The sort's ping-pong partner of the values.
    AltValues,
    /// `images × K × F` f32 blocks.
    Blocks,
    /// `images × K` u32 counts.
    Counts,
    /// `images × W` f32 whitened rows (SPEC §14), `W` = `D′` padded.
    Whitened,
    /// `K × F` f32 centroids.
    Centroids,
    /// `K` f32 squared centroid norms.
    CentroidNorms,
    /// Soft assignment's `K × F` weights `W` (SPEC §10).
    SoftW,
    /// Soft assignment's `K` biases `b`.
    SoftBias,
    /// Soft assignment's `rows × K` weights of a chunk.
    SoftWeights,
    /// The same weights before `rn`'s scaling (the soft counts), with `rn`.
    UnscaledWeights,
    /// A chunk's `rows × F` unit residuals (hard assignment with `rn`).
    UnitResiduals,
    /// Host-mappable copy of the blocks.
    ReadBlocks,
    /// Host-mappable copy of the labels.
    ReadLabels,
    /// Host-mappable copy of the counts.
    ReadCounts,
}

impl Role {
    /// Whether the buffer is a `MAP_READ` staging buffer rather than storage.
    pub fn is_readback(self) -> bool {
        matches!(self, Role::ReadBlocks | Role::ReadLabels | Role::ReadCounts)
    }

    fn usage(self) -> wgpu::BufferUsages {
        if self.is_readback() {
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST
        } else {
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST
        }
    }
}

/// The size a pool allocates for a request of `requested` bytes: the next
/// power of two (so a slowly growing input reallocates O(log n) times),
/// at most `cap` unless the request itself is larger, a multiple of 4, and
/// at least 4 (wgpu binds no empty buffer).
pub fn pooled_size(requested: u64, cap: u64) -> u64 {
    let requested = requested.max(4).next_multiple_of(4);
    let grown = requested.checked_next_power_of_two().unwrap_or(requested);
    grown.min(cap & !3).max(requested)
}

/// Buffers by role, grown on demand, never shrunk.
pub struct BufferPool {
    buffers: HashMap<Role, wgpu::Buffer>,
    storage_cap: u64,
    readback_cap: u64,
    allocations: usize,
}

impl BufferPool {
    /// An empty pool for `ctx`: storage buffers are capped at one binding,
    /// staging buffers at the largest buffer.
    pub fn new(ctx: &GpuContext) -> Self {
        BufferPool {
            buffers: HashMap::new(),
            storage_cap: ctx.max_binding_bytes(),
            readback_cap: ctx.limits.max_buffer_size,
            allocations: 0,
        }
    }

    /// A buffer for `role` of at least `bytes` bytes (a cheap handle clone;
    /// the pool keeps its own). Its contents are whatever the last user
    /// left: callers write before they read.
    pub fn buffer(&mut self, ctx: &GpuContext, role: Role, bytes: u64) -> Result<wgpu::Buffer> {
        if let Some(buffer) = self.buffers.get(&role)
            && buffer.size() >= bytes.max(4)
        {
            return Ok(buffer.clone());
        }
        let cap = if role.is_readback() {
            self.readback_cap
        } else {
            self.storage_cap
        };
        let size = pooled_size(bytes, cap);
        let label = format!("vlad pool {role:?}");
        // Cached bind groups may name the buffer this one replaces: drop
        // them, so that it is freed.
        if self.buffers.contains_key(&role) {
            ctx.forget_bindings();
        }
        let buffer = ctx.checked(&format!("allocating {label} ({size} bytes)"), || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&label),
                size,
                usage: role.usage(),
                mapped_at_creation: false,
            })
        })?;
        // The old buffer (if any) is freed once no submission uses it.
        self.buffers.insert(role, buffer.clone());
        self.allocations += 1;
        Ok(buffer)
    }

    /// How many buffers the pool has allocated since it was made.
    pub fn allocations(&self) -> usize {
        self.allocations
    }

    /// Bytes currently held, all roles together.
    pub fn held_bytes(&self) -> u64 {
        self.buffers.values().map(|b| b.size()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::pooled_size;

    #[test]
    fn pooled_sizes_grow_by_powers_of_two_within_the_cap() {
        assert_eq!(pooled_size(0, 1 << 20), 4);
        assert_eq!(pooled_size(1, 1 << 20), 4);
        assert_eq!(pooled_size(5, 1 << 20), 8);
        assert_eq!(pooled_size(1000, 1 << 20), 1024);
        assert_eq!(pooled_size(1024, 1 << 20), 1024);
        // Capped: the cap itself, never less than the request.
        assert_eq!(pooled_size(3000, 4096 + 8), 4096);
        assert_eq!(pooled_size(4100, 4096 + 8), 4104);
        assert_eq!(pooled_size(5000, 4096), 5000);
    }
}
