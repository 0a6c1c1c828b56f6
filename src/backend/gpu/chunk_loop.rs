//! The order in which the runner ([`crate::backend::gpu::runner`])
//! uploads, submits and reads back a run's chunks.
//!
//! Chunks alternate between two slots. With overlap, chunk `i` is
//! submitted, then — while the device computes it — chunk `i − 1` is
//! completed (one wait, then its read-back) and chunk `i + 1`'s inputs are
//! staged into the other slot. Without overlap (software adapters, whose
//! "device" is the host's own cores) each chunk is completed before the
//! next is staged. Either way every chunk runs the same commands on the
//! same data, so the output is the same bits.

use std::time::Instant;

use crate::backend::gpu::pool::Slot;
use crate::error::Result;
use crate::model::report::StageTimes;

/// What a run does with one chunk, in three steps.
pub(crate) trait ChunkSteps {
    /// A chunk's inputs, staged into its slot.
    type Staged;
    /// A submitted chunk not yet read back.
    type InFlight;

    /// Stage chunk `index`'s inputs into slot `slot` (timed as "upload").
    fn stage(&mut self, index: usize, slot: Slot) -> Result<Self::Staged>;

    /// Record and submit chunk `index` (staged in `slot`).
    fn submit(
        &mut self,
        index: usize,
        slot: Slot,
        staged: Self::Staged,
        times: &mut StageTimes,
    ) -> Result<Self::InFlight>;

    /// Wait for a submitted chunk and read its results back.
    fn complete(&mut self, flight: Self::InFlight, times: &mut StageTimes) -> Result<()>;
}

/// Run the chunks `busy` (plan indices, in order) through `steps`,
/// overlapping consecutive chunks when `overlap`.
pub(crate) fn drive<S: ChunkSteps>(
    steps: &mut S,
    busy: &[usize],
    overlap: bool,
    times: &mut StageTimes,
) -> Result<()> {
    let stage = |steps: &mut S, index: usize, slot: Slot, times: &mut StageTimes| {
        let started = Instant::now();
        let staged = steps.stage(index, slot);
        times.add("upload", started.elapsed().as_secs_f64());
        staged
    };
    let mut prefetched: Option<(usize, S::Staged)> = None;
    let mut in_flight: Option<S::InFlight> = None;
    for (position, &index) in busy.iter().enumerate() {
        let slot: Slot = position % 2;
        let staged = match prefetched.take() {
            Some((i, staged)) if i == index => staged,
            _ => stage(steps, index, slot, times)?,
        };
        let flight = steps.submit(index, slot, staged, times)?;
        if !overlap {
            steps.complete(flight, times)?;
            continue;
        }
        // While the device works on this chunk: read the previous one back…
        if let Some(previous) = in_flight.take() {
            steps.complete(previous, times)?;
        }
        // …and stage the next one (its slot's last user is done).
        if let Some(&next) = busy.get(position + 1) {
            prefetched = Some((next, stage(steps, next, (position + 1) % 2, times)?));
        }
        in_flight = Some(flight);
    }
    if let Some(last) = in_flight.take() {
        steps.complete(last, times)?;
    }
    Ok(())
}
