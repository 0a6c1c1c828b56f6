//! Memory-mapped `.npy` descriptors (SPEC §11): rows are read in place from
//! the page cache where the file's layout allows it, or converted a batch
//! at a time where it does not, so no command needs the whole input in
//! memory.
//!
//! The file is checked exactly as [`crate::io::read_descriptors`] checks it
//! (header, dtype, shape, length against the header) before anything is
//! mapped, so a truncated or malformed file is refused before any output
//! exists.
//!
//! * f32, f64 and u8 stored little-endian in C order: [`MappedNpy::rows`]
//!   borrows the mapped bytes, no copy.
//! * Fortran order or big-endian: the requested rows are gathered into a
//!   caller-owned buffer, a batch at a time.
//!
//! Pages read through the map count towards the process's resident memory
//! until they are given back: [`MappedNpy::release`] drops them from this
//! process's page tables (the page cache keeps them), which is what keeps a
//! streaming run's peak resident memory bounded.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, UncheckedAdvice};
use ndarray_npy::npy::header::Header;

use crate::error::{Result, VladError};
use crate::io::{self, NpyDtype, NpyInfo};
use crate::model::element::{DType, Element};

/// A descriptor file `(T, L, F)` or `(N, F)` mapped read-only.
#[derive(Debug)]
pub struct MappedNpy {
    path: PathBuf,
    info: NpyInfo,
    dtype: NpyDtype,
    big_endian: bool,
    map: Mmap,
    /// Byte offset of the data in the file (the header's length).
    data: usize,
    /// `T` (or `N` for 2-D) and `L` (1 for 2-D): row `r` is image-major
    /// `(r / L, r % L)`, which is all Fortran order needs.
    outer: usize,
    inner: usize,
    dim: usize,
}

impl MappedNpy {
    /// Check and map the descriptors at `path`: `(T, L, F)` or `(N, F)`,
    /// float32, float64 or uint8, either order. The same errors as
    /// [`crate::io::read_descriptors`] for anything else.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Header, dtype and the file's length against the header.
        let info = io::inspect(path)?;
        let dtype = match info.dtype {
            Some(d @ (NpyDtype::F32 | NpyDtype::F64 | NpyDtype::U8)) => d,
            _ => {
                return Err(VladError::Unsupported {
                    path: path.to_path_buf(),
                    message: match info.dtype {
                        Some(d) => format!(
                            "descriptors must be float32, float64 or uint8, got dtype {d} ('{}')",
                            info.descr
                        ),
                        None => format!(
                            "descriptors must be float32, float64 or uint8, got dtype '{}'",
                            info.descr
                        ),
                    },
                });
            }
        };
        let (outer, inner, dim) = match info.shape[..] {
            [t, l, f] => (t, l, f),
            [n, f] => (n, 1, f),
            _ => {
                return Err(VladError::Unsupported {
                    path: path.to_path_buf(),
                    message: format!(
                        "descriptors must be (T, L, F) or (N, F), got shape {}",
                        info.shape_string()
                    ),
                });
            }
        };
        let io_error = |source| VladError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source: std::sync::Arc::new(source),
        };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the map is read-only and private to this process. As with
        // numpy's memmap, another process truncating the file while it is
        // mapped would make a read fault; nothing here writes through it.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        let mut rest: &[u8] = &map;
        Header::from_reader(&mut rest).map_err(|e| VladError::Npy {
            path: path.to_path_buf(),
            message: format!("malformed header: {e}"),
        })?;
        let data = map.len() - rest.len();
        let big_endian = info.descr.starts_with('>');
        Ok(MappedNpy {
            path: path.to_path_buf(),
            big_endian,
            dtype,
            info,
            map,
            data,
            outer,
            inner,
            dim,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the header says.
    pub fn info(&self) -> &NpyInfo {
        &self.info
    }

    /// The element type of the data.
    pub fn dtype(&self) -> DType {
        match self.dtype {
            NpyDtype::F64 => DType::F64,
            NpyDtype::U8 => DType::U8,
            _ => DType::F32,
        }
    }

    /// `(T, L)` for a 3-D file, `None` for `(N, F)`.
    pub fn fixed_images(&self) -> Option<(usize, usize)> {
        (self.info.shape.len() == 3).then_some((self.outer, self.inner))
    }

    /// Number of descriptor rows `N` (`T·L` for a 3-D file).
    pub fn rows_total(&self) -> usize {
        self.outer * self.inner
    }

    /// Descriptor width `F`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes per element in the file.
    pub fn element_size(&self) -> usize {
        self.dtype.size()
    }

    /// Whether [`MappedNpy::rows`] borrows the map for `E` (no conversion).
    pub fn in_place<E: Element>(&self) -> bool {
        E::DTYPE == self.dtype()
            && !self.info.fortran_order
            && (!self.big_endian || E::DTYPE == DType::U8)
            && cfg!(target_endian = "little")
            && (self.map.as_ptr() as usize + self.data).is_multiple_of(std::mem::align_of::<E>())
    }

    /// Rows `range` (row-major, `range.len() · F` values): borrowed from
    /// the map when the layout allows ([`MappedNpy::in_place`]), else
    /// converted into `buffer` (reused across calls).
    ///
    /// Errors: [`VladError::InvalidArgument`] when `E` is not the file's
    /// element type or `range` is out of bounds.
    pub fn rows<'s, E: Element>(
        &'s self,
        range: Range<usize>,
        buffer: &'s mut Vec<E>,
    ) -> Result<&'s [E]> {
        if E::DTYPE != self.dtype() {
            return Err(VladError::InvalidArgument(format!(
                "{}: asked for {} rows of a {} file",
                self.path.display(),
                E::DTYPE,
                self.dtype()
            )));
        }
        if range.start > range.end || range.end > self.rows_total() {
            return Err(VladError::InvalidArgument(format!(
                "{}: rows {range:?} of {}",
                self.path.display(),
                self.rows_total()
            )));
        }
        let size = std::mem::size_of::<E>();
        let f = self.dim;
        if self.in_place::<E>() {
            let bytes =
                &self.map[self.data + range.start * f * size..self.data + range.end * f * size];
            return bytemuck::try_cast_slice(bytes)
                .map_err(|e| VladError::InvalidArgument(format!("{}: {e}", self.path.display())));
        }
        buffer.clear();
        buffer.resize(range.len() * f, E::default());
        let data = &self.map[self.data..];
        let read = |index: usize| -> E {
            let mut raw = [0u8; 8];
            raw[..size].copy_from_slice(&data[index * size..(index + 1) * size]);
            if self.big_endian {
                raw[..size].reverse();
            }
            bytemuck::pod_read_unaligned(&raw[..size])
        };
        if self.info.fortran_order {
            // Element (t, l, j) of a Fortran (T, L, F) array is at
            // t + T·l + T·L·j; (N, F) is the same with L = 1. Column by
            // column, so the reads are sequential within each column.
            let (outer, inner) = (self.outer, self.inner);
            for j in 0..f {
                for (i, r) in range.clone().enumerate() {
                    let (t, l) = (r / inner, r % inner);
                    buffer[i * f + j] = read(t + outer * l + outer * inner * j);
                }
            }
        } else {
            for (i, value) in buffer.iter_mut().enumerate() {
                *value = read(range.start * f + i);
            }
        }
        Ok(&buffer[..])
    }

    /// Bring rows `range` into memory ahead of use (read-ahead, then one
    /// touch per page so the faults happen on the calling thread).
    pub fn prefetch(&self, range: Range<usize>) {
        let Some(bytes) = self.byte_range(&range) else {
            return;
        };
        let _ = self
            .map
            .advise_range(Advice::WillNeed, bytes.start, bytes.len());
        let mut sum = 0u8;
        for page in bytes.step_by(4096) {
            sum = sum.wrapping_add(self.map[page]);
        }
        std::hint::black_box(sum);
    }

    /// Drop the pages of rows `range` from this process (the page cache
    /// keeps them): they stop counting towards resident memory. For a file
    /// that is not read in place (its rows are scattered), every page is
    /// dropped.
    pub fn release(&self, range: Range<usize>) {
        let bytes = if self.info.fortran_order {
            Some(0..self.map.len())
        } else {
            self.byte_range(&range)
        };
        let Some(bytes) = bytes else {
            return;
        };
        // SAFETY: the map is read-only and file-backed: after DONTNEED a
        // read faults the same bytes back in from the file, so no data
        // seen through the map ever changes.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, bytes.start, bytes.len())
        };
    }

    /// The bytes of rows `range` in a C-order file.
    fn byte_range(&self, range: &Range<usize>) -> Option<Range<usize>> {
        if range.is_empty() || range.end > self.rows_total() {
            return None;
        }
        let row = self.dim * self.dtype.size();
        Some(self.data + range.start * row..self.data + range.end * row)
    }
}
