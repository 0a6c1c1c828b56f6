//! The documents the repository ships: every "SPEC §n" in the sources and
//! the documents names a section that `SPEC.md` has. `cargo test --test
//! docs`; needs nothing but the files.
//!
//! To add tests: put them in a new `tests/docs/NAME.rs` and add `mod NAME;`
//! below (see tests/README.md).

mod spec;
