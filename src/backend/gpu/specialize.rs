//! Specializing WGSL by substituting module-scope constants.
//!
//! Shader files keep default values (`const TN: u32 = 2u;`) so that each
//! file parses and validates on its own; the host replaces the value of a
//! named constant before compiling a variant. Values are typed
//! ([`ShaderValue`]): the declared WGSL type must match, and the literal is
//! written here, never by the caller. The naga tests compile the same
//! variants, so every variant the host compiles is checked.

use std::fmt;

use crate::backend::gpu::shader_parts::assemble;
use crate::error::{Result, VladError};

/// The value of a WGSL module-scope constant.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum ShaderValue {
    /// `u32`, written `7u`.
    U32(u32),
    /// `f32`, written `0.5f` (finite only).
    F32(f32),
    /// `bool`, written `true` / `false`.
    Bool(bool),
}

impl ShaderValue {
    /// The WGSL type name: what the constant must be declared as.
    pub fn wgsl_type(self) -> &'static str {
        match self {
            ShaderValue::U32(_) => "u32",
            ShaderValue::F32(_) => "f32",
            ShaderValue::Bool(_) => "bool",
        }
    }
}

impl From<u32> for ShaderValue {
    fn from(v: u32) -> Self {
        ShaderValue::U32(v)
    }
}

impl From<f32> for ShaderValue {
    fn from(v: f32) -> Self {
        ShaderValue::F32(v)
    }
}

impl From<bool> for ShaderValue {
    fn from(v: bool) -> Self {
        ShaderValue::Bool(v)
    }
}

/// The WGSL literal (`7u`, `0.5f`, `true`). `Debug` formatting keeps an
/// f32's exact value (`1e-7`, `0.1`), which WGSL reads back to the same bits.
impl fmt::Display for ShaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShaderValue::U32(v) => write!(f, "{v}u"),
            ShaderValue::F32(v) => write!(f, "{v:?}f"),
            ShaderValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// `source` for one input type: its `U8_INPUT` set (f32 descriptors, or
/// bytes packed four per word), for the shaders specialized by nothing else.
pub fn for_input_type(source: &str, u8_input: bool) -> Result<String> {
    specialize(source, &[("U8_INPUT", u8_input.into())])
}

/// Replace the value of each `const NAME: TYPE = …;` in `source` by the
/// given value, whose type must be the declared `TYPE`. Every name must be
/// declared exactly once at the start of a line. The shader's include
/// lines are resolved first ([`assemble`]), so a constant may be declared
/// in the shader and used in a part.
pub fn specialize(source: &str, values: &[(&str, ShaderValue)]) -> Result<String> {
    let mut out = assemble(source)?;
    for &(name, value) in values {
        match value {
            ShaderValue::F32(v) if !v.is_finite() => {
                return Err(VladError::Gpu(format!(
                    "shader specialization: `const {name}` = {v} has no WGSL literal"
                )));
            }
            _ => {}
        }
        let prefix = format!("const {name}:");
        let mut found = 0;
        let mut rewritten = String::with_capacity(out.len());
        for line in out.split_inclusive('\n') {
            match line.strip_prefix(&prefix) {
                Some(rest) if rest.contains('=') && rest.contains(';') => {
                    found += 1;
                    let ty = rest.split('=').next().unwrap_or_default().trim();
                    if ty != value.wgsl_type() {
                        return Err(VladError::Gpu(format!(
                            "shader specialization: `const {name}` is declared `{ty}`, \
                             given a {} ({value})",
                            value.wgsl_type()
                        )));
                    }
                    let tail = rest.split_once(';').map(|(_, t)| t).unwrap_or_default();
                    rewritten.push_str(&format!("const {name}: {ty} = {value};{tail}"));
                }
                _ => rewritten.push_str(line),
            }
        }
        if found != 1 {
            return Err(VladError::Gpu(format!(
                "shader specialization: `const {name}` declared {found} times, expected once"
            )));
        }
        out = rewritten;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{ShaderValue, specialize};

    #[test]
    fn replaces_only_the_named_constant() {
        let src = "const A: u32 = 1u; // why\nconst AB: u32 = 2u;\nfn f() {}\n";
        let out = specialize(src, &[("A", 7u32.into())]).unwrap();
        assert_eq!(
            out,
            "const A: u32 = 7u; // why\nconst AB: u32 = 2u;\nfn f() {}\n"
        );
    }

    #[test]
    fn missing_constant_is_an_error() {
        assert!(specialize("fn f() {}\n", &[("A", 1u32.into())]).is_err());
    }

    #[test]
    fn every_type_is_written_as_its_literal() {
        let src = "const U: u32 = 1u;\nconst X: f32 = 1.0;\nconst B: bool = false;\n";
        let out = specialize(
            src,
            &[
                ("U", ShaderValue::U32(4_000_000_000)),
                ("X", ShaderValue::F32(1e-7)),
                ("B", ShaderValue::Bool(true)),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "const U: u32 = 4000000000u;\nconst X: f32 = 1e-7f;\nconst B: bool = true;\n"
        );
        let out = specialize(src, &[("X", ShaderValue::F32(-0.1))]).unwrap();
        assert!(out.contains("const X: f32 = -0.1f;"), "{out}");
    }

    #[test]
    fn a_value_of_the_wrong_type_or_not_finite_is_an_error() {
        let src = "const U: u32 = 1u;\nconst X: f32 = 1.0;\n";
        let err = specialize(src, &[("U", ShaderValue::Bool(true))]).unwrap_err();
        assert!(err.to_string().contains("declared `u32`"), "{err}");
        assert!(specialize(src, &[("X", ShaderValue::U32(1))]).is_err());
        assert!(specialize(src, &[("X", ShaderValue::F32(f32::NAN))]).is_err());
        assert!(specialize(src, &[("X", ShaderValue::F32(f32::INFINITY))]).is_err());
    }
}
