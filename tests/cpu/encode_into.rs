//! `Encoder::encode_batch_into` on the cpu and reference backends (the
//! checks: tests/common/encode_into.rs).

use crate::common::encode_into::check_backend;
use vlad::Backend;

#[test]
fn cpu_writes_what_encode_batch_returns() {
    check_backend(
        Backend::Cpu,
        &["ssr,l2", "none", "mass,intra", "rn,ssr,l2"],
        |b| b,
    );
}

#[test]
fn reference_writes_what_encode_batch_returns() {
    check_backend(Backend::Reference, &["ssr,l2", "mass,intra"], |b| b);
}

#[test]
fn cpu_with_progress_gives_the_same_bits() {
    crate::common::encode_into::check_progress(Backend::Cpu, |b| b, Some(|b| b));
}

#[test]
fn reference_with_progress_gives_the_same_bits() {
    crate::common::encode_into::check_progress(Backend::Reference, |b| b, Some(|b| b));
}
