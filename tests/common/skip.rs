//! The skip policy of every test binary, in one place.
//!
//! * With `CI` set (to anything but empty, `0` or `false`), a missing GPU
//!   adapter is a test failure: the test panics with the reason.
//! * Outside CI, a test that cannot run prints a loud
//!   `*** SKIPPED <test>: <why> ***` line on stderr and, when
//!   `VLAD_SKIPPED_TESTS` names a file, appends `<test>\t<why>` to it;
//!   `cargo xtask test` empties that file first and ends by saying how many
//!   tests were skipped and which (a skip recorded in CI fails it).
//!
//! The macros name the test for you (`binary::module::test`) and return
//! from it:
//!
//! * `gpu_or_skip!()` / `gpu_or_skip!(&options)`: a `GpuContext`, or the
//!   policy and `return`;
//! * `require_gpu!()`: nothing, or the policy and `return` (for tests that
//!   reach the GPU through the encoder or the command line);
//! * `skip_without_gpu!("why", ...)`: the GPU policy where the test itself
//!   found no adapter (a command that exited 3, an empty adapter list);
//! * `skip!("why", ...)`: a skip for any other reason (a missing tool);
//!   never a failure, but recorded, so CI still fails on it through
//!   `cargo xtask test`;
//! * `off_this_machine!("why", ...)`: a test with nothing to compare on
//!   this machine (no golden fixture for its CPU code paths); recorded and
//!   listed, and the one skip CI tolerates;
//! * `backend_test!(name, |backend| { ... })`: one test per backend, the
//!   GPU one behind `require_gpu!()` (see its documentation).

// Each binary uses a different subset of the macros.
#![allow(unused_macros)]

use std::fmt::Display;
use std::io::Write as _;

/// The file that skipped tests are appended to, one `TEST\tWHY` line each.
pub const SKIPPED_TESTS_VAR: &str = "VLAD_SKIPPED_TESTS";

/// Whether the tests run in CI: `CI` set to anything but empty, `0` or
/// `false` (so `CI= cargo test` is a run outside CI).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !(v.is_empty() || v == "0" || v == "false")
    })
}

/// `test` is skipped because `why`: the loud line on stderr, and the line
/// appended to `$VLAD_SKIPPED_TESTS` when it is set.
pub fn record(test: &str, why: &str) {
    let why = why.replace(['\n', '\t'], " ");
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    if let Some(path) = std::env::var_os(SKIPPED_TESTS_VAR) {
        // One write of one line: parallel tests append whole lines.
        let line = format!("{test}\t{why}\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .unwrap_or_else(|e| {
                panic!(
                    "{test}: cannot record the skip in {SKIPPED_TESTS_VAR}={}: {e}",
                    path.to_string_lossy()
                )
            });
    }
}

/// `test` found no GPU adapter (`error` says why): a failure in CI, a
/// recorded skip elsewhere.
#[track_caller]
pub fn no_gpu(test: &str, error: impl Display) {
    if ci() {
        panic!("{test}: CI is set and no GPU adapter works: {error}");
    }
    record(
        test,
        &format!(
            "no GPU adapter ({error}); install mesa-vulkan-drivers to run the shaders on the CPU"
        ),
    );
}

/// A context on whatever adapter wgpu finds (lavapipe in CI) with
/// `options`, or `None` after [`no_gpu`].
#[cfg(feature = "gpu")]
#[track_caller]
pub fn gpu_context(
    test: &str,
    options: &vlad::backend::gpu::GpuOptions,
) -> Option<vlad::backend::gpu::GpuContext> {
    match vlad::backend::gpu::GpuContext::new(options) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            no_gpu(test, e);
            None
        }
    }
}

/// Whether a GPU adapter works (a context opens with the default options),
/// asked once per test binary; `Err` says why not.
#[cfg(feature = "gpu")]
pub fn gpu_available() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| {
            vlad::backend::gpu::GpuContext::new(&Default::default())
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// The path of the test (or function) this expands in, crate (binary)
/// name first: `gpu::assign::random_f32_every_shape`.
macro_rules! test_name {
    () => {{
        fn here() {}
        let mut name = ::std::any::type_name_of_val(&here);
        name = name.strip_suffix("::here").unwrap_or(name);
        while let Some(outer) = name.strip_suffix("::{{closure}}") {
            name = outer;
        }
        name
    }};
}

/// A `GpuContext` for this test (default options, or `&options`); without
/// an adapter, the policy ([`no_gpu`]) and `return` from the test.
macro_rules! gpu_or_skip {
    () => {
        match $crate::common::skip::gpu_context(
            $crate::common::test_name!(),
            &::vlad::backend::gpu::GpuOptions::default(),
        ) {
            Some(ctx) => ctx,
            None => return,
        }
    };
    ($options:expr) => {
        match $crate::common::skip::gpu_context($crate::common::test_name!(), $options) {
            Some(ctx) => ctx,
            None => return,
        }
    };
}

/// Go on only if a GPU adapter works; else the policy ([`no_gpu`]) and
/// `return` from the test.
macro_rules! require_gpu {
    () => {
        if let Err(e) = $crate::common::skip::gpu_available() {
            $crate::common::skip::no_gpu($crate::common::test_name!(), e);
            return;
        }
    };
}

/// The test found no GPU adapter (format arguments say how): the policy
/// ([`no_gpu`]) and `return`.
macro_rules! skip_without_gpu {
    ($($why:tt)+) => {{
        $crate::common::skip::no_gpu($crate::common::test_name!(), format!($($why)+));
        return;
    }};
}

/// Skip this test for a reason other than the GPU (format arguments):
/// the loud line, the record, and `return`.
macro_rules! skip {
    ($($why:tt)+) => {{
        $crate::common::skip::record($crate::common::test_name!(), &format!($($why)+));
        return;
    }};
}

/// What a skip that CI tolerates says first: the test has nothing to
/// compare on this machine (a fixture recorded for other CPU code paths),
/// which no CI setup can fix. `cargo xtask test` still lists it.
pub const OFF_THIS_MACHINE: &str = "off this machine:";

/// `off_this_machine!("why", ...)`: [`skip!`] for a test whose reference
/// data exists for other machines only; recorded, listed by `cargo xtask
/// test`, and the one kind of skip it does not fail CI for.
macro_rules! off_this_machine {
    ($($why:tt)+) => {{
        $crate::common::skip::record(
            $crate::common::test_name!(),
            &format!("{} {}", $crate::common::skip::OFF_THIS_MACHINE, format!($($why)+)),
        );
        return;
    }};
}

/// One test per backend: `backend_test!(name, |backend| { ... })` makes
/// the module `name` with the tests `name::reference`, `name::cpu` and
/// `name::gpu`, each running the body with `backend` set to that
/// `vlad::Backend`; `backend_test!(name, [cpu, gpu], |backend| { ... })`
/// makes only those listed. The GPU test is compiled with the `gpu` feature
/// only and starts with `require_gpu!()`. The body sees the enclosing
/// module's items (`use super::*`).
macro_rules! backend_test {
    ($name:ident, |$backend:ident| $body:block) => {
        $crate::common::backend_test!($name, [reference, cpu, gpu], |$backend| $body);
    };
    ($name:ident, [$($which:ident),+ $(,)?], |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $($crate::common::skip::backend_variant!($which, $backend, $body);)+
        }
    };
}

/// One test of [`backend_test!`].
macro_rules! backend_variant {
    (reference, $backend:ident, $body:block) => {
        #[test]
        fn reference() {
            let $backend = ::vlad::Backend::Reference;
            $body
        }
    };
    (cpu, $backend:ident, $body:block) => {
        #[test]
        fn cpu() {
            let $backend = ::vlad::Backend::Cpu;
            $body
        }
    };
    (gpu, $backend:ident, $body:block) => {
        #[cfg(feature = "gpu")]
        #[test]
        fn gpu() {
            $crate::common::require_gpu!();
            let $backend = ::vlad::Backend::Gpu;
            $body
        }
    };
}

#[allow(unused_imports)]
pub(crate) use {
    backend_test, backend_variant, gpu_or_skip, off_this_machine, require_gpu, skip,
    skip_without_gpu, test_name,
};
