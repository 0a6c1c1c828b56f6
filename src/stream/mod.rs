//! Encoding and assigning inputs larger than memory (SPEC §11): whole
//! images in bounded batches read from a [`MappedNpy`], the results
//! appended to an [`NpyStream`], with reading, computing and writing
//! overlapped by three threads joined by bounded queues.
//!
//! ```text
//!   reader ──(0-slot queue)──▶ compute (this thread) ──(1-slot queue)──▶ writer
//!   prefetch / convert           the backend                           append to the temp file
//! ```
//!
//! **Same bits as in memory.** A batch of whole images is run through the
//! backend exactly as the in-memory run would run those images; an image
//! larger than a batch is cut into row pieces whose raw (pre-normalization)
//! sums are combined in a fixed order and normalized once, as the in-memory
//! run combines them:
//!
//! * `cpu`: pieces are whole multiples of [`PARTIAL_ROWS`] rows, so the
//!   blocked f64 partials and their in-order sum are the in-memory ones
//!   ([`crate::backend::cpu::aggregate::add_image_rows`]);
//! * `reference`: the f64 sum continues row by row across pieces;
//! * `gpu`: the batches *are* the in-memory run's chunks (the planner is
//!   run on the whole file's offsets) grouped whole, and a split image's
//!   pieces are the planner's pieces, combined in f64 in piece order.
//!
//! **Bounded memory.** Each batch is sized to a quarter of the memory limit
//! (input pages + labels + output rows); at most two batches' input pages
//! are mapped in at once (the one computing, the one prefetched: pages are
//! dropped from the process once computed) and at most three batches'
//! outputs exist (computing, queued, being written). An image whose `K·F`
//! output row alone exceeds that is the one exception.
//!
//! A failure anywhere — a NaN in the last image, a full disk — stops all
//! three threads and leaves no output file (the temporary file is removed).

mod weighted;

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use ndarray::{Array2, Array3, ArrayView2};

use crate::backend::Backend;
use crate::backend::cpu::aggregate::PARTIAL_ROWS;
use crate::encoder::{Encoder, GpuRan};
use crate::error::{Result, VladError};
use crate::io::OutputFile;
use crate::io::mapped::MappedNpy;
use crate::io::npy_stream::NpyStream;
use crate::model::batch::{Batch, check_offsets};
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::report::{RunReport, StageTimes};
use crate::stream::weighted::WeightedPieces;

/// The default `--memory-limit`: 1 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

/// Where a stream stands, for a progress display.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StreamProgress {
    /// Images finished.
    pub images_done: usize,
    /// Images in all.
    pub images_total: usize,
    /// Descriptors processed.
    pub rows_done: usize,
    /// Descriptors in all.
    pub rows_total: usize,
}

/// How to stream.
#[derive(Copy, Clone)]
pub struct StreamOptions<'a> {
    /// Bound on the pipeline's memory, in bytes (see the module docs).
    pub memory_limit: u64,
    /// Called after every batch.
    pub progress: Option<&'a (dyn Fn(StreamProgress) + Sync)>,
    /// Also check every batch against the f64 reference as `--verify` does
    /// ([`crate::verify`]), merged into
    /// [`Streamed::verification`]; when it fails, nothing is written. Images
    /// are then never cut into pieces (the reference checks whole images):
    /// one larger than a batch is a batch of its own.
    pub verify: bool,
    /// Test hook: the GPU device is lost at the start of this batch (its
    /// index in the plan), as a driver reset would lose it.
    #[doc(hidden)]
    pub lose_gpu_at_batch: Option<usize>,
    /// Test hook: an explicit `gpu` backend falls back to the CPU on a GPU
    /// failure as `auto` does (`auto` never runs on the software adapters
    /// tests have).
    #[doc(hidden)]
    pub gpu_falls_back: bool,
}

impl Default for StreamOptions<'_> {
    fn default() -> Self {
        StreamOptions {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            progress: None,
            verify: false,
            lose_gpu_at_batch: None,
            gpu_falls_back: false,
        }
    }
}

/// What a streamed run did.
#[derive(Clone, Debug)]
pub struct Streamed {
    /// Backend, adapter and timings; `seconds` is compute only (time the
    /// compute thread spent computing, not waiting for reads or writes).
    pub report: RunReport,
    /// Images `T`.
    pub images: usize,
    /// Descriptors `N`.
    pub descriptors: usize,
    /// Batches the input was cut into.
    pub batches: usize,
    /// Images larger than a batch, processed in row pieces.
    pub split_images: usize,
    /// With [`StreamOptions::verify`]: the verification of the whole
    /// output, the same figures as [`crate::verify::verify`] on the whole
    /// input in memory, and its seconds. The output exists only when it
    /// passed.
    pub verification: Option<(crate::verify::Verification, f64)>,
}

/// Parse a memory size: `1GiB`, `128MiB`, `512KiB`, `4096` or `4096bytes`
/// (also `G`/`M`/`K`, `GB`/`MB`/`KB` as powers of 1024, and decimals such
/// as `1.5GiB`).
pub fn parse_memory_size(text: &str) -> Result<u64> {
    let bad = || {
        VladError::InvalidArgument(format!(
            "memory size {text:?}: expected a number with an optional unit \
             (bytes, KiB, MiB, GiB), e.g. 512MiB"
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Encode the images of `input` into `out` as `(T, K·F)` float32, in
/// bounded batches: `(T, L, F)` files need no `offsets`; `(N, F)` files are
/// split by `offsets` (CSR) or are one image. `labels`, when given, replace
/// assignment (one per descriptor, in `[0, K)`).
///
/// Bitwise the result of [`Encoder::encode_batch`] on the whole input, for
/// every backend (see the module docs).
pub fn encode_file(
    encoder: &Encoder,
    input: &MappedNpy,
    offsets: Option<&[usize]>,
    labels: Option<&[u32]>,
    out: OutputFile,
    options: &StreamOptions<'_>,
) -> Result<Streamed> {
    check_room(encoder, input, offsets, &out)?;
    let job = Job::new(encoder, input, offsets, labels, Task::Encode)?;
    dispatch(&job, out, options)
}

/// The up-front size check of a streamed encoding, before anything is
/// allocated or computed: its byte size must not overflow, and it must fit
/// in the free space of the output's folder (the output is written to disk
/// batch by batch, so memory is not its limit; a full disk half-way would
/// waste the run).
fn check_room(
    encoder: &Encoder,
    input: &MappedNpy,
    offsets: Option<&[usize]>,
    out: &OutputFile,
) -> Result<()> {
    let images = match (input.fixed_images(), offsets) {
        (Some((t, _)), _) => t,
        (None, Some(o)) => o.len().saturating_sub(1),
        (None, None) => 1,
    };
    let codebook = encoder.codebook();
    let (clusters, dim) = (codebook.clusters(), codebook.dim());
    let (_, bytes) = crate::encoder::output_size(images, clusters, dim)?;
    let folder = match out.path().parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    match crate::io::disk_space::free_bytes(&folder) {
        Some(free) if free < bytes => Err(VladError::NoSpace {
            folder,
            bytes,
            free,
            hint: format!(
                "encode fewer images per call (split the input), use a smaller codebook \
                 (K × F = {clusters} × {dim} is {} bytes per image) or write elsewhere",
                (clusters as u128) * (dim as u128) * 4
            ),
        }),
        _ => Ok(()),
    }
}

/// Label every descriptor of `input` with its nearest centroid into `out`
/// as `(N,)` int64, in bounded batches (image-major for `(T, L, F)`).
pub fn assign_file(
    encoder: &Encoder,
    input: &MappedNpy,
    out: OutputFile,
    options: &StreamOptions<'_>,
) -> Result<Streamed> {
    let job = Job::new(encoder, input, None, None, Task::Assign)?;
    dispatch(&job, out, options)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Task {
    Encode,
    Assign,
}

/// The backend a stream drives.
enum Engine {
    Cpu,
    Reference,
    #[cfg(feature = "gpu")]
    Gpu(std::sync::Arc<crate::backend::gpu::GpuBackend>),
}

struct Job<'a> {
    encoder: &'a Encoder,
    input: &'a MappedNpy,
    offsets: Vec<usize>,
    labels: Option<&'a [u32]>,
    task: Task,
    /// Soft assignment's parameters (encode only).
    soft: Option<crate::model::assignment::SoftParams>,
    /// Soft assignment or `rn`: SPEC §10's route.
    weighted: bool,
}

impl<'a> Job<'a> {
    fn new(
        encoder: &'a Encoder,
        input: &'a MappedNpy,
        offsets: Option<&[usize]>,
        labels: Option<&'a [u32]>,
        task: Task,
    ) -> Result<Self> {
        let codebook = encoder.codebook();
        // Soft assignment and `rn` (SPEC §10): whole images through
        // `crate::backend::weighted`, split images through `crate::stream::weighted`.
        let soft = match task {
            Task::Encode => encoder.assignment().soft_params(codebook)?,
            Task::Assign => None,
        };
        if soft.is_some() && labels.is_some() {
            return Err(VladError::InvalidArgument(
                "labels cannot be given with soft assignment (every descriptor weighs on every centroid)"
                    .to_string(),
            ));
        }
        let weighted = task == Task::Encode
            && (soft.is_some() || encoder.normalization().residual_normalized());
        // F = 0 first, as the in-memory batch checks it (the same message
        // from every path).
        if input.dim() == 0 {
            return Err(VladError::Empty(
                "the descriptors have F = 0 dimensions".to_string(),
            ));
        }
        if input.dim() != codebook.dim() {
            return Err(VladError::DimensionMismatch(format!(
                "descriptors have F = {} but centroids have F = {}",
                input.dim(),
                codebook.dim()
            )));
        }
        let n = input.rows_total();
        let offsets = match (input.fixed_images(), offsets) {
            (Some((t, l)), None) => {
                // T + 1 offsets, allocated fallibly: an empty (T, 0, F)
                // file can claim any T.
                let mut offsets: Vec<usize> = Vec::new();
                let count = t.checked_add(1);
                if count.is_none_or(|c| offsets.try_reserve_exact(c).is_err()) {
                    return Err(VladError::TooLarge {
                        what: format!("the offsets of T = {t} images"),
                        bytes: count.and_then(|c| (c as u64).checked_mul(8)),
                        hint: "split the images into smaller files".to_string(),
                    });
                }
                offsets.extend((0..=t).map(|i| i * l));
                offsets
            }
            (Some(_), Some(_)) => {
                return Err(VladError::InvalidArgument(
                    "offsets are for (N, F) descriptors; (T, L, F) images need none".into(),
                ));
            }
            (None, Some(o)) => {
                check_offsets(o, n)?;
                o.to_vec()
            }
            (None, None) => vec![0, n],
        };
        if let Some(labels) = labels {
            if labels.len() != n {
                return Err(VladError::DimensionMismatch(format!(
                    "{} labels for {n} descriptors",
                    labels.len()
                )));
            }
            if let Some((index, &label)) = labels
                .iter()
                .enumerate()
                .find(|(_, l)| **l as usize >= codebook.clusters())
            {
                return Err(VladError::LabelOutOfRange {
                    index,
                    label: label as i128,
                    clusters: codebook.clusters(),
                });
            }
        }
        Ok(Job {
            encoder,
            input,
            offsets,
            labels,
            task,
            soft,
            weighted,
        })
    }

    fn images(&self) -> usize {
        self.offsets.len() - 1
    }
}

fn dispatch(job: &Job<'_>, out: OutputFile, options: &StreamOptions<'_>) -> Result<Streamed> {
    match job.input.dtype() {
        DType::F32 => run::<f32>(job, out, options),
        DType::F64 => run::<f64>(job, out, options),
        DType::U8 => run::<u8>(job, out, options),
    }
}

/// The backend a stream drives and what the report says about it.
struct Resolved {
    engine: Engine,
    backend: Backend,
    gpu: GpuRan,
    fallback_reason: Option<String>,
}

/// The backend to drive, as [`Encoder`] picks it: under `Auto` the GPU only
/// on a hardware adapter, else the CPU with the reason in the report (the
/// library prints nothing).
fn resolve(encoder: &Encoder) -> Result<Resolved> {
    let resolved = |engine, backend, gpu, fallback_reason| Resolved {
        engine,
        backend,
        gpu,
        fallback_reason,
    };
    match encoder.backend() {
        Backend::Cpu => Ok(resolved(Engine::Cpu, Backend::Cpu, GpuRan::default(), None)),
        Backend::Reference => Ok(resolved(
            Engine::Reference,
            Backend::Reference,
            GpuRan::default(),
            None,
        )),
        #[cfg(feature = "gpu")]
        Backend::Gpu => {
            let mut ran = GpuRan::default();
            let gpu = encoder.gpu_for_stream(&mut ran)?;
            Ok(resolved(Engine::Gpu(gpu), Backend::Gpu, ran, None))
        }
        #[cfg(feature = "gpu")]
        Backend::Auto => {
            let mut ran = GpuRan::default();
            match encoder.gpu_for_stream(&mut ran) {
                Ok(gpu) => Ok(resolved(Engine::Gpu(gpu), Backend::Gpu, ran, None)),
                // A VLAD_ADAPTER that matches nothing is a typo to fix, not
                // a reason to fall back quietly.
                Err(VladError::BackendUnavailable(reason))
                    if crate::backend::adapters::is_no_match(&reason) =>
                {
                    Err(VladError::BackendUnavailable(reason))
                }
                Err(err @ (VladError::BackendUnavailable(_) | VladError::Gpu(_))) => {
                    let reason = match err {
                        VladError::BackendUnavailable(reason) => reason,
                        other => format!("{other}: using cpu"),
                    };
                    // The failed GPU attempt is setup, not compute.
                    let cpu = GpuRan {
                        setup_seconds: ran.setup_seconds,
                        ..GpuRan::default()
                    };
                    Ok(resolved(Engine::Cpu, Backend::Cpu, cpu, Some(reason)))
                }
                Err(other) => Err(other),
            }
        }
        #[cfg(not(feature = "gpu"))]
        Backend::Gpu => Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        )),
        #[cfg(not(feature = "gpu"))]
        Backend::Auto => Ok(resolved(
            Engine::Cpu,
            Backend::Cpu,
            GpuRan::default(),
            Some("built without the gpu feature: using cpu".to_string()),
        )),
    }
}

/// One batch: whole images, or one piece of a split image.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    images: Range<usize>,
    rows: Range<usize>,
    /// `(index, count)` when this is a piece of one split image.
    part: Option<(usize, usize)>,
}

impl Piece {
    fn completes_images(&self) -> bool {
        self.part.is_none_or(|(i, n)| i + 1 == n)
    }
}

/// Bytes one batch may use: a quarter of the limit (see the module docs),
/// at least 64 KiB.
fn batch_budget(memory_limit: u64) -> u64 {
    (memory_limit / 4).max(64 << 10)
}

/// Whole images, greedily, while a batch's cost stays within `budget`; an
/// image over the budget alone becomes pieces of at most `piece_rows(·)`
/// rows.
fn plan_greedy(
    offsets: &[usize],
    row_bytes: u64,
    image_bytes: u64,
    budget: u64,
    piece_rows: u64,
) -> Vec<Piece> {
    let cost = |images: usize, rows: usize| images as u64 * image_bytes + rows as u64 * row_bytes;
    let images = offsets.len() - 1;
    let mut plan = Vec::new();
    let mut open: Option<usize> = None;
    for t in 0..images {
        if let Some(first) = open {
            if cost(t + 1 - first, offsets[t + 1] - offsets[first]) <= budget {
                continue;
            }
            plan.push(Piece {
                images: first..t,
                rows: offsets[first]..offsets[t],
                part: None,
            });
            open = None;
        }
        let rows = offsets[t + 1] - offsets[t];
        if cost(1, rows) <= budget || rows as u64 <= piece_rows {
            open = Some(t);
            continue;
        }
        let piece = usize::try_from(piece_rows).unwrap_or(usize::MAX).max(1);
        let count = rows.div_ceil(piece);
        for index in 0..count {
            let start = offsets[t] + index * piece;
            plan.push(Piece {
                images: t..t + 1,
                rows: start..(start + piece).min(offsets[t + 1]),
                part: Some((index, count)),
            });
        }
    }
    if let Some(first) = open {
        plan.push(Piece {
            images: first..images,
            rows: offsets[first]..offsets[images],
            part: None,
        });
    }
    plan
}

/// The batches of `job` for `engine`.
fn plan<E: Element>(job: &Job<'_>, engine: &Engine, budget: u64) -> Result<Vec<Piece>> {
    let codebook = job.encoder.codebook();
    let (k, f) = (codebook.clusters() as u64, codebook.dim() as u64);
    let elem = std::mem::size_of::<E>() as u64;
    // Input values, the label, and for assign the i64 written.
    let row_bytes = f * elem
        + 4
        + match job.task {
            Task::Assign => 8,
            Task::Encode => 0,
        };
    let image_bytes = match job.task {
        Task::Encode => k * f * 4 + k * 4,
        Task::Assign => 0,
    };
    let free_rows = budget.saturating_sub(image_bytes) / row_bytes;
    match engine {
        Engine::Cpu => {
            // Pieces of whole PARTIAL_ROWS blocks: the in-memory blocking.
            let blocks = (free_rows / PARTIAL_ROWS as u64).max(1);
            Ok(plan_greedy(
                &job.offsets,
                row_bytes,
                image_bytes,
                budget,
                blocks * PARTIAL_ROWS as u64,
            ))
        }
        // The reference's soft/rn sums are not cut into pieces: an image
        // over the budget is one batch (SPEC §11's exception).
        Engine::Reference if job.weighted => Ok(plan_greedy(
            &job.offsets,
            row_bytes,
            image_bytes,
            budget,
            u64::MAX,
        )),
        Engine::Reference => Ok(plan_greedy(
            &job.offsets,
            row_bytes,
            image_bytes,
            budget,
            free_rows.max(1),
        )),
        // Soft/rn on the GPU go through `crate::backend::weighted` a batch of whole
        // images at a time (no pieces), as the in-memory run does.
        #[cfg(feature = "gpu")]
        Engine::Gpu(_) if job.weighted => Ok(plan_greedy(
            &job.offsets,
            row_bytes,
            image_bytes,
            budget,
            u64::MAX,
        )),
        #[cfg(feature = "gpu")]
        Engine::Gpu(gpu) => {
            // The in-memory run's own chunks, grouped whole.
            let chunks = gpu.plan_offsets(codebook, &job.offsets, E::DTYPE)?;
            let cost =
                |images: usize, rows: usize| images as u64 * image_bytes + rows as u64 * row_bytes;
            let mut plan: Vec<Piece> = Vec::new();
            for chunk in chunks {
                if let Some(part) = chunk.part {
                    plan.push(Piece {
                        images: chunk.images,
                        rows: chunk.rows,
                        part: Some((part.index, part.count)),
                    });
                    continue;
                }
                if let Some(last) = plan.last_mut()
                    && last.part.is_none()
                    && cost(
                        chunk.images.end - last.images.start,
                        chunk.rows.end - last.rows.start,
                    ) <= budget
                {
                    last.images.end = chunk.images.end;
                    last.rows.end = chunk.rows.end;
                    continue;
                }
                plan.push(Piece {
                    images: chunk.images,
                    rows: chunk.rows,
                    part: None,
                });
            }
            // The planner leaves out nothing but may start later than
            // image 0 when there are no images at all.
            Ok(plan)
        }
    }
}

/// What the reader hands the compute thread: the piece, and its rows when
/// they had to be converted (else they are read from the map in place).
struct Loaded<E> {
    index: usize,
    converted: Option<Vec<E>>,
}

/// Results on their way to the writer.
enum Rows {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

fn run<E: Element>(
    job: &Job<'_>,
    out: OutputFile,
    options: &StreamOptions<'_>,
) -> Result<Streamed> {
    let codebook = job.encoder.codebook();
    let Resolved {
        engine,
        backend,
        gpu,
        fallback_reason,
    } = resolve(job.encoder)?;
    let budget = batch_budget(options.memory_limit);
    let plan = if options.verify && job.task == Task::Encode {
        whole_images_plan::<E>(job, budget)
    } else {
        plan::<E>(job, &engine, budget)?
    };
    // Under `auto`, a GPU failure half-way moves the rest of the stream to
    // the CPU (SPEC §7's fallback, batch by batch); under `gpu` it is the
    // run's error.
    let falls_back = job.encoder.backend() == Backend::Auto || options.gpu_falls_back;
    let (k, f) = (codebook.clusters(), codebook.dim());
    let n = job.input.rows_total();
    let t = job.images();
    let stream = match job.task {
        Task::Encode => {
            // Overflow only: the output goes to disk batch by batch, so it
            // need not fit in memory (unlike `Encoder::check_output_fits`).
            let (_, bytes) = crate::encoder::output_size(t, k, f)?;
            NpyStream::start(out, "<f4", &[t, k * f], bytes)?
        }
        Task::Assign => NpyStream::start(out, "<i8", &[n], n as u64 * 8)?,
    };
    let in_place = job.input.in_place::<E>();

    let mut state = Compute {
        job,
        engine,
        falls_back,
        fell_back: None,
        stages: StageTimes::new(),
        seconds: 0.0,
        piece_sums: Vec::new(),
        piece_counts: Vec::new(),
        weighted: None,
        verify: (options.verify && job.task == Task::Encode).then(Checked::default),
    };
    let split_images = plan
        .iter()
        .filter(|p| p.part.is_some_and(|(i, _)| i == 0))
        .count();

    let stream = std::thread::scope(|scope| -> Result<NpyStream> {
        let (load_tx, load_rx) = sync_channel::<Result<Loaded<E>>>(0);
        let (write_tx, write_rx) = sync_channel::<Rows>(1);
        let plan = &plan;
        let input = job.input;
        let reader = scope.spawn(move || read_ahead(input, plan, in_place, load_tx));
        let writer = scope.spawn(move || write_behind(stream, write_rx));

        let computed = compute_all(&mut state, plan, in_place, load_rx, write_tx, options);
        // The channels are closed: both threads end.
        let reader = reader.join();
        let written = match writer.join() {
            Ok(w) => w,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Err(panic) = reader {
            std::panic::resume_unwind(panic);
        }
        match (computed, written) {
            // The writer's error is the cause when the compute thread only
            // saw its queue close.
            (Err(StopReason::WriterGone), Err(e)) => Err(e),
            (Err(StopReason::WriterGone), Ok(_)) => Err(VladError::Io {
                action: "cannot write",
                path: job.input.path().to_path_buf(),
                source: std::io::Error::other("the writer stopped early").into(),
            }),
            (Err(StopReason::Error(e)), _) => Err(e),
            (Ok(()), written) => written,
        }
    })?;
    let verification = state.verify.take().map(Checked::finish);
    let passed = verification.as_ref().is_none_or(|(v, _)| v.passed());
    if passed {
        stream.commit()?;
    }
    let (backend, fallback_reason, mut notes) = match state.fell_back.take() {
        Some(why) => (Backend::Cpu, Some(why.clone()), {
            let mut notes = gpu.notes;
            notes.push(why);
            notes
        }),
        None => (backend, fallback_reason, gpu.notes),
    };
    notes.dedup();
    Ok(Streamed {
        report: RunReport {
            backend,
            adapter: gpu.adapter,
            #[cfg(feature = "gpu")]
            adapter_kind: gpu.kind,
            #[cfg(not(feature = "gpu"))]
            adapter_kind: None,
            seconds: state.seconds,
            setup_seconds: gpu.setup_seconds,
            stages: state.stages,
            fallback_reason,
            notes,
        },
        images: t,
        descriptors: n,
        batches: plan.len(),
        split_images,
        verification,
    })
}

/// Load every piece in order: prefetch its pages, or convert its rows.
fn read_ahead<E: Element>(
    input: &MappedNpy,
    plan: &[Piece],
    in_place: bool,
    tx: SyncSender<Result<Loaded<E>>>,
) {
    for (index, piece) in plan.iter().enumerate() {
        let loaded = if in_place {
            input.prefetch(piece.rows.clone());
            Ok(Loaded {
                index,
                converted: None,
            })
        } else {
            let mut buffer = Vec::new();
            let result = input.rows::<E>(piece.rows.clone(), &mut buffer).map(|_| ());
            input.release(piece.rows.clone());
            result.map(|()| Loaded {
                index,
                converted: Some(buffer),
            })
        };
        let failed = loaded.is_err();
        if tx.send(loaded).is_err() || failed {
            return;
        }
    }
}

/// Append every result in order; hand the stream back for the commit.
fn write_behind(mut stream: NpyStream, rx: Receiver<Rows>) -> Result<NpyStream> {
    for rows in rx {
        match &rows {
            Rows::F32(v) => stream.append(bytemuck::cast_slice(v))?,
            Rows::I64(v) => stream.append(bytemuck::cast_slice(v))?,
        }
    }
    Ok(stream)
}

enum StopReason {
    Error(VladError),
    WriterGone,
}

impl From<VladError> for StopReason {
    fn from(e: VladError) -> Self {
        StopReason::Error(e)
    }
}

struct Compute<'j> {
    job: &'j Job<'j>,
    engine: Engine,
    /// Whether a GPU failure moves the rest of the stream to the CPU.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    falls_back: bool,
    /// Why it did, once it has.
    fell_back: Option<String>,
    stages: StageTimes,
    seconds: f64,
    /// Raw f64 sums and counts of the pieces of a split image so far.
    piece_sums: Vec<f64>,
    piece_counts: Vec<u64>,
    /// The same under soft assignment or `rn`.
    weighted: Option<WeightedPieces>,
    /// With `--verify`: the checks so far.
    verify: Option<Checked>,
}

fn compute_all<E: Element>(
    state: &mut Compute<'_>,
    plan: &[Piece],
    in_place: bool,
    rx: Receiver<Result<Loaded<E>>>,
    tx: SyncSender<Rows>,
    options: &StreamOptions<'_>,
) -> Result<(), StopReason> {
    let n = state.job.input.rows_total();
    let mut empty = Vec::new();
    for expected in 0..plan.len() {
        let loaded = rx
            .recv()
            .map_err(|_| VladError::InvalidArgument("the reader stopped early (a bug)".into()))??;
        debug_assert_eq!(loaded.index, expected);
        let piece = &plan[loaded.index];
        let rows: &[E] = match &loaded.converted {
            Some(buffer) => buffer,
            None => state.job.input.rows::<E>(piece.rows.clone(), &mut empty)?,
        };
        let started = Instant::now();
        if options.lose_gpu_at_batch == Some(expected) {
            state.lose_gpu();
        }
        let mut result = state.compute(piece, rows);
        if let Err(error) = &result
            && state.should_fall_back(error)
        {
            state.fall_back(expected, plan.len(), error);
            result = state
                .catch_up(piece)
                .and_then(|()| state.compute(piece, rows));
        }
        state.seconds += started.elapsed().as_secs_f64();
        if in_place {
            state.job.input.release(piece.rows.clone());
        }
        if let Some(rows) = result? {
            tx.send(rows).map_err(|_| StopReason::WriterGone)?;
        }
        if let Some(progress) = options.progress {
            progress(StreamProgress {
                images_done: if piece.completes_images() {
                    piece.images.end
                } else {
                    piece.images.start
                },
                images_total: state.job.images(),
                rows_done: piece.rows.end,
                rows_total: n,
            });
        }
    }
    Ok(())
}

impl Compute<'_> {
    fn codebook(&self) -> &Codebook {
        self.job.encoder.codebook()
    }

    /// The test hook of [`StreamOptions::lose_gpu_at_batch`].
    fn lose_gpu(&self) {
        #[cfg(feature = "gpu")]
        if let Engine::Gpu(gpu) = &self.engine {
            gpu.simulate_loss_on_next_run();
        }
    }

    /// Whether `error` from the engine is a GPU failure the stream
    /// survives on the CPU.
    fn should_fall_back(&self, error: &VladError) -> bool {
        #[cfg(feature = "gpu")]
        if let Engine::Gpu(_) = self.engine {
            return self.falls_back
                && matches!(error, VladError::Gpu(_) | VladError::BackendUnavailable(_));
        }
        let _ = error;
        false
    }

    /// Move the rest of the stream, batch `index` (of `batches`) included,
    /// to the CPU, and say why.
    fn fall_back(&mut self, index: usize, batches: usize, error: &VladError) {
        self.engine = Engine::Cpu;
        self.fell_back = Some(format!(
            "the gpu failed on batch {} of {batches} ({error}): that batch and the {} after it \
             ran on cpu",
            index + 1,
            batches - index - 1
        ));
    }

    /// Before a piece of a split image is redone on the CPU: the image's
    /// earlier pieces, summed on the GPU into `piece_sums`, are summed again
    /// on the CPU from the map (whole multiples of [`PARTIAL_ROWS`] at a
    /// time, each read and released in turn), so that the whole image is
    /// the CPU's.
    fn catch_up(&mut self, piece: &Piece) -> Result<()> {
        match piece.part {
            Some((index, _)) if index > 0 => {}
            _ => return Ok(()),
        }
        match self.job.input.dtype() {
            DType::F32 => self.catch_up_as::<f32>(piece),
            DType::F64 => self.catch_up_as::<f64>(piece),
            DType::U8 => self.catch_up_as::<u8>(piece),
        }
    }

    fn catch_up_as<E: Element>(&mut self, piece: &Piece) -> Result<()> {
        let job = self.job;
        let (input, given) = (job.input, job.labels);
        let codebook = job.encoder.codebook();
        let (k, f) = (codebook.clusters(), codebook.dim());
        self.piece_sums.clear();
        self.piece_sums.resize(k * f, 0.0);
        self.piece_counts.clear();
        self.piece_counts.resize(k, 0);
        let first = job.offsets[piece.images.start];
        let step = (piece.rows.len() / PARTIAL_ROWS).max(1) * PARTIAL_ROWS;
        let mut buffer = Vec::new();
        let mut start = first;
        while start < piece.rows.start {
            let end = (start + step).min(piece.rows.start);
            let rows = input.rows::<E>(start..end, &mut buffer)?;
            let view = ArrayView2::from_shape((end - start, f), rows)
                .map_err(|e| VladError::DimensionMismatch(format!("batch rows: {e}")))?;
            let batch = Batch::single(view)?;
            let computed;
            let labels = match given {
                Some(l) => &l[start..end],
                None => {
                    computed = crate::backend::cpu::assign(codebook, &batch, &mut self.stages);
                    &computed[..]
                }
            };
            crate::backend::cpu::aggregate::add_image_rows(
                codebook,
                rows,
                labels,
                &mut self.piece_sums,
                &mut self.piece_counts,
            );
            input.release(start..end);
            start = end;
        }
        Ok(())
    }

    /// One piece's results: its rows of output, or nothing yet for a piece
    /// of a split image that is not its last.
    fn compute<E: Element>(&mut self, piece: &Piece, rows: &[E]) -> Result<Option<Rows>> {
        let f = self.codebook().dim();
        let view = ArrayView2::from_shape((piece.rows.len(), f), rows)
            .map_err(|e| VladError::DimensionMismatch(format!("batch rows: {e}")))?;
        let labels = self.job.labels.map(|l| &l[piece.rows.clone()]);
        let locate = |e: VladError| globalize(e, piece);
        if piece.part.is_none() {
            let offsets: Vec<usize> = self.job.offsets[piece.images.start..=piece.images.end]
                .iter()
                .map(|&o| o - piece.rows.start)
                .collect();
            let mut batch = Batch::ragged(view, &offsets).map_err(locate)?;
            if let Some(labels) = labels {
                batch = batch.with_labels(labels, self.codebook().clusters())?;
            }
            let (rows, labels) = self.whole_images(&batch)?;
            if let (Some(checked), Rows::F32(vlad), Some(labels)) =
                (&mut self.verify, &rows, &labels)
            {
                checked.add(self.job, &batch, vlad, labels)?;
            }
            return Ok(Some(rows));
        }
        let batch = Batch::single(view).map_err(locate)?;
        match self.job.task {
            Task::Assign => self.whole_images(&batch).map(|(rows, _)| Some(rows)),
            Task::Encode => self.split_piece(piece, &batch, labels),
        }
    }

    /// Whole images, exactly as the in-memory run computes them; for an
    /// encoding, with the labels it used (what `--verify` checks).
    fn whole_images<E: Element>(
        &mut self,
        batch: &Batch<'_, E>,
    ) -> Result<(Rows, Option<Vec<u32>>)> {
        let codebook = self.job.encoder.codebook();
        let norm = self.job.encoder.normalization();
        let stages = &mut self.stages;
        match (self.job.task, &self.engine) {
            (Task::Assign, Engine::Cpu) => Ok((
                labels_i64(crate::backend::cpu::assign(codebook, batch, stages)),
                None,
            )),
            (Task::Assign, Engine::Reference) => Ok((
                labels_i64(stages.time("assign", || {
                    crate::backend::reference::assign(codebook, batch)
                })),
                None,
            )),
            #[cfg(feature = "gpu")]
            (Task::Assign, Engine::Gpu(gpu)) => {
                Ok((labels_i64(gpu.assign(codebook, batch, stages)?), None))
            }
            (Task::Encode, engine) if self.job.weighted => {
                let backend = match engine {
                    Engine::Cpu => Backend::Cpu,
                    Engine::Reference => Backend::Reference,
                    #[cfg(feature = "gpu")]
                    Engine::Gpu(_) => Backend::Gpu,
                };
                let out = crate::backend::weighted::run_encode(
                    codebook,
                    self.job.encoder.assignment(),
                    norm,
                    backend,
                    batch,
                    stages,
                    |params, stages| match engine {
                        #[cfg(feature = "gpu")]
                        Engine::Gpu(gpu) => {
                            let (vlad, labels) =
                                gpu.encode_weighted(codebook, params, batch, norm, stages)?;
                            Ok(crate::encoder::BackendOutput { vlad, labels })
                        }
                        _ => {
                            // Only the GPU engine takes this route.
                            let _ = (params, stages);
                            Err(VladError::BackendUnavailable(
                                "no GPU session for this batch".to_string(),
                            ))
                        }
                    },
                )?;
                Ok((Rows::F32(into_vec(out.vlad)), Some(out.labels)))
            }
            (Task::Encode, Engine::Cpu) => {
                let (vlad, labels) = crate::backend::cpu::encode(codebook, batch, norm, stages);
                Ok((Rows::F32(into_vec(vlad)), Some(labels)))
            }
            (Task::Encode, Engine::Reference) => {
                let (vlad, labels) = stages.time("reference", || {
                    crate::backend::reference::encode(
                        codebook,
                        batch,
                        self.job.encoder.assignment(),
                        norm,
                    )
                });
                Ok((
                    Rows::F32(vlad.iter().map(|&x| x as f32).collect()),
                    Some(labels),
                ))
            }
            #[cfg(feature = "gpu")]
            (Task::Encode, Engine::Gpu(gpu)) => {
                let (vlad, labels) = gpu.encode(codebook, batch, norm, stages)?;
                Ok((Rows::F32(into_vec(vlad)), Some(labels)))
            }
        }
    }

    /// One piece of an image too large for a batch: add its raw sums, and
    /// after the last piece round, normalize and emit the image's row.
    fn split_piece<E: Element>(
        &mut self,
        piece: &Piece,
        batch: &Batch<'_, E>,
        given: Option<&[u32]>,
    ) -> Result<Option<Rows>> {
        let (k, f) = (self.codebook().clusters(), self.codebook().dim());
        let Some((index, count)) = piece.part else {
            return Err(VladError::InvalidArgument("not a piece (a bug)".into()));
        };
        if self.job.weighted {
            return self.weighted_piece(piece, batch, given);
        }
        if index == 0 {
            self.piece_sums.clear();
            self.piece_sums.resize(k * f, 0.0);
            self.piece_counts.clear();
            self.piece_counts.resize(k, 0);
        }
        let codebook = self.job.encoder.codebook();
        let norm = self.job.encoder.normalization();
        let stages = &mut self.stages;
        let (sums, counts) = (&mut self.piece_sums, &mut self.piece_counts);
        let last = index + 1 == count;
        let mut row = vec![0f32; k * f];
        match &self.engine {
            Engine::Cpu => {
                let computed;
                let labels = match given {
                    Some(l) => l,
                    None => {
                        computed = crate::backend::cpu::assign(codebook, batch, stages);
                        &computed[..]
                    }
                };
                stages.time("aggregate", || {
                    crate::backend::cpu::aggregate::add_image_rows(
                        codebook,
                        batch.rows(),
                        labels,
                        sums,
                        counts,
                    )
                });
                if last {
                    let mut narrow = vec![0f32; k];
                    crate::backend::cpu::aggregate::finish_image(
                        sums,
                        counts,
                        f,
                        &mut row,
                        &mut narrow,
                    );
                    stages.time("normalize", || {
                        crate::backend::cpu::normalize::normalize_row(&mut row, &narrow, k, f, norm)
                    });
                }
            }
            Engine::Reference => {
                stages.time("reference", || {
                    let computed;
                    let labels = match given {
                        Some(l) => l,
                        None => {
                            computed = crate::backend::reference::assign(codebook, batch);
                            &computed[..]
                        }
                    };
                    crate::backend::reference::aggregate_rows_into(
                        codebook,
                        batch.rows(),
                        labels,
                        sums,
                        counts,
                    );
                    if last {
                        let sums3 = Array3::from_shape_vec((1, k, f), sums.clone());
                        let mass = counts.iter().map(|&n| n as f64).collect();
                        let mass2 = Array2::from_shape_vec((1, k), mass);
                        if let (Ok(s), Ok(c)) = (sums3, mass2) {
                            let normalized = crate::backend::reference::normalize(&s, &c, norm);
                            for (y, &x) in row.iter_mut().zip(normalized.iter()) {
                                *y = x as f32;
                            }
                        }
                    }
                });
            }
            #[cfg(feature = "gpu")]
            Engine::Gpu(gpu) => {
                let (_, piece_sums, piece_counts) =
                    gpu.encode_piece(codebook, batch.rows(), f, given, stages)?;
                let started = Instant::now();
                for (s, &x) in sums.iter_mut().zip(&piece_sums) {
                    *s += x as f64;
                }
                for (s, &c) in counts.iter_mut().zip(&piece_counts) {
                    *s += c as u64;
                }
                if last {
                    // As the in-memory run finishes a split image.
                    let narrow: Vec<f32> = counts
                        .iter()
                        .map(|&c| c.min(u32::MAX as u64) as u32 as f32)
                        .collect();
                    for (y, &s) in row.iter_mut().zip(sums.iter()) {
                        *y = s as f32;
                    }
                    crate::backend::cpu::normalize::normalize_row(&mut row, &narrow, k, f, norm);
                }
                stages.add("combine", started.elapsed().as_secs_f64());
            }
        }
        Ok(last.then_some(Rows::F32(row)))
    }
}

impl Compute<'_> {
    /// One piece of a split image under soft assignment or `rn` (the CPU
    /// only: the other engines take such images whole).
    fn weighted_piece<E: Element>(
        &mut self,
        piece: &Piece,
        batch: &Batch<'_, E>,
        given: Option<&[u32]>,
    ) -> Result<Option<Rows>> {
        let job = self.job;
        let codebook = job.encoder.codebook();
        let norm = job.encoder.normalization();
        let Some((index, count)) = piece.part else {
            return Err(VladError::InvalidArgument("not a piece (a bug)".into()));
        };
        if !matches!(self.engine, Engine::Cpu) {
            return Err(VladError::InvalidArgument(
                "a soft/rn image split on a backend other than cpu (a bug)".into(),
            ));
        }
        let pieces = match &mut self.weighted {
            Some(pieces) if index > 0 => pieces,
            _ => self
                .weighted
                .insert(WeightedPieces::new(codebook, norm.residual_normalized())),
        };
        let stages = &mut self.stages;
        let computed;
        let labels: &[u32] = match (&job.soft, given) {
            (Some(_), _) => &[],
            (None, Some(l)) => l,
            (None, None) => {
                computed = crate::backend::cpu::assign(codebook, batch, stages);
                &computed[..]
            }
        };
        stages.time("aggregate", || {
            pieces.add(codebook, job.soft.as_ref(), batch.rows(), labels)
        });
        if index + 1 < count {
            return Ok(None);
        }
        let row = stages.time("normalize", || {
            pieces.finish(codebook, job.soft.is_some(), norm)
        });
        Ok(Some(Rows::F32(row)))
    }
}

/// `--verify` batch by batch: each batch of whole images checked against
/// the reference, the counts added up and the largest error kept, so the
/// result is what checking the whole output at once gives.
#[derive(Default)]
struct Checked {
    /// Labels equal to the exact argmin, and labels checked.
    same: u64,
    labels: u64,
    bad_labels: usize,
    violations: usize,
    max_abs_error: f64,
    rule: &'static str,
    seconds: f64,
}

impl Checked {
    fn add<E: Element>(
        &mut self,
        job: &Job<'_>,
        batch: &Batch<'_, E>,
        vlad: &[f32],
        labels: &[u32],
    ) -> Result<()> {
        let started = Instant::now();
        let encoder = job.encoder;
        let codebook = encoder.codebook();
        let norm = encoder.normalization();
        let output =
            ArrayView2::from_shape((batch.images(), codebook.clusters() * codebook.dim()), vlad)
                .map_err(|e| VladError::DimensionMismatch(format!("batch output: {e}")))?;
        let v = crate::verify::verify(codebook, batch, encoder.assignment(), norm, output, labels);
        // The agreement is `same / labels` of this batch: recover `same`.
        let n = batch.len() as u64;
        self.same += (v.label_agreement * n as f64).round() as u64;
        self.labels += n;
        self.bad_labels += v.bad_labels;
        self.violations += v.violations;
        self.max_abs_error = self.max_abs_error.max(v.max_abs_error);
        self.rule = v.rule;
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn finish(self) -> (crate::verify::Verification, f64) {
        let label_agreement = if self.labels == 0 {
            1.0
        } else {
            self.same as f64 / self.labels as f64
        };
        (
            crate::verify::Verification {
                label_agreement,
                bad_labels: self.bad_labels,
                max_abs_error: self.max_abs_error,
                violations: self.violations,
                rule: self.rule,
            },
            self.seconds,
        )
    }
}

/// Batches of whole images only, for `--verify`: greedily within `budget`,
/// an image over it alone.
fn whole_images_plan<E: Element>(job: &Job<'_>, budget: u64) -> Vec<Piece> {
    let codebook = job.encoder.codebook();
    let (k, f) = (codebook.clusters() as u64, codebook.dim() as u64);
    let row_bytes = f * std::mem::size_of::<E>() as u64 + 4;
    let image_bytes = k * f * 4 + k * 4;
    plan_greedy(&job.offsets, row_bytes, image_bytes, budget, u64::MAX)
}

fn labels_i64(labels: Vec<u32>) -> Rows {
    Rows::I64(labels.into_iter().map(i64::from).collect())
}

fn into_vec(a: Array2<f32>) -> Vec<f32> {
    if a.is_standard_layout() {
        let (v, _) = a.into_raw_vec_and_offset();
        v
    } else {
        a.iter().copied().collect()
    }
}

/// A batch's error in the whole input's terms: rows and images counted from
/// the start of the file, not of the batch.
fn globalize(e: VladError, piece: &Piece) -> VladError {
    match e {
        VladError::NonFinite {
            what,
            row,
            image,
            col,
            value,
        } => VladError::NonFinite {
            what,
            row: row + piece.rows.start,
            image: image.map(|i| {
                if piece.part.is_some() {
                    piece.images.start
                } else {
                    i + piece.images.start
                }
            }),
            col,
            value,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_memory_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_memory_size("16 MiB").unwrap(), 16 << 20);
        assert_eq!(parse_memory_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_memory_size("4096").unwrap(), 4096);
        assert_eq!(parse_memory_size("4096bytes").unwrap(), 4096);
        assert_eq!(parse_memory_size("1.5g").unwrap(), 3 << 29);
        for bad in ["", "MiB", "-1MiB", "0", "12 parsecs", "1e3"] {
            assert!(parse_memory_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn greedy_plan_covers_every_image_once_in_order() {
        // Images of 3, 0, 10, 0, 2 rows; 1 byte a row, 1 an image, budget 6.
        let offsets = [0, 3, 3, 13, 13, 15];
        let plan = plan_greedy(&offsets, 1, 1, 6, 4);
        assert_eq!(
            plan,
            vec![
                Piece {
                    images: 0..2,
                    rows: 0..3,
                    part: None
                },
                Piece {
                    images: 2..3,
                    rows: 3..7,
                    part: Some((0, 3))
                },
                Piece {
                    images: 2..3,
                    rows: 7..11,
                    part: Some((1, 3))
                },
                Piece {
                    images: 2..3,
                    rows: 11..13,
                    part: Some((2, 3))
                },
                Piece {
                    images: 3..5,
                    rows: 13..15,
                    part: None
                },
            ]
        );
    }

    #[test]
    fn no_images_no_batches() {
        assert!(plan_greedy(&[0], 4, 4, 100, 8).is_empty());
    }
}
