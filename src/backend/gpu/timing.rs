//! Per-stage GPU times from encoder timestamps, where the adapter has them.
//!
//! All stages of a chunk are recorded into one command encoder, so host wall
//! time cannot tell them apart; a timestamp written between two stages can.
//! Adapters without `TIMESTAMP_QUERY_INSIDE_ENCODERS` (many Metal and web
//! ones) get wall time of the whole submission instead, under
//! [`COMPUTE_GROUP`].

use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::staging::{StagingBuffer, read_into};
use crate::error::{Result, VladError};
use crate::model::report::StageTimes;

/// Stage name used for the wall time of a whole submission when the adapter
/// cannot time stages on its own.
pub const COMPUTE_GROUP: &str = "compute";

/// Most timestamps one submission writes: a start plus one per stage
/// (upload, assign, sort, scan, residual, normalize, readback), with room
/// to spare.
pub const MAX_LAPS: u32 = 16;

/// A query set and the buffers its results travel back through: one range
/// of queries and one read-back buffer per pipeline slot, since two chunks
/// may be in flight at once.
pub struct GpuTimer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: [StagingBuffer; 2],
    period_ns: f64,
}

/// Byte offset of each slot's range in the resolve buffer (resolving must
/// start at a multiple of 256).
const SLOT_STRIDE: u64 = 256;

impl GpuTimer {
    /// A timer for `ctx`, or `None` when the adapter cannot write timestamps
    /// inside command encoders.
    pub fn new(ctx: &GpuContext) -> Result<Option<Self>> {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if !ctx.features.contains(needed) {
            return Ok(None);
        }
        let bytes = MAX_LAPS as u64 * wgpu::QUERY_SIZE as u64;
        let (queries, resolved) = ctx.checked("creating the timestamp queries", || {
            let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("vlad stage timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_LAPS,
            });
            let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("vlad resolved timestamps"),
                size: SLOT_STRIDE + bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (queries, resolved)
        })?;
        let readback = [
            StagingBuffer::readback(ctx, "vlad timestamp readback 0", bytes)?,
            StagingBuffer::readback(ctx, "vlad timestamp readback 1", bytes)?,
        ];
        Ok(Some(GpuTimer {
            queries,
            resolved,
            readback,
            period_ns: ctx.queue.get_timestamp_period() as f64,
        }))
    }
}

/// The timestamps of one submission: `lap` after each stage is recorded,
/// `finish` before the encoder is submitted, `request_map` after it is
/// submitted, `collect` after it completed.
pub struct StageClock<'t> {
    timer: Option<&'t GpuTimer>,
    /// Pipeline slot: which range of queries and which read-back buffer.
    slot: usize,
    /// `stages[i]` ended at timestamp `i + 1`; timestamp 0 is the start.
    stages: Vec<&'static str>,
    started: bool,
}

impl<'t> StageClock<'t> {
    /// A clock writing into `timer`'s range for `slot` (0 or 1); with
    /// `None` every call is a no-op.
    pub fn new(timer: Option<&'t GpuTimer>, slot: usize) -> Self {
        StageClock {
            timer,
            slot: slot % 2,
            stages: Vec::new(),
            started: false,
        }
    }

    /// Whether stages are timed on the device.
    pub fn is_timing(&self) -> bool {
        self.timer.is_some()
    }

    fn base(&self) -> u32 {
        self.slot as u32 * MAX_LAPS
    }

    /// Mark the start of the first stage.
    pub fn start(&mut self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(timer) = self.timer {
            encoder.write_timestamp(&timer.queries, self.base());
            self.started = true;
            self.stages.clear();
        }
    }

    /// Mark the end of `stage` (which began at the previous mark).
    pub fn lap(&mut self, encoder: &mut wgpu::CommandEncoder, stage: &'static str) {
        if let Some(timer) = self.timer {
            let index = self.stages.len() as u32 + 1;
            if self.started && index < MAX_LAPS {
                encoder.write_timestamp(&timer.queries, self.base() + index);
                self.stages.push(stage);
            }
        }
    }

    /// Resolve the timestamps written so far and copy them to the host-mappable
    /// buffer, at the end of `encoder`.
    pub fn finish(&self, encoder: &mut wgpu::CommandEncoder) {
        if let (Some(timer), true) = (self.timer, self.started) {
            let count = self.stages.len() as u32 + 1;
            let offset = self.slot as u64 * SLOT_STRIDE;
            let base = self.base();
            encoder.resolve_query_set(&timer.queries, base..base + count, &timer.resolved, offset);
            let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
            encoder.copy_buffer_to_buffer(
                &timer.resolved,
                offset,
                &timer.readback[self.slot].buffer,
                0,
                bytes,
            );
        }
    }

    fn bytes(&self) -> u64 {
        (self.stages.len() + 1) as u64 * wgpu::QUERY_SIZE as u64
    }

    /// After the submission: ask for the timestamps to be mapped once it
    /// completes (so the wait for the chunk maps them too).
    pub fn request_map(&self) {
        if let (Some(timer), true) = (self.timer, self.started) {
            timer.readback[self.slot].request_map(self.bytes());
        }
    }

    /// After the submission completed: read the timestamps back and add each
    /// stage's seconds to `times`.
    pub fn collect(self, ctx: &GpuContext, times: &mut StageTimes) -> Result<()> {
        let (Some(timer), true) = (self.timer, self.started) else {
            return Ok(());
        };
        let count = self.stages.len() + 1;
        let mut raw = vec![0u8; count * wgpu::QUERY_SIZE as usize];
        read_into(ctx, &timer.readback[self.slot], &mut raw, "timestamps")?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        if ticks.len() != count {
            return Err(VladError::Gpu(format!(
                "read {} timestamps, expected {count}",
                ticks.len()
            )));
        }
        for (stage, seconds) in self.stages.iter().zip(lap_seconds(&ticks, timer.period_ns)) {
            times.add(stage, seconds);
        }
        Ok(())
    }
}

/// Seconds between consecutive timestamps (`ticks.len() − 1` of them), given
/// the tick period in nanoseconds. A timestamp that goes backwards (drivers
/// may reorder timestamps within an encoder, or the counter may wrap) counts
/// as zero rather than as a huge number.
pub fn lap_seconds(ticks: &[u64], period_ns: f64) -> Vec<f64> {
    ticks
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]) as f64 * period_ns * 1e-9)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::lap_seconds;

    #[test]
    fn laps_are_differences_scaled_by_the_period() {
        let laps = lap_seconds(&[100, 1100, 1100, 4100], 2.0);
        assert_eq!(laps.len(), 3);
        assert!((laps[0] - 2e-6).abs() < 1e-15);
        assert_eq!(laps[1], 0.0);
        assert!((laps[2] - 6e-6).abs() < 1e-15);
        // Backwards: zero, not a wrapped-around eternity.
        assert_eq!(lap_seconds(&[10, 5], 1.0), vec![0.0]);
        assert!(lap_seconds(&[7], 1.0).is_empty());
    }
}
