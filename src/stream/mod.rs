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
//! **The library's API in batches, with the same bits as in memory.** Each
//! batch of whole images goes through [`Encoder::encode_batch_into`] (or
//! [`Encoder::assign_batch`]), exactly as a caller holding those images
//! would encode them; an image larger than a batch goes through
//! [`Encoder::split_image`], piece by piece, its raw (pre-normalization)
//! sums combined in a fixed order and normalized once
//! ([`crate::backend::combine`]). Where a batch or a piece may begin is the
//! backend's rule ([`Cuts`]), so the result is the in-memory one:
//!
//! * `cpu`: pieces of whole multiples of its aggregation blocks (the
//!   blocked f64 partials and their in-order sum are the in-memory ones);
//! * `reference`: the f64 sums continue row by row, so a piece may end
//!   anywhere;
//! * `gpu`: the batches *are* the in-memory run's chunks (its planner run on
//!   the whole file's offsets) grouped whole, and a split image's pieces
//!   are the planner's pieces.
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

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};

use crate::backend::{Backend, Cuts, Span};
use crate::encoder::{Encoder, ImagePieces};
use crate::error::{Result, VladError};
use crate::io::OutputFile;
use crate::io::mapped::MappedNpy;
use crate::io::npy_stream::NpyStream;
use crate::model::batch::{Batch, check_offsets};
use crate::model::element::{DType, Element};
use crate::model::report::{RunReport, StageTimes};

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

struct Job<'a> {
    encoder: &'a Encoder,
    input: &'a MappedNpy,
    offsets: Vec<usize>,
    labels: Option<&'a [u32]>,
    task: Task,
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
        // Soft parameters that do not fit the codebook fail before anything
        // runs, as in memory.
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

/// One batch: whole images, or one piece of a split image.
type Piece = Span;

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

/// The batches of `job`, cut where the encoder's backend lets a pass
/// begin and end ([`Cuts`]), so that they give the in-memory bits.
fn plan<E: Element>(job: &Job<'_>, cuts: &Cuts, budget: u64) -> Vec<Piece> {
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
    match cuts {
        Cuts::Aligned(align) => {
            let align = (*align as u64).max(1);
            let piece_rows = (free_rows / align).max(1) * align;
            plan_greedy(&job.offsets, row_bytes, image_bytes, budget, piece_rows)
        }
        Cuts::Whole => plan_greedy(&job.offsets, row_bytes, image_bytes, budget, u64::MAX),
        Cuts::Planned(spans) => {
            // The backend's own spans: pieces as they are, whole images
            // grouped while the batch stays within the budget.
            let cost =
                |images: usize, rows: usize| images as u64 * image_bytes + rows as u64 * row_bytes;
            let mut plan: Vec<Piece> = Vec::new();
            for span in spans {
                if span.part.is_none()
                    && let Some(last) = plan.last_mut()
                    && last.part.is_none()
                    && cost(
                        span.images.end - last.images.start,
                        span.rows.end - last.rows.start,
                    ) <= budget
                {
                    last.images.end = span.images.end;
                    last.rows.end = span.rows.end;
                    continue;
                }
                plan.push(span.clone());
            }
            plan
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
    let budget = batch_budget(options.memory_limit);
    // What the encoder would run on, and where it lets a batch be cut.
    let (cuts, selected) = job.encoder.cuts(&job.offsets, E::DTYPE)?;
    let plan = if options.verify && job.task == Task::Encode {
        whole_images_plan::<E>(job, budget)
    } else {
        plan::<E>(job, &cuts, budget)
    };
    // Under `auto`, a GPU failure half-way moves the rest of the stream to
    // the CPU (SPEC §7's fallback, batch by batch); under `gpu` it is the
    // run's error.
    let falls_back = job.encoder.backend() == Backend::Auto || options.gpu_falls_back;
    let n = job.input.rows_total();
    let t = job.images();
    let stream = match job.task {
        Task::Encode => {
            // Overflow only: the output goes to disk batch by batch, so it
            // need not fit in memory (unlike `Encoder::check_output_fits`).
            let width = job.encoder.dims_out();
            let (_, bytes) = crate::encoder::output_size(t, 1, width)?;
            NpyStream::start(out, "<f4", &[t, width], bytes)?
        }
        Task::Assign => NpyStream::start(out, "<i8", &[n], n as u64 * 8)?,
    };
    let in_place = job.input.in_place::<E>();

    let cpu = job.encoder.to_builder().backend(Backend::Cpu).build();
    let mut state = Compute {
        job,
        cpu: &cpu,
        on_cpu: false,
        falls_back: falls_back && selected.backend == Backend::Gpu,
        fell_back: None,
        stages: StageTimes::new(),
        seconds: 0.0,
        image: None,
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
    let mut report = selected;
    if let Some(why) = state.fell_back.take() {
        report.backend = Backend::Cpu;
        report.fallback_reason = Some(why.clone());
        report.notes.push(why);
    }
    report.notes.dedup();
    report.seconds = state.seconds;
    report.stages = state.stages;
    Ok(Streamed {
        report,
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
    /// The job's encoder on the CPU: where the rest of the stream runs once
    /// the GPU failed (made up front; it opens nothing until used).
    cpu: &'j Encoder,
    /// Whether it does.
    on_cpu: bool,
    /// Whether a GPU failure moves the rest of the stream to the CPU.
    falls_back: bool,
    /// Why it did, once it has.
    fell_back: Option<String>,
    stages: StageTimes,
    seconds: f64,
    /// The split image in progress, piece by piece.
    image: Option<ImagePieces<'j>>,
    /// With `--verify`: the checks so far.
    verify: Option<Checked>,
}

fn compute_all<'j, E: Element>(
    state: &mut Compute<'j>,
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
            state.encoder().simulate_gpu_device_loss();
        }
        let mut result = state.compute(piece, rows);
        if let Err(error) = &result
            && state.falls_back
            && !state.on_cpu
            && crate::backend::select::fallback_reason(error).is_some()
        {
            let why = format!(
                "the gpu failed on batch {} of {} ({error}): that batch and the {} after it \
                 ran on cpu",
                expected + 1,
                plan.len(),
                plan.len() - expected - 1
            );
            state.move_to_cpu(why);
            result = state
                .catch_up::<E>(piece)
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

impl<'j> Compute<'j> {
    /// The encoder that runs the next batch.
    fn encoder(&self) -> &'j Encoder {
        if self.on_cpu {
            self.cpu
        } else {
            self.job.encoder
        }
    }

    /// The rest of the stream runs on the CPU, and the report says `why`.
    fn move_to_cpu(&mut self, why: String) {
        self.on_cpu = true;
        self.image = None;
        self.fell_back = Some(why);
    }

    /// Before a piece of a split image is redone on the CPU: the image's
    /// earlier pieces, summed on the GPU, are summed again on the CPU from
    /// the map (in pieces the CPU may cut, each read and released in
    /// turn), so that the whole image is the CPU's.
    fn catch_up<E: Element>(&mut self, piece: &Piece) -> Result<()> {
        let Some((index, _)) = piece.part else {
            return Ok(());
        };
        if index == 0 || self.job.task != Task::Encode {
            return Ok(());
        }
        let job = self.job;
        let f = job.encoder.codebook().dim();
        let step = match self.cpu.cuts(&job.offsets, E::DTYPE)?.0 {
            Cuts::Aligned(align) => (piece.rows.len() / align).max(1) * align,
            _ => piece.rows.len(),
        };
        let mut image = self.cpu.split_image()?;
        let mut buffer = Vec::new();
        let mut start = job.offsets[piece.images.start];
        while start < piece.rows.start {
            let end = (start + step).min(piece.rows.start);
            let rows = job.input.rows::<E>(start..end, &mut buffer)?;
            let view = ArrayView2::from_shape((end - start, f), rows)
                .map_err(|e| VladError::DimensionMismatch(format!("batch rows: {e}")))?;
            image.add(view, job.labels.map(|l| &l[start..end]))?;
            job.input.release(start..end);
            start = end;
        }
        self.image = Some(image);
        Ok(())
    }

    /// Add what a call ran to the stream's stages; a call that `auto` moved
    /// to the CPU moves the rest of the stream there too.
    fn ran(&mut self, report: &RunReport) {
        for (stage, seconds) in report.stages.iter() {
            self.stages.add(stage, seconds);
        }
        if self.falls_back
            && !self.on_cpu
            && report.backend == Backend::Cpu
            && let Some(why) = &report.fallback_reason
        {
            self.move_to_cpu(why.clone());
        }
    }

    /// One piece's results: its rows of output, or nothing yet for a piece
    /// of a split image that is not its last.
    fn compute<E: Element>(&mut self, piece: &Piece, rows: &[E]) -> Result<Option<Rows>> {
        let codebook = self.job.encoder.codebook();
        let (k, f) = (codebook.clusters(), codebook.dim());
        let view = ArrayView2::from_shape((piece.rows.len(), f), rows)
            .map_err(|e| VladError::DimensionMismatch(format!("batch rows: {e}")))?;
        let labels = self.job.labels.map(|l| &l[piece.rows.clone()]);
        let locate = |e: VladError| globalize(e, piece);
        let Some((index, count)) = piece.part.filter(|_| self.job.task == Task::Encode) else {
            // Whole images (or, to assign, any rows): the public entry
            // points, exactly as a caller holding these images would call
            // them.
            let offsets: Vec<usize> = match piece.part {
                Some(_) => vec![0, piece.rows.len()],
                None => self.job.offsets[piece.images.start..=piece.images.end]
                    .iter()
                    .map(|&o| o - piece.rows.start)
                    .collect(),
            };
            let batch = Batch::ragged(view, &offsets).map_err(locate)?;
            let batch = match labels {
                Some(labels) => batch.with_labels(labels, k)?,
                None => batch,
            };
            return self.whole_images(&batch).map(Some);
        };
        // One piece of an image too large for a batch: its sums are added
        // to the image's, and its last piece finishes the image.
        Batch::single(view).map_err(locate)?;
        if index == 0 || self.image.is_none() {
            self.image = Some(self.encoder().split_image()?);
        }
        let Some(image) = self.image.as_mut() else {
            unreachable!("started just above")
        };
        image.add(view, labels)?;
        if index + 1 < count {
            return Ok(None);
        }
        let mut row = vec![0f32; self.job.encoder.dims_out()];
        let report = self.image.take().map(|image| image.finish(&mut row));
        if let Some(report) = report {
            self.ran(&report?);
        }
        Ok(Some(Rows::F32(row)))
    }

    /// Whole images through the encoder; for an encoding, with the labels
    /// it used (what `--verify` checks).
    fn whole_images<E: Element>(&mut self, batch: &Batch<'_, E>) -> Result<Rows> {
        let encoder = self.encoder();
        match self.job.task {
            Task::Assign => {
                let assigned = encoder.assign_batch(batch)?;
                self.ran(&assigned.report);
                Ok(labels_i64(assigned.labels))
            }
            Task::Encode if self.verify.is_some() => {
                let encoded = encoder.encode_batch(batch)?;
                self.ran(&encoded.report);
                let vlad = into_vec(encoded.vlad);
                if let Some(checked) = &mut self.verify {
                    checked.add(self.job, batch, &vlad, &encoded.labels)?;
                }
                Ok(Rows::F32(vlad))
            }
            Task::Encode => {
                let width = encoder.dims_out();
                let mut vlad = vec![0f32; batch.images() * width];
                let view =
                    ndarray::ArrayViewMut2::from_shape((batch.images(), width), &mut vlad)
                        .map_err(|e| VladError::DimensionMismatch(format!("batch output: {e}")))?;
                let report = encoder.encode_batch_into(batch, view)?;
                self.ran(&report);
                Ok(Rows::F32(vlad))
            }
        }
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
        let output = ArrayView2::from_shape((batch.images(), encoder.dims_out()), vlad)
            .map_err(|e| VladError::DimensionMismatch(format!("batch output: {e}")))?;
        let v = match encoder.whitening() {
            None => {
                crate::verify::verify(codebook, batch, encoder.assignment(), norm, output, labels)
            }
            Some(w) => crate::verify::verify_whitened(
                codebook,
                batch,
                encoder.assignment(),
                norm,
                w,
                output,
                labels,
            ),
        };
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
