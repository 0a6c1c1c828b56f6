//! Where k-means reads its training rows: a slice in memory, or a
//! memory-mapped file read window by window (SPEC §11).
//!
//! Every full-data pass (k-means++, each Lloyd iteration, the final
//! inertia) walks the windows in order. Windows are whole multiples of
//! [`WINDOW_ALIGN`] rows, and every reduction in k-means is cut into fixed
//! blocks that divide it (the 4096-row partials of the cluster sums, the
//! 1024-row blocks of seeding and of the inertia) and combines their
//! results in block order, carried from one window to the next. A pass over
//! many windows therefore adds the same numbers in the same order as a pass
//! over one: the result is bitwise the in-memory one, whatever the window
//! size.

use std::ops::Range;

use crate::backend::cpu::aggregate::PARTIAL_ROWS;
use crate::error::Result;
use crate::io::mapped::MappedNpy;
use crate::model::element::Element;

/// Rows per window are a multiple of this (the last window excepted).
pub(crate) const WINDOW_ALIGN: usize = PARTIAL_ROWS;

#[derive(Copy, Clone)]
enum Rows<'a, E: Element> {
    /// Row-major `len × dim`, all of it in memory.
    Memory(&'a [E]),
    /// The file's rows, `window` at a time.
    Mapped { input: &'a MappedNpy, window: usize },
}

/// The training rows and how a pass reads them.
#[derive(Copy, Clone)]
pub(crate) struct Source<'a, E: Element> {
    rows: Rows<'a, E>,
    len: usize,
    dim: usize,
}

impl<'a, E: Element> Source<'a, E> {
    /// `rows` (row-major, `dim` wide), one window.
    pub fn memory(rows: &'a [E], dim: usize) -> Self {
        Source {
            rows: Rows::Memory(rows),
            len: rows.len() / dim.max(1),
            dim,
        }
    }

    /// Every row of `input`, `window` rows at a time (rounded down to a
    /// multiple of [`WINDOW_ALIGN`], at least one such block).
    pub fn mapped(input: &'a MappedNpy, window: usize) -> Self {
        let window = (window / WINDOW_ALIGN).max(1) * WINDOW_ALIGN;
        Source {
            rows: Rows::Mapped { input, window },
            len: input.rows_total(),
            dim: input.dim(),
        }
    }

    /// The same rows read in one window (the GPU engine takes them whole).
    pub fn as_one_window(self) -> Self {
        match self.rows {
            Rows::Memory(_) => self,
            Rows::Mapped { input, .. } => Source {
                rows: Rows::Mapped {
                    input,
                    window: self.len.max(1),
                },
                ..self
            },
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Row width `F`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether one window holds every row (a pass is one call).
    pub fn single_window(&self) -> bool {
        match self.rows {
            Rows::Memory(_) => true,
            Rows::Mapped { window, .. } => window >= self.len,
        }
    }

    /// The windows of a pass, in order.
    pub fn windows(&self) -> impl Iterator<Item = Range<usize>> + use<E> {
        let (len, step) = match self.rows {
            Rows::Memory(_) => (self.len, self.len.max(1)),
            Rows::Mapped { window, .. } => (self.len, window),
        };
        (0..len)
            .step_by(step)
            .map(move |start| start..(start + step).min(len))
    }

    /// Rows `range`, row-major: borrowed where they lie, or converted into
    /// `buffer`.
    pub fn read<'s>(&'s self, range: Range<usize>, buffer: &'s mut Vec<E>) -> Result<&'s [E]> {
        match self.rows {
            Rows::Memory(rows) => Ok(&rows[range.start * self.dim..range.end * self.dim]),
            Rows::Mapped { input, .. } => input.rows::<E>(range, buffer),
        }
    }

    /// Done with rows `range` for this pass: a mapped file's pages leave
    /// the process (they stay in the page cache).
    pub fn release(&self, range: Range<usize>) {
        if let Rows::Mapped { input, window } = self.rows {
            // One window is the whole input read in place: keep it.
            if window < self.len {
                input.release(range);
            }
        }
    }

    /// A copy of row `i`.
    pub fn row(&self, i: usize) -> Result<Vec<E>> {
        let mut buffer = Vec::new();
        let row = self.read(i..i + 1, &mut buffer)?.to_vec();
        Ok(row)
    }

    /// Call `f` on every window in order (range, rows), releasing each
    /// after; stops at the first error.
    pub fn for_each_window(
        &self,
        mut f: impl FnMut(Range<usize>, &[E]) -> Result<()>,
    ) -> Result<()> {
        let mut buffer = Vec::new();
        for range in self.windows() {
            let rows = self.read(range.clone(), &mut buffer)?;
            let done = f(range.clone(), rows);
            self.release(range);
            done?;
        }
        Ok(())
    }
}
