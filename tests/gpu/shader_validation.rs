//! Every WGSL file in `shaders/` — and every specialized variant the host
//! compiles — parses and validates with naga, so a shader error shows up
//! here with naga's own message instead of as a GPU failure at run time.
//! What the host assumes of each (constants, workgroup sizes, uniform
//! layout) is `shader_contract.rs`. Needs no GPU.

use std::path::{Path, PathBuf};

use naga::valid::{Capabilities, ValidationFlags, Validator};
use vlad::backend::gpu::__internal::{SHADER_PARTS, assemble_shader};

/// The stages SPEC §7 promises, one shader each.
const REQUIRED: [&str; 5] = [
    "assign",
    "radix_sort",
    "segmented_scan",
    "residual",
    "normalize",
];

fn shaders_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

/// Parse and validate `source`; `Err` carries naga's formatted message.
fn validate(name: &str, source: &str) -> Result<naga::Module, String> {
    // No capability beyond the WGSL baseline: every shader must run on any
    // adapter, so none may depend on optional features such as subgroups.
    validate_with(name, source, Capabilities::empty())
}

/// [`validate`] with the capabilities a shader's host asks the adapter for.
fn validate_with(
    name: &str,
    source: &str,
    capabilities: Capabilities,
) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: parse error\n{}", e.emit_to_string(source)))?;
    Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| format!("{name}: validation error\n{}", e.emit_to_string(source)))?;
    Ok(module)
}

#[test]
fn every_shader_file_parses_and_validates() {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    let entries = std::fs::read_dir(shaders_dir()).expect("shaders/ is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_string();
        let raw = std::fs::read_to_string(&path).expect("readable shader");
        // Include lines resolved: the shader as the host compiles it.
        let source = match assemble_shader(&raw) {
            Ok(source) => source,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        seen.push(name.clone());
        // The opt-in tensor-core variant needs cooperative matrices and f16:
        // tests/shader_coop.rs validates it with exactly those.
        if name == "assign_coop" {
            continue;
        }
        // The f16 FMA ceiling runs only where the adapter has SHADER_F16
        // (its host checks): f16 and nothing else.
        let result = if name == "ceiling_fma_f16" {
            validate_with(&name, &source, Capabilities::SHADER_FLOAT16)
        } else {
            validate(&name, &source)
        };
        if let Err(message) = result {
            failures.push(message);
        }
    }
    for required in REQUIRED {
        assert!(
            seen.iter().any(|s| s == required),
            "shaders/{required}.wgsl is missing (found {seen:?})"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every file in `shaders/parts/` is a part the host knows, byte for byte,
/// and some shader includes it (so the test above validates it in use).
#[test]
fn every_part_is_known_and_included() {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(shaders_dir().join("parts")).expect("shaders/parts/") {
        let path = entry.expect("directory entry").path();
        let name = format!(
            "parts/{}",
            path.file_name().and_then(|s| s.to_str()).expect("UTF-8")
        );
        let text = std::fs::read_to_string(&path).expect("readable part");
        let known = SHADER_PARTS.iter().find(|(n, _)| *n == name);
        assert_eq!(known.map(|(_, t)| *t), Some(text.as_str()), "{name}");
        files.push(name);
    }
    assert_eq!(files.len(), SHADER_PARTS.len(), "{files:?}");
    let mut shaders = String::new();
    for entry in std::fs::read_dir(shaders_dir()).expect("shaders/") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            shaders.push_str(&std::fs::read_to_string(&path).expect("readable shader"));
        }
    }
    for name in files {
        assert!(
            shaders.contains(&format!("// #include \"{name}\"")),
            "no shader includes {name}"
        );
    }
}

#[test]
fn assign_variants_validate_and_have_their_entry_point() {
    use vlad::backend::gpu::stages::assign::{TileShape, shader_source};
    for shape in TileShape::ALL {
        for u8_input in [false, true] {
            let name = format!("assign {shape:?} u8={u8_input}");
            let source = shader_source(shape, u8_input).expect("specializable");
            let module = validate(&name, &source).unwrap_or_else(|m| panic!("{m}"));
            assert!(
                module.entry_points.iter().any(|e| e.name == "assign"),
                "{name}: no `assign` entry point"
            );
            // Its workgroup size and tile (BM, BN): shader_contract.rs.
        }
    }
}

#[test]
fn radix_sort_variants_validate_and_have_their_entry_points() {
    use vlad::backend::gpu::stages::radix_sort::shader_source;
    for scan_workgroup in [2, 8, 32, 256] {
        let name = format!("radix_sort scan_wg={scan_workgroup}");
        let source = shader_source(scan_workgroup).expect("specializable");
        let module = validate(&name, &source).unwrap_or_else(|m| panic!("{m}"));
        for entry in ["count_digits", "scan_blocks", "add_block_sums", "scatter"] {
            assert!(
                module.entry_points.iter().any(|e| e.name == entry),
                "{name}: no `{entry}` entry point"
            );
        }
        // Workgroup sizes, TILE and the digit width the CPU twin shares:
        // shader_contract.rs.
    }
    assert!(shader_source(3).is_err(), "non-power-of-two scan workgroup");
}

#[test]
fn a_broken_shader_fails_with_nagas_message() {
    // The check above must be able to fail: a type error is reported with
    // the offending source excerpt.
    let err = validate("broken", "fn f() -> u32 { return 1.5; }").unwrap_err();
    assert!(err.contains("broken"), "{err}");
    assert!(err.contains("return"), "naga's excerpt is missing: {err}");
}
