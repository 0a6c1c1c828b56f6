//! Reading and writing `.npy` files (SPEC §2 inputs, §8 outputs).
//!
//! Every reader first parses the header and checks the file's length
//! against it, so a truncated or padded file is refused before anything is
//! allocated from a size the file merely claims. Every error names the file
//! (and the index, where there is one).
//!
//! Outputs go through [`OutputFile`]: a temporary file in the target folder,
//! renamed into place only once fully written (SPEC §6), so a failed run
//! never leaves a partial file nor touches an existing one.

pub(crate) mod disk_space;
pub mod mapped;
pub mod model_file;
pub mod npy_stream;

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Ix2};
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement, WriteNpyError, WriteNpyExt};

use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::element::DType;

/// The element types this crate reads from `.npy` files.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NpyDtype {
    /// `float32` (`<f4` or `>f4`).
    F32,
    /// `float64` (`<f8` or `>f8`).
    F64,
    /// `uint8` (`|u1`).
    U8,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
}

impl NpyDtype {
    /// The dtype of a numpy type descriptor string, if it is one we read.
    /// Byte order `<` (little) and `>` (big) are both read; `=` and `|`
    /// (native / not applicable) only where the reader accepts them.
    pub fn from_descr(descr: &str) -> Option<Self> {
        Some(match descr {
            "<f4" | ">f4" => NpyDtype::F32,
            "<f8" | ">f8" => NpyDtype::F64,
            "|u1" | "u1" | "B" => NpyDtype::U8,
            "<i4" | ">i4" => NpyDtype::I32,
            "<i8" | ">i8" => NpyDtype::I64,
            "<u4" | ">u4" => NpyDtype::U32,
            "<u8" | ">u8" => NpyDtype::U64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::U8 => 1,
            NpyDtype::F32 | NpyDtype::I32 | NpyDtype::U32 => 4,
            NpyDtype::F64 | NpyDtype::I64 | NpyDtype::U64 => 8,
        }
    }
}

impl fmt::Display for NpyDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NpyDtype::F32 => "float32",
            NpyDtype::F64 => "float64",
            NpyDtype::U8 => "uint8",
            NpyDtype::I32 => "int32",
            NpyDtype::I64 => "int64",
            NpyDtype::U32 => "uint32",
            NpyDtype::U64 => "uint64",
        })
    }
}

/// What a `.npy` header says, checked against the file's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyInfo {
    /// The numpy type descriptor as written (`"<f4"`, `"|u1"`…), or the
    /// Python literal of a non-string descriptor (a structured dtype).
    pub descr: String,
    /// The dtype, when it is one this crate reads.
    pub dtype: Option<NpyDtype>,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Whether the data is stored in Fortran (column-major) order.
    pub fortran_order: bool,
}

impl NpyInfo {
    /// The shape as numpy prints it: `(3, 4)`, `(5,)`, `()`.
    pub fn shape_string(&self) -> String {
        shape_string(&self.shape)
    }
}

/// Descriptors as read: `(T, L, F)` or `(N, F)`, in their file's dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum DescriptorArray {
    /// `float32` descriptors.
    F32(ArrayD<f32>),
    /// `float64` descriptors (computed in f32, SPEC §2).
    F64(ArrayD<f64>),
    /// `uint8` descriptors (SIFT-style).
    U8(ArrayD<u8>),
}

impl DescriptorArray {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            DescriptorArray::F32(a) => a.shape(),
            DescriptorArray::F64(a) => a.shape(),
            DescriptorArray::U8(a) => a.shape(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            DescriptorArray::F32(_) => DType::F32,
            DescriptorArray::F64(_) => DType::F64,
            DescriptorArray::U8(_) => DType::U8,
        }
    }
}

/// Read and check the header of a `.npy` file, without reading its data.
///
/// Errors: [`VladError::Io`] when the file cannot be opened or read,
/// [`VladError::Npy`] when the header is malformed or the file's length does
/// not match it (truncated or with trailing bytes).
pub fn inspect(path: impl AsRef<Path>) -> Result<NpyInfo> {
    let path = path.as_ref();
    let (info, _) = open_checked(path)?;
    Ok(info)
}

/// Read descriptors: `(T, L, F)` or `(N, F)`, dtype f32, f64 or u8, C or
/// Fortran order. Another dtype or number of dimensions is
/// [`VladError::Unsupported`].
pub fn read_descriptors(path: impl AsRef<Path>) -> Result<DescriptorArray> {
    let path = path.as_ref();
    let (info, reader) = open_checked(path)?;
    if !matches!(info.shape.len(), 2 | 3) {
        return Err(unsupported(
            path,
            format!(
                "descriptors must be (T, L, F) or (N, F), got shape {}",
                info.shape_string()
            ),
        ));
    }
    match info.dtype {
        Some(NpyDtype::F32) => Ok(DescriptorArray::F32(read_data(path, reader)?)),
        Some(NpyDtype::F64) => Ok(DescriptorArray::F64(read_data(path, reader)?)),
        Some(NpyDtype::U8) => Ok(DescriptorArray::U8(read_data(path, reader)?)),
        _ => Err(wrong_dtype(
            path,
            &info,
            "descriptors",
            "float32, float64 or uint8",
        )),
    }
}

/// Read centroids `(K, F)`, dtype f32 or f64, into a validated [`Codebook`].
///
/// The codebook's own checks (`K = 0`, `F = 0`, non-finite values) keep their
/// [`VladError`] variants; they name the row but not the file.
pub fn read_centroids(path: impl AsRef<Path>) -> Result<Codebook> {
    let path = path.as_ref();
    let (info, reader) = open_checked(path)?;
    if info.shape.len() != 2 {
        return Err(unsupported(
            path,
            format!(
                "centroids must be (K, F), got shape {}",
                info.shape_string()
            ),
        ));
    }
    match info.dtype {
        Some(NpyDtype::F32) => {
            let a: ArrayD<f32> = read_data(path, reader)?;
            Codebook::from_owned(into_2d(path, a)?)
        }
        Some(NpyDtype::F64) => {
            let a: ArrayD<f64> = read_data(path, reader)?;
            Codebook::from_f64(into_2d(path, a)?.view())
        }
        _ => Err(wrong_dtype(path, &info, "centroids", "float32 or float64")),
    }
}

/// Read CSR offsets `(T+1,)` of any integer dtype SPEC §2 lists (i32, i64,
/// u32, u64). A negative value is [`VladError::InvalidOffsets`] naming its
/// index; whether they form valid CSR for a given `N` is checked by
/// [`Batch::ragged`](crate::Batch::ragged).
pub fn read_offsets(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let path = path.as_ref();
    read_integers(path, "offsets", |index, value| {
        usize::try_from(value).map_err(|_| {
            VladError::InvalidOffsets(format!(
                "{}: offsets[{index}] = {value} is {}",
                path.display(),
                if value < 0 {
                    "negative"
                } else {
                    "too large for this machine"
                }
            ))
        })
    })
}

/// Read labels `(N,)` of any integer dtype SPEC §2 lists; each must be in
/// `[0, clusters)`, else [`VladError::LabelOutOfRange`] with its index.
pub fn read_labels(path: impl AsRef<Path>, clusters: usize) -> Result<Vec<u32>> {
    let path = path.as_ref();
    read_integers(path, "labels", |index, label| match u32::try_from(label) {
        Ok(l) if (l as usize) < clusters => Ok(l),
        _ => Err(VladError::LabelOutOfRange {
            index,
            label,
            clusters,
        }),
    })
}

/// Write `array` to `path` atomically: see [`OutputFile`].
pub fn write_npy_atomic<T: WriteNpyExt + ?Sized>(path: impl AsRef<Path>, array: &T) -> Result<()> {
    OutputFile::create(path)?.write_npy(array)
}

/// An output `.npy` that appears at its path only once completely written.
///
/// [`OutputFile::create`] makes a temporary file in the target folder — so
/// an unwritable destination is found before any work is done — and
/// [`OutputFile::write_npy`] fills it, flushes it to disk and renames it over
/// the destination. Dropped without writing, or on any error, the temporary
/// file is removed and the destination is left as it was.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    temp: tempfile::NamedTempFile,
}

impl OutputFile {
    /// Reserve a temporary file next to `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io_error = |source: io::Error| VladError::Io {
            action: "cannot write",
            path: path.clone(),
            source: source.into(),
        };
        let Some(name) = path.file_name() else {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path does not name a file",
            )));
        };
        if path.is_dir() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory",
            )));
        }
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // A temporary file is private (0600) by default; the result should
        // get the permissions any new file gets (0666 less the umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        if !folder.is_dir() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the folder {} does not exist", folder.display()),
            )));
        }
        // tempfile's error names the random temporary path; name the folder.
        let temp = builder.tempfile_in(folder).map_err(|e| {
            io_error(io::Error::new(
                e.kind(),
                format!("cannot create a file in {}: {}", folder.display(), e.kind()),
            ))
        })?;
        Ok(OutputFile { path, temp })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The destination and the temporary file, for writers that fill it
    /// piece by piece ([`crate::io::npy_stream::NpyStream`]).
    pub(crate) fn into_parts(self) -> (PathBuf, tempfile::NamedTempFile) {
        (self.path, self.temp)
    }

    /// Write `array`, sync it and rename it into place.
    pub fn write_npy<T: WriteNpyExt + ?Sized>(mut self, array: &T) -> Result<()> {
        let path = self.path.clone();
        let io_error = |source: io::Error| VladError::Io {
            action: "cannot write",
            path: path.clone(),
            source: source.into(),
        };
        let mut writer = BufWriter::new(self.temp.as_file_mut());
        array.write_npy(&mut writer).map_err(|e| match e {
            WriteNpyError::Io(source) => io_error(source),
            other => io_error(io::Error::other(other.to_string())),
        })?;
        writer.flush().map_err(io_error)?;
        drop(writer);
        self.temp.as_file().sync_all().map_err(io_error)?;
        self.temp
            .persist(&self.path)
            .map_err(|e| io_error(e.error))?;
        Ok(())
    }
}

/// `(3, 4)`, `(5,)`, `()` — numpy's way of printing a shape.
pub(crate) fn shape_string(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn unsupported(path: &Path, message: String) -> VladError {
    VladError::Unsupported {
        path: path.to_path_buf(),
        message,
    }
}

fn npy_error(path: &Path, message: impl Into<String>) -> VladError {
    VladError::Npy {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn wrong_dtype(path: &Path, info: &NpyInfo, what: &str, expected: &str) -> VladError {
    let found = match info.dtype {
        Some(d) => format!("{d} ('{}')", info.descr),
        None => format!("'{}'", info.descr),
    };
    unsupported(
        path,
        format!("{what} must be {expected}, got dtype {found}"),
    )
}

/// Open `path`, parse its header, check the data length the header implies
/// against the file's length, and leave the reader at the start of the file
/// for [`read_data`].
fn open_checked(path: &Path) -> Result<(NpyInfo, BufReader<File>)> {
    let io_error = |source: io::Error| VladError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source: source.into(),
    };
    let file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let mut reader = BufReader::new(file);
    let header = Header::from_reader(&mut reader).map_err(|e| match e {
        ReadHeaderError::Io(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
            npy_error(path, "truncated header (the file ends inside it)")
        }
        ReadHeaderError::Io(source) => io_error(source),
        ReadHeaderError::Parse(ParseHeaderError::MagicString) => {
            npy_error(path, "not a .npy file (it does not start with \\x93NUMPY)")
        }
        ReadHeaderError::Parse(parse) => npy_error(path, format!("malformed header: {parse}")),
    })?;
    let header_len = reader.stream_position().map_err(io_error)?;
    let (descr, dtype) = match header.type_descriptor.as_string() {
        Some(s) => (s.clone(), NpyDtype::from_descr(s)),
        None => (header.type_descriptor.to_string(), None),
    };
    let info = NpyInfo {
        descr,
        dtype,
        shape: header.shape,
        fortran_order: header.layout.is_fortran(),
    };
    if let Some(dtype) = dtype {
        let data_len = file_len.saturating_sub(header_len);
        let expected = info
            .shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        match expected {
            None => {
                return Err(npy_error(
                    path,
                    format!("shape {} is too large", info.shape_string()),
                ));
            }
            Some(want) if want > data_len => {
                return Err(npy_error(
                    path,
                    format!(
                        "truncated: shape {} of {dtype} needs {want} bytes of data, the file has {data_len}",
                        info.shape_string()
                    ),
                ));
            }
            Some(want) if want < data_len => {
                return Err(npy_error(
                    path,
                    format!(
                        "{} unexpected bytes after the data of shape {} of {dtype}",
                        data_len - want,
                        info.shape_string()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    reader.seek(SeekFrom::Start(0)).map_err(io_error)?;
    Ok((info, reader))
}

/// Read the whole array from a reader [`open_checked`] vetted.
fn read_data<T: ReadableElement, R: Read>(path: &Path, reader: R) -> Result<ArrayD<T>> {
    ArrayD::<T>::read_npy(reader).map_err(|e| match e {
        ReadNpyError::Io(source) => VladError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source: source.into(),
        },
        other => npy_error(path, other.to_string()),
    })
}

fn into_2d<T>(path: &Path, a: ArrayD<T>) -> Result<ndarray::Array2<T>> {
    a.into_dimensionality::<Ix2>()
        .map_err(|e| npy_error(path, format!("expected 2 dimensions: {e}")))
}

/// Read a 1-D integer array, converting each value (as i128, which holds
/// every i64 and u64) with `convert(index, value)`.
fn read_integers<U>(
    path: &Path,
    what: &str,
    convert: impl Fn(usize, i128) -> Result<U>,
) -> Result<Vec<U>> {
    let (info, reader) = open_checked(path)?;
    if info.shape.len() != 1 {
        return Err(unsupported(
            path,
            format!(
                "{what} must be one-dimensional, got shape {}",
                info.shape_string()
            ),
        ));
    }
    fn convert_all<T: Copy + Into<i128>, U>(
        values: ArrayD<T>,
        convert: impl Fn(usize, i128) -> Result<U>,
    ) -> Result<Vec<U>> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| convert(i, v.into()))
            .collect()
    }
    match info.dtype {
        Some(NpyDtype::I32) => convert_all(read_data::<i32, _>(path, reader)?, convert),
        Some(NpyDtype::I64) => convert_all(read_data::<i64, _>(path, reader)?, convert),
        Some(NpyDtype::U32) => convert_all(read_data::<u32, _>(path, reader)?, convert),
        Some(NpyDtype::U64) => convert_all(read_data::<u64, _>(path, reader)?, convert),
        _ => Err(wrong_dtype(
            path,
            &info,
            what,
            "int32, int64, uint32 or uint64",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, Array3, ShapeBuilder, array};

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn write<T: WriteNpyExt + ?Sized>(dir: &Path, name: &str, a: &T) -> PathBuf {
        let path = dir.join(name);
        a.write_npy(File::create(&path).unwrap()).unwrap();
        path
    }

    #[test]
    fn descr_strings_map_to_dtypes() {
        assert_eq!(NpyDtype::from_descr("<f4"), Some(NpyDtype::F32));
        assert_eq!(NpyDtype::from_descr(">f8"), Some(NpyDtype::F64));
        assert_eq!(NpyDtype::from_descr("|u1"), Some(NpyDtype::U8));
        assert_eq!(NpyDtype::from_descr("<u8"), Some(NpyDtype::U64));
        assert_eq!(NpyDtype::from_descr("<f2"), None);
        assert_eq!(NpyDtype::from_descr("|b1"), None);
        assert_eq!(NpyDtype::from_descr("<i2"), None);
    }

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(shape_string(&[]), "()");
        assert_eq!(shape_string(&[5]), "(5,)");
        assert_eq!(shape_string(&[2, 3, 4]), "(2, 3, 4)");
    }

    #[test]
    fn reads_each_descriptor_dtype_and_both_orders() {
        let dir = temp_dir();
        let c = Array3::from_shape_fn((2, 3, 4), |(t, l, f)| (t * 100 + l * 10 + f) as f32);
        let fortran = Array3::from_shape_vec((2, 3, 4).f(), {
            // The same logical array stored column-major.
            let mut v = Vec::new();
            for f in 0..4 {
                for l in 0..3 {
                    for t in 0..2 {
                        v.push((t * 100 + l * 10 + f) as f32);
                    }
                }
            }
            v
        })
        .unwrap();
        let pc = write(dir.path(), "c.npy", &c);
        let pf = write(dir.path(), "f.npy", &fortran);
        assert!(inspect(&pf).unwrap().fortran_order);
        assert!(!inspect(&pc).unwrap().fortran_order);
        let (DescriptorArray::F32(a), DescriptorArray::F32(b)) = (
            read_descriptors(&pc).unwrap(),
            read_descriptors(&pf).unwrap(),
        ) else {
            panic!("expected f32 arrays");
        };
        assert_eq!(a, b);
        assert_eq!(a, c.into_dyn());

        let p64 = write(dir.path(), "d.npy", &array![[1.5f64, 2.0]]);
        assert_eq!(read_descriptors(&p64).unwrap().dtype(), DType::F64);
        let pu8 = write(dir.path(), "u.npy", &array![[1u8, 2], [3, 4]]);
        let d = read_descriptors(&pu8).unwrap();
        assert_eq!(d.dtype(), DType::U8);
        assert_eq!(d.shape(), &[2, 2]);
    }

    #[test]
    fn refuses_wrong_dtype_and_ndim_naming_the_file() {
        let dir = temp_dir();
        let p = write(dir.path(), "ints.npy", &array![[1i32, 2]]);
        let err = read_descriptors(&p).unwrap_err();
        assert!(matches!(err, VladError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("ints.npy"), "{err}");
        assert!(err.to_string().contains("int32"), "{err}");

        let p = write(dir.path(), "one.npy", &Array1::<f32>::zeros(3));
        let err = read_descriptors(&p).unwrap_err();
        assert!(err.to_string().contains("(3,)"), "{err}");

        let p = write(dir.path(), "c3.npy", &Array3::<f32>::zeros((1, 1, 1)));
        assert!(matches!(
            read_centroids(&p).unwrap_err(),
            VladError::Unsupported { .. }
        ));
        let p = write(dir.path(), "cu8.npy", &Array2::<u8>::zeros((2, 2)));
        assert!(matches!(
            read_centroids(&p).unwrap_err(),
            VladError::Unsupported { .. }
        ));
        let p = write(dir.path(), "o2.npy", &Array2::<i64>::zeros((2, 2)));
        assert!(matches!(
            read_offsets(&p).unwrap_err(),
            VladError::Unsupported { .. }
        ));
        let p = write(dir.path(), "of.npy", &array![0.0f32, 1.0]);
        assert!(matches!(
            read_offsets(&p).unwrap_err(),
            VladError::Unsupported { .. }
        ));
    }

    #[test]
    fn centroids_from_f32_and_f64() {
        let dir = temp_dir();
        let p = write(dir.path(), "c.npy", &array![[1.0f64, 2.0], [3.0, 4.0]]);
        let cb = read_centroids(&p).unwrap();
        assert_eq!(cb.as_slice(), &[1.0, 2.0, 3.0, 4.0]);
        let ft = Array2::from_shape_vec((2, 2).f(), vec![1.0f32, 3.0, 2.0, 4.0]).unwrap();
        let p = write(dir.path(), "cf.npy", &ft);
        assert_eq!(
            read_centroids(&p).unwrap().as_slice(),
            &[1.0, 2.0, 3.0, 4.0]
        );
        let p = write(dir.path(), "nan.npy", &array![[1.0f32, f32::NAN]]);
        assert!(matches!(
            read_centroids(&p).unwrap_err(),
            VladError::NonFinite { row: 0, col: 1, .. }
        ));
        let p = write(dir.path(), "k0.npy", &Array2::<f32>::zeros((0, 3)));
        assert!(matches!(
            read_centroids(&p).unwrap_err(),
            VladError::Empty(_)
        ));
    }

    #[test]
    fn offsets_of_every_integer_dtype() {
        let dir = temp_dir();
        let want = vec![0usize, 2, 5];
        let paths = [
            write(dir.path(), "i32.npy", &array![0i32, 2, 5]),
            write(dir.path(), "i64.npy", &array![0i64, 2, 5]),
            write(dir.path(), "u32.npy", &array![0u32, 2, 5]),
            write(dir.path(), "u64.npy", &array![0u64, 2, 5]),
        ];
        for p in paths {
            assert_eq!(read_offsets(&p).unwrap(), want, "{}", p.display());
        }
        let p = write(dir.path(), "neg.npy", &array![0i64, 2, -1]);
        let err = read_offsets(&p).unwrap_err();
        assert!(matches!(err, VladError::InvalidOffsets(_)));
        assert!(err.to_string().contains("offsets[2] = -1"), "{err}");
        assert!(err.to_string().contains("neg.npy"), "{err}");
    }

    #[test]
    fn labels_in_and_out_of_range() {
        let dir = temp_dir();
        let p = write(dir.path(), "l.npy", &array![0u64, 3, 1]);
        assert_eq!(read_labels(&p, 4).unwrap(), vec![0, 3, 1]);
        assert!(matches!(
            read_labels(&p, 3).unwrap_err(),
            VladError::LabelOutOfRange {
                index: 1,
                label: 3,
                clusters: 3
            }
        ));
        let p = write(dir.path(), "n.npy", &array![0i32, -2]);
        assert!(matches!(
            read_labels(&p, 3).unwrap_err(),
            VladError::LabelOutOfRange {
                index: 1,
                label: -2,
                ..
            }
        ));
        let p = write(dir.path(), "big.npy", &array![u64::MAX]);
        assert!(matches!(
            read_labels(&p, 3).unwrap_err(),
            VladError::LabelOutOfRange { index: 0, .. }
        ));
    }

    #[test]
    fn truncated_padded_garbage_and_missing_files() {
        let dir = temp_dir();
        let good = write(dir.path(), "g.npy", &Array2::<f32>::ones((4, 4)));
        let bytes = std::fs::read(&good).unwrap();

        let p = dir.path().join("short.npy");
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_descriptors(&p).unwrap_err();
        assert!(matches!(err, VladError::Npy { .. }), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");

        let p = dir.path().join("header.npy");
        std::fs::write(&p, &bytes[..20]).unwrap();
        assert!(matches!(
            read_descriptors(&p).unwrap_err(),
            VladError::Npy { .. }
        ));

        let p = dir.path().join("long.npy");
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 8]);
        std::fs::write(&p, &long).unwrap();
        assert!(matches!(
            read_descriptors(&p).unwrap_err(),
            VladError::Npy { .. }
        ));

        let p = dir.path().join("garbage.npy");
        std::fs::write(&p, b"this is not an array at all, not even close").unwrap();
        let err = read_descriptors(&p).unwrap_err();
        assert!(matches!(err, VladError::Npy { .. }), "{err}");
        assert!(err.to_string().contains("garbage.npy"), "{err}");

        let p = dir.path().join("missing.npy");
        assert!(matches!(
            read_descriptors(&p).unwrap_err(),
            VladError::Io { .. }
        ));
        assert!(matches!(
            read_descriptors(dir.path()).unwrap_err(),
            VladError::Io { .. }
        ));
    }

    #[test]
    fn huge_claimed_shape_is_refused_before_allocating() {
        // A valid header that claims far more data than the file holds.
        let dir = temp_dir();
        let header = Header {
            type_descriptor: "'<f4'".parse().unwrap(),
            layout: ndarray_npy::npy::header::Layout::Standard,
            shape: vec![1 << 40, 1 << 20],
        };
        let p = dir.path().join("huge.npy");
        std::fs::write(&p, header.to_bytes().unwrap()).unwrap();
        assert!(matches!(
            read_descriptors(&p).unwrap_err(),
            VladError::Npy { .. }
        ));
    }

    #[test]
    fn atomic_write_replaces_only_when_complete() {
        let dir = temp_dir();
        let out = dir.path().join("out.npy");
        std::fs::write(&out, b"sentinel").unwrap();
        // An output reserved but never written leaves the old file alone.
        drop(OutputFile::create(&out).unwrap());
        assert_eq!(std::fs::read(&out).unwrap(), b"sentinel");
        write_npy_atomic(&out, &array![[1.0f32, 2.0]]).unwrap();
        let DescriptorArray::F32(back) = read_descriptors(&out).unwrap() else {
            panic!("expected f32");
        };
        assert_eq!(back, array![[1.0f32, 2.0]].into_dyn());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.npy")]);

        let err = write_npy_atomic(dir.path().join("no/such/dir/x.npy"), &array![1i64]);
        assert!(matches!(err, Err(VladError::Io { .. })));
        assert!(matches!(
            OutputFile::create(dir.path()),
            Err(VladError::Io { .. })
        ));
    }
}
