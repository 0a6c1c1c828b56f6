//! A `.npy` output written front to back: the header first (the shape is
//! known before any row is computed), then the rows as they are produced,
//! into the temporary file an [`OutputFile`] reserved in the target folder.
//! Only [`NpyStream::commit`] — after the last row, a flush and a sync —
//! renames it into place; dropped or failed before that, the temporary file
//! is removed and the destination is left as it was (SPEC §6, §11).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use crate::error::{Result, VladError};
use crate::io::OutputFile;

/// An output `.npy` being appended to.
#[derive(Debug)]
pub struct NpyStream {
    path: PathBuf,
    writer: BufWriter<tempfile::NamedTempFile>,
    expected: u64,
    written: u64,
}

impl NpyStream {
    /// Start `out` as a C-order array of numpy type `descr` (`"<f4"`,
    /// `"<i8"`…) and `shape`, whose data is `data_bytes` long.
    pub fn start(out: OutputFile, descr: &str, shape: &[usize], data_bytes: u64) -> Result<Self> {
        let (path, temp) = out.into_parts();
        let mut writer = BufWriter::with_capacity(1 << 20, temp);
        let header = header_bytes(descr, shape);
        writer
            .write_all(&header)
            .map_err(|e| write_error(&path, e))?;
        Ok(NpyStream {
            path,
            writer,
            expected: data_bytes,
            written: 0,
        })
    }

    /// Append `bytes` of row data.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len() as u64;
        if self.written > self.expected {
            return Err(write_error(
                &self.path,
                io::Error::other("more data than the header announced (a bug)"),
            ));
        }
        self.writer
            .write_all(bytes)
            .map_err(|e| write_error(&self.path, e))
    }

    /// Flush, sync and rename into place; fails (leaving nothing) unless
    /// exactly the announced number of bytes was written.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        if self.written != self.expected {
            return Err(write_error(
                &path,
                io::Error::other(format!(
                    "{} data bytes written of {} announced (a bug)",
                    self.written, self.expected
                )),
            ));
        }
        let temp = self
            .writer
            .into_inner()
            .map_err(|e| write_error(&path, e.into_error()))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| write_error(&path, e))?;
        temp.persist(&path)
            .map_err(|e| write_error(&path, e.error))?;
        Ok(())
    }
}

fn write_error(path: &std::path::Path, source: io::Error) -> VladError {
    VladError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// A version 1.0 `.npy` header (version 2.0 when the dictionary does not
/// fit 65,535 bytes), padded with spaces so the data starts on a 64-byte
/// boundary, as numpy writes it.
fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape = crate::io::shape_string(shape);
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let (version, prefix) = if dict.len() + 1 + 10 <= 65535 {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let unpadded = prefix + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let len = total - prefix;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY");
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use ndarray_npy::ReadNpyExt;

    #[test]
    fn header_then_rows_reads_back_with_ndarray_npy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let out = OutputFile::create(&path).unwrap();
        let mut s = NpyStream::start(out, "<f4", &[2, 3], 24).unwrap();
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        s.append(bytemuck::cast_slice(&values[..4])).unwrap();
        assert!(!path.exists(), "nothing at the destination before commit");
        s.append(bytemuck::cast_slice(&values[4..])).unwrap();
        s.commit().unwrap();
        let a = Array2::<f32>::read_npy(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(a.as_slice().unwrap(), &values);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0);
    }

    #[test]
    fn a_short_stream_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let out = OutputFile::create(&path).unwrap();
        let mut s = NpyStream::start(out, "<i8", &[3], 24).unwrap();
        s.append(&[0u8; 16]).unwrap();
        assert!(s.commit().is_err());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
