//! WGSL has no includes: code that several shaders share lives once in
//! `shaders/parts/`, and a shader names it with a line
//!
//! ```text
//! // #include "parts/NAME.wgsl"
//! ```
//!
//! which [`assemble`] replaces by the part's text before the shader is
//! specialized and compiled (WGSL declarations may come in any order, so a
//! part can stand anywhere at module scope). A part states what it needs of
//! the shader that includes it (bindings, constants, functions). The parts
//! are compiled into the library, like the shaders; the naga tests validate
//! every shader as assembled, which validates every part in each of its
//! uses.

use crate::error::{Result, VladError};

/// Every part, by the path an include line names.
pub const PARTS: [(&str, &str); 4] = [
    (
        "parts/assign_interface.wgsl",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/parts/assign_interface.wgsl"
        )),
    ),
    (
        "parts/descriptor.wgsl",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/parts/descriptor.wgsl"
        )),
    ),
    (
        "parts/gemm_tile.wgsl",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/parts/gemm_tile.wgsl"
        )),
    ),
    (
        "parts/image_of.wgsl",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/parts/image_of.wgsl"
        )),
    ),
];

const DIRECTIVE: &str = "// #include ";

/// `source` with each include line replaced by its part. A part may be
/// included once per shader; parts include nothing themselves.
pub fn assemble(source: &str) -> Result<String> {
    let mut out = String::with_capacity(source.len());
    let mut included: Vec<&str> = Vec::new();
    for line in source.split_inclusive('\n') {
        let Some(rest) = line.trim().strip_prefix(DIRECTIVE) else {
            out.push_str(line);
            continue;
        };
        let name = rest.trim().trim_matches('"');
        let Some(&(name, text)) = PARTS.iter().find(|(n, _)| *n == name) else {
            return Err(VladError::Gpu(format!(
                "shader include: no part `{name}` (known: {})",
                PARTS.map(|(n, _)| n).join(", ")
            )));
        };
        if included.contains(&name) {
            return Err(VladError::Gpu(format!(
                "shader include: `{name}` included twice"
            )));
        }
        included.push(name);
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_directive(text: &str) -> bool {
        text.lines().any(|l| l.trim().starts_with(DIRECTIVE))
    }

    #[test]
    fn an_include_line_becomes_the_part() {
        let source = "const A: u32 = 1u;\n// #include \"parts/image_of.wgsl\"\nfn f() {}\n";
        let out = assemble(source).unwrap();
        assert!(out.starts_with("const A: u32 = 1u;\n"));
        assert!(out.ends_with("fn f() {}\n"));
        assert!(out.contains("fn image_of(row: u32) -> u32"));
        assert!(!has_directive(&out));
    }

    #[test]
    fn unknown_and_repeated_parts_are_errors() {
        let unknown = assemble("// #include \"parts/nothing.wgsl\"\n").unwrap_err();
        assert!(
            unknown.to_string().contains("parts/nothing.wgsl"),
            "{unknown}"
        );
        let twice = "// #include \"parts/descriptor.wgsl\"\n".repeat(2);
        assert!(assemble(&twice).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn parts_include_nothing() {
        for (name, text) in PARTS {
            assert!(!has_directive(text), "{name} includes another part");
        }
    }

    #[test]
    fn a_source_without_includes_is_unchanged() {
        let source = "fn f() {}\n// # include is not a directive\n";
        assert_eq!(assemble(source).unwrap(), source);
    }
}
