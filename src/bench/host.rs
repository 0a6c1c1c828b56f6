//! The machine a benchmark ran on, named beside every run (SPEC §16): the
//! host CPU's model name (as `lscpu` shows it), its threads, the OS.

/// The host as the benchmark reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// The CPU's model name, e.g. "AMD EPYC 9R45" (`unknown` where the OS
    /// does not say).
    pub cpu: String,
    /// Threads the cpu backend runs on (rayon's pool).
    pub threads: usize,
    /// `linux`, `macos`, `windows`…
    pub os: &'static str,
    /// `x86_64`, `aarch64`…
    pub arch: &'static str,
}

impl Host {
    /// This machine.
    pub fn this() -> Self {
        Host {
            cpu: cpu_model().unwrap_or_else(|| "unknown".to_string()),
            threads: rayon::current_num_threads(),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

/// The first `model name` of /proc/cpuinfo (x86) or its `Hardware`/`Model`
/// line (Arm); `None` elsewhere.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    ["model name", "Hardware", "Model"].iter().find_map(|key| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_is_named() {
        let h = Host::this();
        assert!(!h.cpu.is_empty());
        assert!(h.threads >= 1);
        if cfg!(target_os = "linux") && cfg!(target_arch = "x86_64") {
            assert_ne!(h.cpu, "unknown", "/proc/cpuinfo has a model name");
        }
    }
}
