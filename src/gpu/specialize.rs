//! Specializing WGSL by substituting module-scope constants.
//!
//! Shader files keep default values (`const TN: u32 = 2u;`) so that each
//! file parses and validates on its own; the host replaces the value of a
//! named constant before compiling a variant. The naga validation test calls
//! the same substitution, so every variant the host compiles is checked.

use crate::error::{Result, VladError};

/// Replace the value of each `const NAME: u32 = …;` (or `: bool`) in `source`
/// by the given text (e.g. `"4u"`, `"true"`). Every name must be declared
/// exactly once at the start of a line.
pub fn specialize(source: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = source.to_string();
    for (name, value) in values {
        let prefix = format!("const {name}:");
        let mut found = 0;
        let mut rewritten = String::with_capacity(out.len());
        for line in out.split_inclusive('\n') {
            match line.strip_prefix(&prefix) {
                Some(rest) if rest.contains('=') && rest.contains(';') => {
                    found += 1;
                    let ty = rest.split('=').next().unwrap_or_default().trim();
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
    use super::specialize;

    #[test]
    fn replaces_only_the_named_constant() {
        let src = "const A: u32 = 1u; // why\nconst AB: u32 = 2u;\nfn f() {}\n";
        let out = specialize(src, &[("A", "7u".to_string())]).unwrap();
        assert_eq!(
            out,
            "const A: u32 = 7u; // why\nconst AB: u32 = 2u;\nfn f() {}\n"
        );
    }

    #[test]
    fn missing_constant_is_an_error() {
        assert!(specialize("fn f() {}\n", &[("A", "1u".to_string())]).is_err());
    }
}
