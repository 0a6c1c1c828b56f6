//! The backend a user asks for (SPEC §7): `auto`, `gpu`, `cpu` or
//! `reference`. What it resolves to at run time is
//! [`crate::backend::select`]'s business.

use std::fmt;
use std::str::FromStr;

use crate::error::VladError;

/// A compute backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// The GPU on a hardware adapter (discrete, integrated or virtual) that
    /// works, else the CPU; never a software adapter (llvmpipe, lavapipe).
    /// The report's `fallback_reason` says why the CPU ran.
    #[default]
    Auto,
    /// wgpu compute shaders on the adapter `VLAD_ADAPTER` names, else the
    /// best there is — a software adapter too; an error when there is none.
    Gpu,
    /// The fast multi-threaded CPU path.
    Cpu,
    /// Straightforward f64 loops: the oracle, never fast.
    Reference,
}

impl Backend {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
            Backend::Reference => "reference",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = VladError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "gpu" => Ok(Backend::Gpu),
            "cpu" => Ok(Backend::Cpu),
            "reference" | "ref" => Ok(Backend::Reference),
            other => Err(VladError::InvalidArgument(format!(
                "unknown backend {other:?}: expected auto, gpu, cpu or reference"
            ))),
        }
    }
}
