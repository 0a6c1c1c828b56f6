//! The GPU backend's stand-in in a build without the `gpu` feature: the
//! same names the rest of the crate uses, so no caller needs a `cfg`. No
//! session can be made ([`GpuBackend::new`] is
//! [`VladError::BackendUnavailable`]), the adapter list is empty, and
//! `auto` uses the CPU saying why.

use crate::backend::adapters::{AdapterKind, Adapters};
use crate::backend::compute::{AddPiece, Assign, Compute, Cuts, EncodeInto, Model};
use crate::backend::options::GpuOptions;
use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::report::{Ceilings, StageTimes};
use crate::whitening::Whitening;

/// Why nothing here runs.
pub const UNAVAILABLE: &str = "built without the gpu feature";

fn unavailable<T>() -> Result<T> {
    Err(VladError::BackendUnavailable(UNAVAILABLE.to_string()))
}

/// The adapter listing: none.
pub mod adapters {
    use super::*;

    /// No adapter; `gpu` is refused and `auto` uses the CPU, both saying why.
    pub fn list(_options: &GpuOptions) -> Adapters {
        Adapters::without_gpu(UNAVAILABLE)
    }
}

/// A GPU session that is never made.
pub struct GpuBackend {
    _never: std::convert::Infallible,
}

impl GpuBackend {
    /// Always [`VladError::BackendUnavailable`].
    pub fn new(_options: &GpuOptions) -> Result<Self> {
        unavailable()
    }

    /// Unreachable: no session exists.
    pub fn adapter_name(&self) -> String {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn adapter_kind(&self) -> AdapterKind {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn driver(&self) -> String {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn tensor_core_note(&self) -> Option<String> {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn ceilings(&self, _upload_bytes: u64, _readback_bytes: u64) -> Result<Ceilings> {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn is_lost(&self) -> bool {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn simulate_loss_on_next_run(&self) {
        match self._never {}
    }

    /// Unreachable: no session exists.
    pub fn cluster_sums<E: Element>(
        &self,
        _codebook: &Codebook,
        _rows: &[E],
        _dim: usize,
        _stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Vec<f32>, Vec<u32>)> {
        match self._never {}
    }
}

impl Compute for GpuBackend {
    fn encode_into<E: Element>(&self, _call: EncodeInto<'_, E>) -> Result<Vec<u32>> {
        match self._never {}
    }

    fn assign<E: Element>(&self, _call: Assign<'_, E>) -> Result<Vec<u32>> {
        match self._never {}
    }

    fn cuts(&self, _model: &Model<'_>, _offsets: &[usize], _dtype: DType) -> Result<Cuts> {
        match self._never {}
    }

    fn add_piece<E: Element>(&self, _call: AddPiece<'_, E>) -> Result<Vec<u32>> {
        match self._never {}
    }

    fn whiten(&self, _whitening: &Whitening, _rows: &[f32], _out: &mut [f32]) -> Result<()> {
        match self._never {}
    }
}

pub use crate::backend::slot::GpuSlot;
