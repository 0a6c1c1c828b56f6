//! Options shared by several subcommands, and how they become an [`Encoder`].

use clap::ValueEnum;
use vlad::GpuOptions;
use vlad::{Backend, Codebook, Encoder, EncoderBuilder, Normalization, VladError};

/// `--backend`: which implementation runs (SPEC §7).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The GPU on a hardware adapter, else the CPU (saying why on stderr);
    /// never a software adapter (llvmpipe, lavapipe).
    Auto,
    /// wgpu compute shaders, on a software adapter too; exit status 3 when
    /// no adapter is available.
    Gpu,
    /// The fast multi-threaded CPU path.
    Cpu,
    /// Plain f64 loops: the oracle, never fast.
    #[value(alias = "ref")]
    Reference,
}

impl From<BackendArg> for Backend {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Gpu => Backend::Gpu,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Reference => Backend::Reference,
        }
    }
}

/// `--norm`: parsed by clap so a bad list is a usage error (exit 2).
pub fn parse_norm(s: &str) -> Result<Normalization, String> {
    s.parse::<Normalization>().map_err(|e| e.to_string())
}

/// The GPU options the environment sets (SPEC §9): `VLAD_ADAPTER`,
/// `WGPU_BACKEND`, `VLAD_GPU_MAX_BINDING_BYTES`, `VLAD_GPU_TENSOR_CORES`.
/// The command line is the edge where they are read; the library takes them
/// as options.
pub fn gpu_options() -> Result<GpuOptions, VladError> {
    GpuOptions::from_vars(|name| std::env::var(name).ok())
}

/// An encoder for `codebook` on `backend` with the environment's GPU
/// options.
pub fn encoder(
    codebook: Codebook,
    backend: Backend,
    normalization: Normalization,
) -> Result<EncoderBuilder, VladError> {
    Ok(Encoder::builder(codebook)
        .backend(backend)
        .normalization(normalization)
        .gpu_options(gpu_options()?))
}
