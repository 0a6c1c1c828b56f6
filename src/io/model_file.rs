//! Models on disk (SPEC §15): everything an encoder needs in one `.npz`
//! file — `.npy` arrays, readable by numpy's `np.load`, plus one
//! `metadata` entry holding UTF-8 JSON with the format version — written
//! atomically (a temporary file in the same folder, then renamed).
//!
//! | entry | dtype, shape | holds |
//! | --- | --- | --- |
//! | `metadata` | uint8 `(n,)` | JSON: `format`, `version`, `normalization`, `assignment`, `vocabularies`, `whitening` (for people; the arrays below are what is read) |
//! | `centroids`, `centroids_1`, … | f32 `(K, F)` | the codebook(s), Multivoc's in order |
//! | `soft_weights`, `soft_bias` | f32 `(K, F)`, `(K,)` | NetVLAD's `W`, `b` (soft assignment) |
//! | `soft_alpha` | f32 `(1,)` | NetVLAD's temperature (soft assignment from α) |
//! | `whitening_mean` | f32 `(D,)` | `μ` |
//! | `whitening_components` | f32 `(D′, D)` | unit eigenvectors, rows |
//! | `whitening_eigenvalues` | f64 `(D′,)` | `λ` |
//! | `whitening_params` | f64 `(2,)` | the power `p` and `ε` |
//!
//! A file may hold a whitening alone (`vlad pca --out`): it has no
//! `centroids`. The normalizations are text in the JSON (their syntax,
//! `ssr,l2`), parsed as the command line parses them.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array1, Array2};
use ndarray_npy::{NpzReader, NpzWriter};
use serde_json::{Value, json};

use crate::error::{Result, VladError};
use crate::model::assignment::Assignment;
use crate::model::codebook::Codebook;
use crate::model::normalization::Normalization;
use crate::whitening::Whitening;

/// The format this build writes; a file of a newer version is refused.
pub const FORMAT_VERSION: u64 = 1;
/// The `format` field of the metadata.
pub const FORMAT_NAME: &str = "vlad-model";

/// What a model file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelParts {
    /// The codebook(s); empty for a file holding a whitening alone.
    pub codebooks: Vec<Codebook>,
    /// Hard or soft assignment.
    pub assignment: Assignment,
    /// The normalization of each vocabulary's encoding.
    pub normalization: Normalization,
    /// The whitening applied after it, if any.
    pub whitening: Option<Arc<Whitening>>,
}

/// Write `parts` to `path` atomically: the file is complete or absent.
pub fn write(path: &Path, parts: &ModelParts) -> Result<()> {
    let bytes = to_bytes(parts)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |e: std::io::Error| VladError::Io {
            action,
            path,
            source: Arc::new(e),
        }
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&folder)
        .map_err(io("cannot write a temporary file for"))?;
    tmp.write_all(&bytes).map_err(io("cannot write"))?;
    tmp.as_file().sync_all().map_err(io("cannot write"))?;
    tmp.persist(path).map_err(|e| io("cannot write")(e.error))?;
    Ok(())
}

/// Read the model file at `path`.
pub fn read(path: &Path) -> Result<ModelParts> {
    let bytes = std::fs::read(path).map_err(|e| VladError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source: Arc::new(e),
    })?;
    from_bytes_at(&bytes, path)
}

/// The file's bytes (what pickling carries).
pub fn to_bytes(parts: &ModelParts) -> Result<Vec<u8>> {
    let bad = |e: ndarray_npy::WriteNpzError| {
        VladError::InvalidArgument(format!("cannot write the model: {e}"))
    };
    let mut npz = NpzWriter::new(std::io::Cursor::new(Vec::new()));
    let meta = metadata(parts).to_string();
    npz.add_array("metadata", &Array1::from(meta.into_bytes()))
        .map_err(bad)?;
    for (i, codebook) in parts.codebooks.iter().enumerate() {
        npz.add_array(centroids_name(i), &codebook.centroids())
            .map_err(bad)?;
    }
    match &parts.assignment {
        Assignment::Hard => {}
        Assignment::Soft { weights, bias } => {
            npz.add_array("soft_weights", weights).map_err(bad)?;
            npz.add_array("soft_bias", bias).map_err(bad)?;
        }
        Assignment::SoftAlpha(alpha) => {
            npz.add_array("soft_alpha", &Array1::from(vec![*alpha]))
                .map_err(bad)?;
        }
    }
    if let Some(w) = &parts.whitening {
        npz.add_array("whitening_mean", w.mean()).map_err(bad)?;
        npz.add_array("whitening_components", w.components())
            .map_err(bad)?;
        npz.add_array("whitening_eigenvalues", w.eigenvalues())
            .map_err(bad)?;
        npz.add_array("whitening_params", &Array1::from(vec![w.power(), w.eps()]))
            .map_err(bad)?;
    }
    Ok(npz.finish().map_err(bad)?.into_inner())
}

/// The model in `bytes` (a file's contents).
pub fn from_bytes(bytes: &[u8]) -> Result<ModelParts> {
    from_bytes_at(bytes, Path::new("<bytes>"))
}

fn centroids_name(i: usize) -> String {
    if i == 0 {
        "centroids".to_string()
    } else {
        format!("centroids_{i}")
    }
}

fn metadata(parts: &ModelParts) -> Value {
    let assignment = match &parts.assignment {
        Assignment::Hard => json!({"kind": "hard"}),
        Assignment::Soft { .. } => json!({"kind": "soft"}),
        Assignment::SoftAlpha(alpha) => json!({"kind": "soft_alpha", "alpha": alpha}),
    };
    let whitening = parts.whitening.as_ref().map(|w| {
        json!({
            "dims_in": w.dims_in(),
            "dims_out": w.dims_out(),
            "power": w.power(),
            "eps": w.eps(),
            "post": w.post().to_string(),
        })
    });
    json!({
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "normalization": parts.normalization.to_string(),
        "assignment": assignment,
        "vocabularies": parts.codebooks.len(),
        "whitening": whitening,
    })
}

/// Reads entries of one file, naming the file and the entry in errors.
struct Entries<'p, R: Read + Seek> {
    npz: NpzReader<R>,
    names: Vec<String>,
    path: &'p Path,
}

impl<R: Read + Seek> Entries<'_, R> {
    fn error(&self, message: String) -> VladError {
        VladError::Model {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn array<T: ndarray_npy::ReadableElement, D: ndarray::Dimension>(
        &mut self,
        name: &str,
    ) -> Result<ndarray::Array<T, D>> {
        if !self.has(name) {
            return Err(self.error(format!("entry {name:?} is missing")));
        }
        let read = self.npz.by_name(name);
        read.map_err(|e| self.error(format!("entry {name:?} is malformed: {e}")))
    }
}

fn from_bytes_at(bytes: &[u8], path: &Path) -> Result<ModelParts> {
    let model_error = |message: String| VladError::Model {
        path: path.to_path_buf(),
        message,
    };
    let mut npz = NpzReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| model_error(format!("not an .npz (zip) file: {e}")))?;
    let names = npz
        .names()
        .map_err(|e| model_error(format!("cannot list its entries: {e}")))?;
    let mut entries = Entries { npz, names, path };
    let meta: Array1<u8> = entries.array("metadata")?;
    let meta: Value = serde_json::from_slice(meta.as_slice().unwrap_or_default())
        .map_err(|e| model_error(format!("entry \"metadata\" is not JSON: {e}")))?;
    if meta.get("format").and_then(Value::as_str) != Some(FORMAT_NAME) {
        return Err(model_error(format!(
            "entry \"metadata\" has no \"format\": \"{FORMAT_NAME}\" (not a vlad model file)"
        )));
    }
    let version = meta
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| model_error("entry \"metadata\" has no integer \"version\"".to_string()))?;
    if version > FORMAT_VERSION {
        return Err(model_error(format!(
            "format version {version} is newer than this vlad reads ({FORMAT_VERSION}): \
             upgrade vlad to read it"
        )));
    }
    let text = |key: &str| -> Result<String> {
        meta.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| model_error(format!("entry \"metadata\" has no string {key:?}")))
    };
    let normalization: Normalization = text("normalization")?
        .parse()
        .map_err(|e| model_error(format!("metadata \"normalization\": {e}")))?;
    let vocabularies = meta
        .get("vocabularies")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            model_error("entry \"metadata\" has no integer \"vocabularies\"".to_string())
        })?;
    let mut codebooks = Vec::new();
    for i in 0..vocabularies as usize {
        let name = centroids_name(i);
        let c: Array2<f32> = entries.array(&name)?;
        codebooks.push(
            Codebook::from_owned(c).map_err(|e| model_error(format!("entry {name:?}: {e}")))?,
        );
    }
    let kind = meta
        .get("assignment")
        .and_then(|a| a.get("kind"))
        .and_then(Value::as_str)
        .ok_or_else(|| model_error("metadata \"assignment\" has no \"kind\"".to_string()))?;
    let assignment = match kind {
        "hard" => Assignment::Hard,
        "soft" => {
            let w: Array2<f32> = entries.array("soft_weights")?;
            let b: Array1<f32> = entries.array("soft_bias")?;
            Assignment::soft(w.view(), b.view())
                .map_err(|e| model_error(format!("entries \"soft_weights\", \"soft_bias\": {e}")))?
        }
        "soft_alpha" => {
            let a: Array1<f32> = entries.array("soft_alpha")?;
            let alpha = match a.as_slice() {
                Some([alpha]) => *alpha,
                _ => {
                    return Err(model_error(format!(
                        "entry \"soft_alpha\" holds {} values, not 1",
                        a.len()
                    )));
                }
            };
            Assignment::soft_alpha(alpha)
                .map_err(|e| model_error(format!("entry \"soft_alpha\": {e}")))?
        }
        other => {
            return Err(model_error(format!(
                "metadata assignment kind {other:?} is unknown"
            )));
        }
    };
    if let Some(first) = codebooks.first() {
        assignment.soft_params(first).map_err(|e| {
            model_error(format!("soft parameters against entry \"centroids\": {e}"))
        })?;
    }
    let whitening = match meta.get("whitening") {
        None | Some(Value::Null) => None,
        Some(w) => {
            let post: Normalization = w
                .get("post")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    model_error("metadata \"whitening\" has no string \"post\"".to_string())
                })?
                .parse()
                .map_err(|e| model_error(format!("metadata whitening \"post\": {e}")))?;
            let mean: Array1<f32> = entries.array("whitening_mean")?;
            let components: Array2<f32> = entries.array("whitening_components")?;
            let eigenvalues: Array1<f64> = entries.array("whitening_eigenvalues")?;
            let params: Array1<f64> = entries.array("whitening_params")?;
            let [power, eps] = match params.as_slice() {
                Some(&[p, e]) => [p, e],
                _ => {
                    return Err(model_error(format!(
                        "entry \"whitening_params\" holds {} values, not 2 (power, eps)",
                        params.len()
                    )));
                }
            };
            let w = Whitening::from_parts(
                mean.view(),
                components.view(),
                eigenvalues.view(),
                power,
                eps,
                post,
            )
            .map_err(|e| model_error(format!("whitening entries: {e}")))?;
            Some(Arc::new(w))
        }
    };
    Ok(ModelParts {
        codebooks,
        assignment,
        normalization,
        whitening,
    })
}
