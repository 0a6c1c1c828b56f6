//! Host ↔ device staging that is made once and reused: host-mappable
//! buffers the host fills (upload) or reads (read-back) in parallel,
//! straight from the caller's slices into the caller's output, with no
//! intermediate host vector and no fresh memory to fault in per call.
//!
//! An upload buffer lives mapped: it is created mapped, filled, unmapped for
//! the device's copy, and asked to map again right after the submission
//! that copies from it, so by the time its slot comes round again (the
//! chunk that used it has completed) it is mapped, at no extra wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::pool::pooled_size;
use crate::error::{Result, VladError};

/// Bytes one parallel piece of a copy covers: large enough that the rayon
/// task overhead vanishes, small enough to spread over every thread.
pub const PIECE: usize = 1 << 20;

/// Where a buffer's mapping stands.
const UNMAPPED: u8 = 0;
const PENDING: u8 = 1;
const MAPPED: u8 = 2;
const FAILED: u8 = 3;

/// A host-mappable buffer and the state of its mapping (written by wgpu's
/// callback). Clones share the buffer and the state.
#[derive(Clone)]
pub struct StagingBuffer {
    /// The buffer.
    pub buffer: wgpu::Buffer,
    state: Arc<AtomicU8>,
    mode: wgpu::MapMode,
}

impl StagingBuffer {
    /// A `MAP_WRITE | COPY_SRC` buffer of at least `bytes` bytes, mapped.
    pub fn upload(ctx: &GpuContext, label: &str, bytes: u64) -> Result<Self> {
        let size = pooled_size(bytes, ctx.limits.max_buffer_size);
        let buffer = ctx.checked(&format!("allocating {label} ({size} bytes)"), || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            })
        })?;
        Ok(StagingBuffer {
            buffer,
            state: Arc::new(AtomicU8::new(MAPPED)),
            mode: wgpu::MapMode::Write,
        })
    }

    /// A `MAP_READ | COPY_DST` buffer of at least `bytes` bytes, unmapped.
    pub fn readback(ctx: &GpuContext, label: &str, bytes: u64) -> Result<Self> {
        let size = pooled_size(bytes, ctx.limits.max_buffer_size);
        let buffer = ctx.checked(&format!("allocating {label} ({size} bytes)"), || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        Ok(StagingBuffer {
            buffer,
            state: Arc::new(AtomicU8::new(UNMAPPED)),
            mode: wgpu::MapMode::Read,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.buffer.size()
    }

    /// Ask for the first `bytes` bytes (the whole buffer for uploads) to be
    /// mapped once the device is done with the buffer; completes during a
    /// later `device.poll`.
    pub fn request_map(&self, bytes: u64) {
        let bytes = match self.mode {
            wgpu::MapMode::Write => self.size(),
            wgpu::MapMode::Read => bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
        };
        if self.state.load(Ordering::SeqCst) != UNMAPPED || bytes == 0 {
            return;
        }
        self.state.store(PENDING, Ordering::SeqCst);
        let state = self.state.clone();
        self.buffer.map_async(self.mode, 0..bytes, move |r| {
            state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::SeqCst);
        });
    }

    /// Wait (if it is not already) until the requested mapping is done.
    pub fn wait_mapped(&self, ctx: &GpuContext, what: &str) -> Result<()> {
        if self.state.load(Ordering::SeqCst) == PENDING {
            ctx.device
                .poll(wgpu::PollType::Wait {
                    submission_index: None,
                    timeout: None,
                })
                .map_err(|e| VladError::Gpu(format!("mapping {what}: {e}")))?;
        }
        match self.state.load(Ordering::SeqCst) {
            MAPPED => Ok(()),
            FAILED => {
                self.state.store(UNMAPPED, Ordering::SeqCst);
                ctx.check_health()?;
                Err(VladError::Gpu(format!("mapping {what} failed")))
            }
            _ => {
                ctx.check_health()?;
                Err(VladError::Gpu(format!("{what} was never mapped")))
            }
        }
    }

    /// Unmap (before the device uses it again).
    pub fn unmap(&self) {
        if self.state.swap(UNMAPPED, Ordering::SeqCst) == MAPPED {
            self.buffer.unmap();
        }
    }
}

/// Which result a read-back staging buffer carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// `images × K × F` f32 blocks.
    Blocks,
    /// `N` u32 labels.
    Labels,
    /// `images × K` u32 counts.
    Counts,
}

/// The staging buffers of the two pipeline slots (chunk `i` uses slot
/// `i mod 2`), grown on demand, never shrunk.
#[derive(Default)]
pub struct StagingSet {
    upload: [Option<StagingBuffer>; 2],
    read: [[Option<StagingBuffer>; 2]; 3],
    allocations: usize,
}

impl StagingSet {
    /// Slot `slot`'s upload buffer, at least `bytes` long.
    pub fn upload(&mut self, ctx: &GpuContext, slot: usize, bytes: u64) -> Result<StagingBuffer> {
        let held = &mut self.upload[slot % 2];
        if let Some(buffer) = held.as_ref().filter(|b| b.size() >= bytes.max(4)) {
            return Ok(buffer.clone());
        }
        let made = StagingBuffer::upload(ctx, "vlad upload staging", bytes)?;
        self.allocations += 1;
        *held = Some(made.clone());
        Ok(made)
    }

    /// Slot `slot`'s read-back buffer for `kind`, at least `bytes` long.
    pub fn readback(
        &mut self,
        ctx: &GpuContext,
        kind: ReadKind,
        slot: usize,
        bytes: u64,
    ) -> Result<StagingBuffer> {
        let index = match kind {
            ReadKind::Blocks => 0,
            ReadKind::Labels => 1,
            ReadKind::Counts => 2,
        };
        let held = &mut self.read[index][slot % 2];
        if let Some(buffer) = held.as_ref().filter(|b| b.size() >= bytes.max(4)) {
            return Ok(buffer.clone());
        }
        let made = StagingBuffer::readback(ctx, "vlad read-back staging", bytes)?;
        self.allocations += 1;
        *held = Some(made.clone());
        Ok(made)
    }

    /// Staging buffers allocated since the set was made.
    pub fn allocations(&self) -> usize {
        self.allocations
    }
}

/// Map `staging` (already asked, or asked now) and copy its first
/// `dst.len()` bytes into `dst` in parallel; unmap.
pub fn read_into(
    ctx: &GpuContext,
    staging: &StagingBuffer,
    dst: &mut [u8],
    what: &str,
) -> Result<()> {
    if dst.is_empty() {
        return Ok(());
    }
    staging.request_map(dst.len() as u64);
    staging.wait_mapped(ctx, what)?;
    let copied = match staging.buffer.get_mapped_range(0..dst.len() as u64) {
        Ok(view) => {
            parallel_copy(dst, &view);
            Ok(())
        }
        Err(e) => Err(VladError::Gpu(format!("reading {what}: {e}"))),
    };
    staging.unmap();
    copied
}

/// Fill the first `len` bytes of the mapped `staging` in parallel:
/// `fill(offset, piece)` writes bytes `offset .. offset + piece.len()`.
/// Then unmap it, ready for the device's copy.
pub fn fill_upload(
    ctx: &GpuContext,
    staging: &StagingBuffer,
    len: u64,
    what: &str,
    fill: impl Fn(usize, wgpu::WriteOnly<'_, [u8]>) + Sync,
) -> Result<()> {
    staging.wait_mapped(ctx, what)?;
    if len > 0 {
        let mut view = staging
            .buffer
            .get_mapped_range_mut(0..len)
            .map_err(|e| VladError::Gpu(format!("writing {what}: {e}")))?;
        let mut rest = view.slice(..);
        let mut pieces = Vec::with_capacity((len as usize).div_ceil(PIECE));
        let mut offset = 0;
        while !rest.is_empty() {
            let take = rest.len().min(PIECE);
            let (head, tail) = rest.split_at(take);
            pieces.push((offset, SendPiece(head)));
            offset += take;
            rest = tail;
        }
        pieces
            .into_par_iter()
            .for_each(|(offset, piece)| fill(offset, piece.0));
    }
    staging.unmap();
    Ok(())
}

/// A disjoint piece of a mapped range, handed to one rayon task.
struct SendPiece<'a>(wgpu::WriteOnly<'a, [u8]>);

// SAFETY: a `WriteOnly<[u8]>` is a unique, write-only borrow of plain bytes
// (wgpu implements `Send` for sized `T: Send` only, which leaves slices
// out); moving a unique borrow of bytes to another thread is as sound as
// sending a `&mut [u8]`, and the pieces never overlap (`split_at`).
unsafe impl Send for SendPiece<'_> {}

/// `dst.copy_from_slice(src)` split over the rayon threads (the pages of a
/// fresh destination are faulted in on every thread at once, too).
pub fn parallel_copy(dst: &mut [u8], src: &[u8]) {
    dst.par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}
