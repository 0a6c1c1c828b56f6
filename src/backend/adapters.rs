//! GPU adapters as the library describes them, and the rule that picks one
//! (SPEC §7). This file needs no wgpu: the rule is a pure function of the
//! adapter list and the adapter asked for (`VLAD_ADAPTER`, read at the
//! edge into [`GpuOptions::adapter`](crate::backend::options::GpuOptions)),
//! tested on made-up lists; the listing itself comes from `gpu::adapters`
//! ([`crate::backend::select::adapters`]).
//!
//! - `VLAD_ADAPTER` (an index, or a case-insensitive substring of the name)
//!   picks one adapter; no match is [`VladError::BackendUnavailable`].
//! - Otherwise the best kind wins: discrete, integrated, virtual, other,
//!   then software; ties go to the lowest index.
//! - `gpu` runs on whatever was picked, software included; `auto` runs on
//!   it only when it is hardware (discrete, integrated or virtual GPU), and
//!   otherwise uses the `cpu` backend with a reason.

use std::fmt;

use crate::error::{Result, VladError};

use crate::backend::options::ADAPTER_VAR as ADAPTER_ENV;

/// What kind of device an adapter is (wgpu's `DeviceType`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdapterKind {
    /// A discrete GPU with its own memory.
    Discrete,
    /// A GPU sharing memory with the CPU.
    Integrated,
    /// A virtual or hosted GPU.
    Virtual,
    /// A software rasterizer running on the CPU (llvmpipe, lavapipe, WARP,
    /// SwiftShader): its timings are not GPU speed.
    Software,
    /// Unknown.
    Other,
}

impl AdapterKind {
    /// The name used in `--json` (`adapter_kind`) and `vlad adapters`.
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::Discrete => "discrete",
            AdapterKind::Integrated => "integrated",
            AdapterKind::Virtual => "virtual",
            AdapterKind::Software => "software",
            AdapterKind::Other => "other",
        }
    }

    /// Whether `auto` may run on it: a discrete, integrated or virtual GPU.
    pub fn is_hardware(self) -> bool {
        matches!(
            self,
            AdapterKind::Discrete | AdapterKind::Integrated | AdapterKind::Virtual
        )
    }

    /// Preference order when nothing is asked for (lower is better; among
    /// equals, any API before OpenGL, then the lowest index).
    fn rank(self) -> u8 {
        match self {
            AdapterKind::Discrete => 0,
            AdapterKind::Integrated => 1,
            AdapterKind::Virtual => 2,
            AdapterKind::Other => 3,
            AdapterKind::Software => 4,
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One adapter as `vlad adapters` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterInfo {
    /// Position in the list (what `VLAD_ADAPTER=<index>` names).
    pub index: usize,
    /// The driver's name for it, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Device type.
    pub kind: AdapterKind,
    /// Graphics API wgpu reaches it through ("Vulkan", "Metal", "Gl"…).
    pub api: String,
    /// Driver name and version information.
    pub driver: String,
    /// Subgroup operations (used by the assignment and scan shaders).
    pub subgroups: bool,
    /// Timestamp queries (per-stage GPU times).
    pub timestamps: bool,
    /// 16-bit floats in shaders.
    pub shader_f16: bool,
    /// wgpu's experimental cooperative-matrix feature.
    pub cooperative_matrix: bool,
    /// Largest storage binding in bytes (the smaller of the binding and
    /// buffer limits).
    pub max_binding_bytes: u64,
}

impl AdapterInfo {
    /// Whether it is a software rasterizer.
    pub fn is_software(&self) -> bool {
        self.kind == AdapterKind::Software
    }

    /// A short description for messages: `llvmpipe (…) (Vulkan, software)`.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.api, self.kind)
    }
}

/// Which adapter a backend would take, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterPick {
    /// The adapter's index, or `None` when the backend would not use one
    /// (`auto` on the CPU).
    pub index: Option<usize>,
    /// Why, in words.
    pub reason: String,
}

/// Every adapter and what `gpu` and `auto` would take.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Adapters {
    /// Every adapter wgpu reports, in its order.
    pub adapters: Vec<AdapterInfo>,
    /// What `--backend gpu` would run on; an error (no adapter, or a
    /// `VLAD_ADAPTER` that matches none) when it would be refused.
    pub gpu: std::result::Result<AdapterPick, String>,
    /// What `--backend auto` would run on (`index: None`: the CPU); an
    /// error when `VLAD_ADAPTER` matches no adapter (a typo is not hidden
    /// by a quiet fallback).
    pub auto: std::result::Result<AdapterPick, String>,
}

impl Adapters {
    /// Apply the rule (module docs) to `adapters` with `VLAD_ADAPTER` =
    /// `wanted`.
    pub fn choose(adapters: Vec<AdapterInfo>, wanted: Option<&str>) -> Self {
        let gpu = pick_for_gpu(&adapters, wanted);
        let auto = match &gpu {
            Ok(pick) => {
                let chosen = pick.index.and_then(|i| adapters.get(i));
                match chosen {
                    Some(a) if a.kind.is_hardware() => pick.clone(),
                    Some(a) => AdapterPick {
                        index: None,
                        reason: format!(
                            "{}: using cpu; --backend gpu runs the shaders on it",
                            if wanted.is_some() {
                                format!("{ADAPTER_ENV} picks a software adapter ({})", a.name)
                            } else {
                                format!("only a software adapter ({})", a.name)
                            }
                        ),
                    },
                    None => AdapterPick {
                        index: None,
                        reason: "no GPU adapter: using cpu".to_string(),
                    },
                }
            }
            Err(why) if wanted.is_some() => return Self::refused(adapters, why.clone()),
            Err(why) => AdapterPick {
                index: None,
                reason: format!("{why}: using cpu"),
            },
        };
        let auto = Ok(auto);
        Adapters {
            adapters,
            gpu,
            auto,
        }
    }

    fn refused(adapters: Vec<AdapterInfo>, why: String) -> Self {
        Adapters {
            adapters,
            gpu: Err(why.clone()),
            auto: Err(why),
        }
    }

    /// What `auto` does: `Ok(Some(adapter))` to run on it, `Ok(None)` with
    /// the reason to use the CPU, or the `VLAD_ADAPTER` error.
    pub fn auto_adapter(&self) -> Result<std::result::Result<&AdapterInfo, &str>> {
        match &self.auto {
            Ok(AdapterPick { index: Some(i), .. }) => match self.adapters.get(*i) {
                Some(a) => Ok(Ok(a)),
                None => Ok(Err("no GPU adapter: using cpu")),
            },
            Ok(pick) => Ok(Err(pick.reason.as_str())),
            Err(why) => Err(VladError::BackendUnavailable(why.clone())),
        }
    }

    /// The adapter `gpu` would run on, or why there is none
    /// ([`VladError::BackendUnavailable`]).
    pub fn gpu_adapter(&self) -> Result<&AdapterInfo> {
        match &self.gpu {
            Ok(AdapterPick { index: Some(i), .. }) => self
                .adapters
                .get(*i)
                .ok_or_else(|| VladError::BackendUnavailable("no GPU adapter".to_string())),
            Ok(pick) => Err(VladError::BackendUnavailable(pick.reason.clone())),
            Err(why) => Err(VladError::BackendUnavailable(why.clone())),
        }
    }
}

const NO_MATCH: &str = "matches no adapter";

/// Whether an unavailability reason is a `VLAD_ADAPTER` that matches no
/// adapter (an error under `auto` too, never a quiet fallback).
pub(crate) fn is_no_match(reason: &str) -> bool {
    reason.starts_with(ADAPTER_ENV) && reason.contains(NO_MATCH)
}

fn pick_for_gpu(
    adapters: &[AdapterInfo],
    wanted: Option<&str>,
) -> std::result::Result<AdapterPick, String> {
    let listing = || {
        if adapters.is_empty() {
            "no adapter is available".to_string()
        } else {
            let names: Vec<String> = adapters
                .iter()
                .map(|a| format!("{}: {}", a.index, a.name))
                .collect();
            format!("the adapters are {}", names.join(", "))
        }
    };
    if let Some(wanted) = wanted {
        let by_index = wanted
            .parse::<usize>()
            .ok()
            .and_then(|i| adapters.iter().find(|a| a.index == i));
        let needle = wanted.to_lowercase();
        let by_name = || {
            adapters
                .iter()
                .find(|a| a.name.to_lowercase().contains(&needle))
        };
        return match by_index.or_else(by_name) {
            Some(a) => Ok(AdapterPick {
                index: Some(a.index),
                reason: format!("{ADAPTER_ENV}={wanted} names it"),
            }),
            None => Err(format!(
                "{ADAPTER_ENV}={wanted} {NO_MATCH} ({}; `vlad adapters` lists them)",
                listing()
            )),
        };
    }
    match adapters
        .iter()
        .min_by_key(|a| (a.kind.rank(), a.api == "Gl", a.index))
    {
        Some(a) if a.kind.is_hardware() => Ok(AdapterPick {
            index: Some(a.index),
            reason: format!("the best adapter: a {} GPU", a.kind),
        }),
        Some(a) => Ok(AdapterPick {
            index: Some(a.index),
            reason: format!("no hardware adapter; the best there is: {}", a.kind),
        }),
        None => Err(
            "no GPU adapter found; install a Vulkan driver (e.g. `apt-get install \
             mesa-vulkan-drivers`), set WGPU_BACKEND=gl to try OpenGL, or use --backend cpu"
                .to_string(),
        ),
    }
}

impl Adapters {
    /// No adapter at all, for `why` (a build without the `gpu` feature):
    /// `gpu` is refused, `auto` uses the CPU.
    pub fn without_gpu(why: &str) -> Self {
        Adapters {
            adapters: Vec::new(),
            gpu: Err(why.to_string()),
            auto: Ok(AdapterPick {
                index: None,
                reason: format!("{why}: using cpu"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, name: &str, kind: AdapterKind) -> AdapterInfo {
        AdapterInfo {
            index,
            name: name.to_string(),
            kind,
            api: "Vulkan".to_string(),
            driver: String::new(),
            subgroups: true,
            timestamps: true,
            shader_f16: false,
            cooperative_matrix: false,
            max_binding_bytes: 1 << 27,
        }
    }

    fn auto_reason(chosen: &Adapters) -> &str {
        &chosen.auto.as_ref().unwrap().reason
    }

    #[test]
    fn auto_never_takes_a_software_adapter() {
        let list = vec![adapter(0, "llvmpipe (LLVM 15)", AdapterKind::Software)];
        let chosen = Adapters::choose(list, None);
        assert_eq!(chosen.gpu.as_ref().unwrap().index, Some(0));
        assert_eq!(chosen.auto.as_ref().unwrap().index, None);
        let reason = auto_reason(&chosen);
        assert!(
            reason.contains("only a software adapter (llvmpipe")
                && reason.contains("--backend gpu"),
            "{reason}"
        );
    }

    #[test]
    fn hardware_wins_over_software_and_discrete_over_integrated() {
        let list = vec![
            adapter(0, "llvmpipe", AdapterKind::Software),
            adapter(1, "Intel UHD", AdapterKind::Integrated),
            adapter(2, "NVIDIA H100", AdapterKind::Discrete),
        ];
        let chosen = Adapters::choose(list, None);
        assert_eq!(chosen.gpu.as_ref().unwrap().index, Some(2));
        assert_eq!(chosen.auto.as_ref().unwrap().index, Some(2));
    }

    #[test]
    fn vlad_adapter_by_index_or_name_and_no_match() {
        let list = vec![
            adapter(0, "NVIDIA H100", AdapterKind::Discrete),
            adapter(1, "llvmpipe", AdapterKind::Software),
        ];
        let by_index = Adapters::choose(list.clone(), Some("1"));
        assert_eq!(by_index.gpu.as_ref().unwrap().index, Some(1));
        assert_eq!(
            by_index.auto.as_ref().unwrap().index,
            None,
            "auto still refuses software"
        );
        let by_name = Adapters::choose(list.clone(), Some("h100"));
        assert_eq!(by_name.gpu.as_ref().unwrap().index, Some(0));
        assert_eq!(by_name.auto.as_ref().unwrap().index, Some(0));
        let none = Adapters::choose(list, Some("radeon"));
        let err = none.gpu_adapter().unwrap_err();
        assert!(
            matches!(&err, VladError::BackendUnavailable(m) if m.contains("VLAD_ADAPTER=radeon")),
            "{err}"
        );
        assert!(none.auto.is_err(), "a typo is an error under auto too");
    }

    #[test]
    fn no_adapter_at_all() {
        let chosen = Adapters::choose(Vec::new(), None);
        assert!(chosen.gpu_adapter().is_err());
        assert_eq!(chosen.auto.as_ref().unwrap().index, None);
        assert!(auto_reason(&chosen).contains("no GPU adapter"));
    }
}
