//! Host side of `shaders/radix_sort.wgsl`: stable LSD key–value radix sort
//! with 8-bit digits (reduce-then-scan: count, scan, scatter), only as many
//! passes as the keys' significant bits need: the pipeline's sort by label
//! is one stable counting pass for K ≤ 256, two for K ≤ 65,536. CPU twin:
//! `twins::radix_sort`.
//!
//! Each pass: `count_digits` writes one histogram of the pass's `mask + 1`
//! bins per tile of [`TILE`] pairs into the scratch buffer (digit-major
//! over tiles); the histograms are scanned hierarchically (`scan_blocks`
//! per level, then `add_block_sums` back down), so any number of tiles
//! works without relying on inter-workgroup progress; `scatter` places
//! each pair. For K ≤ 256 and up to four tiles of histograms per scan
//! block that is three dispatches.

use std::sync::Mutex;

use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::specialize::specialize;
use crate::backend::gpu::stages::host::{uniform_block, wgsl};
use crate::error::{Result, VladError};
use crate::twins::radix_sort::{RADIX, RADIX_BITS, ROUND, ROUNDS, digit_mask, passes};

/// Pairs per `count_digits` / `scatter` workgroup (the shader's `TILE`).
pub const TILE: u32 = crate::twins::radix_sort::TILE as u32;
/// Threads of a `scan_blocks` workgroup by default (the shader's `SCAN_WG`).
pub const DEFAULT_SCAN_WORKGROUP: u32 = 256;
/// Histogram entries each scan thread takes (the shader's `SCAN_ITEMS`).
const SCAN_ITEMS: u32 = 4;
/// Threads of an `add_block_sums` workgroup (the shader's `ADD_WG`).
const ADD_WORKGROUP: u32 = 256;

const SHADER: &str = wgsl!("radix_sort");

/// The WGSL the stage compiles when each scan workgroup has
/// `scan_workgroup` threads (a power of two).
pub fn shader_source(scan_workgroup: u32) -> Result<String> {
    if !scan_workgroup.is_power_of_two() || !(2..=256).contains(&scan_workgroup) {
        return Err(VladError::InvalidArgument(format!(
            "radix sort scan workgroup of {scan_workgroup} threads: need a power of two in 2..=256"
        )));
    }
    specialize(SHADER, &[("SCAN_WG", scan_workgroup.into())])
}

/// Keys and values to sort, with their ping-pong partners.
pub struct SortJob<'a> {
    /// `len` u32 keys (only the low `key_bits` bits are significant).
    pub keys: &'a wgpu::Buffer,
    /// `len` u32 values carried along.
    pub values: &'a wgpu::Buffer,
    /// Scratch of the same size as `keys`.
    pub alt_keys: &'a wgpu::Buffer,
    /// Scratch of the same size as `values`.
    pub alt_values: &'a wgpu::Buffer,
    /// Number of pairs.
    pub len: u32,
    /// Significant key bits (1..=32); keys (or, with `modulus`, the keys'
    /// remainders) must be `< 2^key_bits`.
    pub key_bits: u32,
    /// 0 to sort by the keys; else by `key % modulus` alone, stably. The
    /// pipeline's keys are `image · K + label` over rows already in image
    /// order, so a stable sort by `key % K` (the label: `⌈log₂ K / 4⌉`
    /// passes instead of `⌈log₂(images · K) / 4⌉`) leaves every run of
    /// equal keys contiguous, in (label, image) order, rows in input order
    /// within a run: all the segmented scan needs.
    pub modulus: u32,
}

/// Where the sorted pairs ended up after an even or odd number of passes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SortedIn {
    /// In `keys` / `values`.
    Primary,
    /// In `alt_keys` / `alt_values`.
    Alternate,
}

uniform_block! {
    /// The shader's uniform block (one per pass, one per scan level).
    #[derive(Default)]
    struct Params {
        len: u32,
        tiles: u32,
        shift: u32,
        mask: u32,
        scan_offset: u32,
        scan_len: u32,
        sums_offset: u32,
        modulus: u32,
    }
}

/// What this file assumes of the shader, for the default scan workgroup and
/// the small ones the tests use to build deep scan hierarchies.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    let mut contracts = Vec::new();
    for scan_workgroup in [DEFAULT_SCAN_WORKGROUP, 2, 8, 32] {
        contracts.push(ShaderContract {
            name: format!("radix_sort scan_wg={scan_workgroup}"),
            file: "radix_sort",
            source: shader_source(scan_workgroup)?,
            constants: vec![
                ("TILE", TILE.into()),
                ("WG", (ROUND as u32).into()),
                ("ITEMS", (ROUNDS as u32).into()),
                ("RADIX_BITS", RADIX_BITS.into()),
                ("RADIX", (RADIX as u32).into()),
                ("SCAN_WG", scan_workgroup.into()),
                ("SCAN_ITEMS", SCAN_ITEMS.into()),
                ("ADD_WG", ADD_WORKGROUP.into()),
            ],
            // A tile workgroup's thread count is the shader's business: the
            // host dispatches one per TILE pairs.
            entry_points: vec![
                ("count_digits", None),
                ("scan_blocks", Some([scan_workgroup, 1, 1])),
                ("add_block_sums", Some([ADD_WORKGROUP, 1, 1])),
                ("scatter", None),
            ],
            uniform: Params::layout(),
        });
    }
    Ok(contracts)
}

/// One level of the histogram scan: `len` entries at `offset` of the
/// scratch, block totals written at `sums_offset`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct ScanLevel {
    offset: u32,
    len: u32,
    sums_offset: u32,
}

/// The levels of the hierarchical scan of `entries` histogram entries with
/// blocks of `block` entries, and the scratch length (u32s) they need.
fn scan_levels(entries: u32, block: u32) -> (Vec<ScanLevel>, u64) {
    let mut levels = Vec::new();
    let (mut offset, mut len) = (0u32, entries);
    loop {
        let sums_offset = offset + len;
        levels.push(ScanLevel {
            offset,
            len,
            sums_offset,
        });
        if len <= block {
            // The single block's total lands in one spare entry.
            return (levels, sums_offset as u64 + 1);
        }
        offset = sums_offset;
        len = len.div_ceil(block);
    }
}

/// The compiled sort pipelines and their reusable scratch (histograms).
pub struct RadixSortStage {
    count: wgpu::ComputePipeline,
    scan: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    scatter: wgpu::ComputePipeline,
    scan_block: u32,
    /// Histograms and all their scan levels; grown when a sort needs more.
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// Cap on workgroups per dispatch dimension below the adapter's.
    max_workgroups_per_dim: Option<u32>,
}

impl RadixSortStage {
    /// Compile the shaders for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Self::with_scan_workgroup(ctx, DEFAULT_SCAN_WORKGROUP)
    }

    /// Like [`new`](Self::new) with `scan_workgroup` threads per histogram
    /// scan workgroup (a power of two up to 256): small values make small
    /// sorts use a deep scan hierarchy, which is how the tests cover it.
    pub fn with_scan_workgroup(ctx: &GpuContext, scan_workgroup: u32) -> Result<Self> {
        let source = shader_source(scan_workgroup)?;
        Ok(RadixSortStage {
            count: ctx.pipeline("radix_sort count_digits", &source, "count_digits")?,
            scan: ctx.pipeline("radix_sort scan_blocks", &source, "scan_blocks")?,
            add: ctx.pipeline("radix_sort add_block_sums", &source, "add_block_sums")?,
            scatter: ctx.pipeline("radix_sort scatter", &source, "scatter")?,
            scan_block: scan_workgroup * SCAN_ITEMS,
            scratch: Mutex::new(None),
            max_workgroups_per_dim: None,
        })
    }

    /// Split dispatches as if the adapter allowed at most `max` (≥ 1)
    /// workgroups per dimension, so small sorts exercise the 2-D dispatch
    /// that only huge ones need otherwise.
    pub fn with_max_workgroups_per_dim(mut self, max: u32) -> Self {
        self.max_workgroups_per_dim = Some(max.max(1));
        self
    }

    /// Record a stable sort of `job`'s pairs by key into `encoder`.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &SortJob<'_>,
    ) -> Result<SortedIn> {
        if !(1..=32).contains(&job.key_bits) {
            return Err(VladError::InvalidArgument(format!(
                "radix sort key_bits = {}, must be in 1..=32",
                job.key_bits
            )));
        }
        let bytes = job.len as u64 * 4;
        for (name, buffer) in [
            ("keys", job.keys),
            ("values", job.values),
            ("alt_keys", job.alt_keys),
            ("alt_values", job.alt_values),
        ] {
            if buffer.size() < bytes {
                return Err(VladError::Gpu(format!(
                    "radix sort: {name} holds {} bytes, {} pairs need {bytes}",
                    buffer.size(),
                    job.len
                )));
            }
        }
        if job.len < 2 {
            return Ok(SortedIn::Primary);
        }

        let tiles = job.len.div_ceil(TILE);
        let pass_count = passes(job.key_bits);
        // Each pass scans its own bins × tiles histogram entries (the last
        // pass may have fewer bins); the scratch holds the largest.
        let pass_levels: Vec<(Vec<ScanLevel>, u64)> = (0..pass_count)
            .map(|pass| {
                let bins = digit_mask(pass * RADIX_BITS, job.key_bits) + 1;
                scan_levels(tiles * bins, self.scan_block)
            })
            .collect();
        let scratch_len = pass_levels.iter().map(|(_, len)| *len).max().unwrap_or(1);
        let scratch = self.scratch_of_at_least(ctx, scratch_len * 4)?;

        let max = ctx
            .max_workgroups_per_dim()
            .min(self.max_workgroups_per_dim.unwrap_or(u32::MAX));
        let mut pass_groups = Vec::with_capacity(pass_count as usize);
        for (pass, (levels, _)) in (0..pass_count).zip(&pass_levels) {
            let shift = pass * RADIX_BITS;
            let params = ctx.uniform(
                "radix_sort pass params",
                &Params {
                    len: job.len,
                    tiles,
                    shift,
                    mask: digit_mask(shift, job.key_bits),
                    modulus: job.modulus,
                    ..Params::default()
                },
            )?;
            let (src_k, src_v, dst_k, dst_v) = if pass % 2 == 0 {
                (job.keys, job.values, job.alt_keys, job.alt_values)
            } else {
                (job.alt_keys, job.alt_values, job.keys, job.values)
            };
            let count = ctx.bind_group(
                "radix_sort count",
                &self.count,
                &[
                    params.as_entire_binding(),
                    scratch.as_entire_binding(),
                    src_k.as_entire_binding(),
                ],
            )?;
            let scatter = ctx.bind_group(
                "radix_sort scatter",
                &self.scatter,
                &[
                    params.as_entire_binding(),
                    scratch.as_entire_binding(),
                    src_k.as_entire_binding(),
                    src_v.as_entire_binding(),
                    dst_k.as_entire_binding(),
                    dst_v.as_entire_binding(),
                ],
            )?;
            let mut level_groups = Vec::with_capacity(levels.len());
            for (i, level) in levels.iter().enumerate() {
                let params = ctx.uniform(
                    "radix_sort scan params",
                    &Params {
                        scan_offset: level.offset,
                        scan_len: level.len,
                        sums_offset: level.sums_offset,
                        ..Params::default()
                    },
                )?;
                let entries = [params.as_entire_binding(), scratch.as_entire_binding()];
                let scan = ctx.bind_group(&format!("radix_sort scan {i}"), &self.scan, &entries)?;
                let add = ctx.bind_group(&format!("radix_sort add {i}"), &self.add, &entries)?;
                level_groups.push((*level, scan, add));
            }
            pass_groups.push((count, level_groups, scatter));
        }

        let tile_dispatch = dispatch_2d(tiles, max);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("radix_sort"),
            timestamp_writes: None,
        });
        for (count, level_groups, scatter) in &pass_groups {
            pass.set_pipeline(&self.count);
            pass.set_bind_group(0, count, &[]);
            pass.dispatch_workgroups(tile_dispatch.0, tile_dispatch.1, 1);
            // Up the hierarchy: scan each level's blocks, totals to the next.
            pass.set_pipeline(&self.scan);
            for (level, scan, _) in level_groups {
                let (x, y) = dispatch_2d(level.len.div_ceil(self.scan_block), max);
                pass.set_bind_group(0, scan, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            // Back down: every block gets the scanned total of the blocks before it.
            pass.set_pipeline(&self.add);
            for (level, _, add) in level_groups.iter().rev().skip(1) {
                let (x, y) = dispatch_2d(level.len.div_ceil(ADD_WORKGROUP), max);
                pass.set_bind_group(0, add, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            pass.set_pipeline(&self.scatter);
            pass.set_bind_group(0, scatter, &[]);
            pass.dispatch_workgroups(tile_dispatch.0, tile_dispatch.1, 1);
        }
        drop(pass);

        Ok(if pass_count.is_multiple_of(2) {
            SortedIn::Primary
        } else {
            SortedIn::Alternate
        })
    }

    /// The stage's scratch buffer, reallocated when smaller than `bytes`.
    fn scratch_of_at_least(&self, ctx: &GpuContext, bytes: u64) -> Result<wgpu::Buffer> {
        let mut slot = self
            .scratch
            .lock()
            .map_err(|_| VladError::Gpu("radix sort scratch lock poisoned".to_string()))?;
        match slot.as_ref() {
            Some(buffer) if buffer.size() >= bytes => Ok(buffer.clone()),
            _ => {
                let buffer = ctx.storage_buffer("radix_sort histograms", bytes)?;
                *slot = Some(buffer.clone());
                Ok(buffer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ScanLevel, scan_levels};

    #[test]
    fn one_level_when_one_block_suffices() {
        let (levels, len) = scan_levels(1024, 1024);
        assert_eq!(
            levels,
            vec![ScanLevel {
                offset: 0,
                len: 1024,
                sums_offset: 1024
            }]
        );
        assert_eq!(len, 1025);
    }

    #[test]
    fn levels_shrink_by_the_block_size() {
        let (levels, len) = scan_levels(1104, 32);
        let lens: Vec<u32> = levels.iter().map(|l| l.len).collect();
        assert_eq!(lens, vec![1104, 35, 2]);
        assert_eq!(levels[1].offset, 1104);
        assert_eq!(levels[2].offset, 1104 + 35);
        assert_eq!(len, 1104 + 35 + 2 + 1);
    }
}
