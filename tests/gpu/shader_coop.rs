//! The tensor-core assign shader (`shaders/assign_coop.wgsl`) and every
//! variant the host compiles parse and validate with naga given exactly the
//! capabilities the device is opened with for it (cooperative matrices and
//! f16), are rejected without them, and translate to SPIR-V (what wgpu's
//! Vulkan backend feeds the driver) using the cooperative-matrix
//! instructions. Needs no GPU.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use vlad::backend::gpu::stages::assign_coop::{shader_source, subgroup_sizes};

/// What wgpu 30 grants a device opened with `EXPERIMENTAL_COOPERATIVE_MATRIX
/// | SHADER_F16` (wgpu-naga-bridge maps each feature to one capability).
fn coop_capabilities() -> Capabilities {
    Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16
}

fn validate(
    name: &str,
    source: &str,
    caps: Capabilities,
) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: parse error\n{}", e.emit_to_string(source)))?;
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("{name}: validation error\n{}", e.emit_to_string(source)))?;
    Ok((module, info))
}

fn file_source() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders/assign_coop.wgsl");
    let raw = std::fs::read_to_string(path).expect("shaders/assign_coop.wgsl is readable");
    vlad::backend::gpu::__internal::assemble_shader(&raw).expect("its parts are known")
}

#[test]
fn the_file_validates_with_cooperative_matrices_and_f16() {
    let source = file_source();
    validate("assign_coop", &source, coop_capabilities()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn every_host_variant_validates_and_has_its_entry_point() {
    for &sg in subgroup_sizes() {
        for u8_input in [false, true] {
            let name = format!("assign_coop sg={sg} u8={u8_input}");
            let source = shader_source(sg, u8_input).expect("specializes");
            let (module, _) =
                validate(&name, &source, coop_capabilities()).unwrap_or_else(|e| panic!("{e}"));
            let entry = module
                .entry_points
                .iter()
                .find(|e| e.name == "assign")
                .unwrap_or_else(|| panic!("{name}: no entry point `assign`"));
            assert_eq!(
                entry.workgroup_size,
                [sg, 1, 1],
                "{name}: one subgroup per workgroup"
            );
        }
    }
}

/// Without the capabilities the shader must not validate: the plain path is
/// what adapters without them get.
#[test]
fn without_the_capabilities_it_is_rejected() {
    let source = file_source();
    for caps in [
        Capabilities::empty(),
        Capabilities::SHADER_FLOAT16,
        Capabilities::COOPERATIVE_MATRIX,
    ] {
        assert!(
            validate("assign_coop", &source, caps).is_err(),
            "validated with only {caps:?}"
        );
    }
}

/// naga emits SPIR-V for every variant, with `SPV_KHR_cooperative_matrix`'s
/// capability and its load, multiply-add and store instructions.
#[test]
fn every_variant_translates_to_spirv_with_cooperative_matrix_instructions() {
    use naga::back::spv;
    // Opcodes from SPV_KHR_cooperative_matrix.
    const OP_COOP_LOAD: u32 = 4457;
    const OP_COOP_STORE: u32 = 4458;
    const OP_COOP_MUL_ADD: u32 = 4459;
    const CAPABILITY_COOP: u32 = 6022;
    for &sg in subgroup_sizes() {
        for u8_input in [false, true] {
            let name = format!("assign_coop sg={sg} u8={u8_input}");
            let source = shader_source(sg, u8_input).expect("specializes");
            let (module, info) =
                validate(&name, &source, coop_capabilities()).unwrap_or_else(|e| panic!("{e}"));
            let options = spv::Options {
                lang_version: (1, 3),
                // wgpu's Vulkan backend adds VulkanMemoryModel with the
                // cooperative-matrix capability; the rest as it does.
                capabilities: None,
                ..spv::Options::default()
            };
            let words = spv::write_vec(&module, &info, &options, None)
                .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
            // Walk the instruction stream (after the 5-word header).
            let mut counts = [0usize; 3];
            let mut has_capability = false;
            let mut i = 5;
            while i < words.len() {
                let word = words[i];
                let (len, op) = ((word >> 16) as usize, word & 0xffff);
                assert!(len > 0, "{name}: malformed SPIR-V at word {i}");
                match op {
                    OP_COOP_LOAD => counts[0] += 1,
                    OP_COOP_STORE => counts[1] += 1,
                    OP_COOP_MUL_ADD => counts[2] += 1,
                    17 if words[i + 1] == CAPABILITY_COOP => has_capability = true,
                    _ => {}
                }
                i += len;
            }
            assert!(has_capability, "{name}: no CooperativeMatrixKHR capability");
            // hi·hi, hi·lo and lo·hi on 2 × 2 tiles (static instructions:
            // u8 variants keep lo·hi in a branch on the constant
            // `U8_INPUT`, which the driver's compiler removes), 4 stores.
            assert_eq!(counts, [8, 4, 12], "{name}: load/store/mul-add count");
        }
    }
}

/// The shader and its CPU twin use the same constants: scaling target and
/// range, step, and the error bound's coefficients.
#[test]
fn shader_constants_match_the_cpu_twin() {
    use vlad::twins::assign_coop as twin;
    let (module, _) = validate("assign_coop", &file_source(), coop_capabilities())
        .unwrap_or_else(|e| panic!("{e}"));
    let literal = |name: &str| -> naga::Literal {
        let (_, constant) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no constant {name}"));
        match module.global_expressions[constant.init] {
            naga::Expression::Literal(l) => l,
            ref other => panic!("{name} is not a literal: {other:?}"),
        }
    };
    assert_eq!(
        literal("TARGET_EXPONENT"),
        naga::Literal::I32(twin::TARGET_EXPONENT)
    );
    assert_eq!(
        literal("EXPONENT_RANGE"),
        naga::Literal::I32(twin::EXPONENT_RANGE)
    );
    assert_eq!(literal("STEP"), naga::Literal::U32(twin::STEP as u32));
    assert_eq!(
        literal("BOUND_PER_FEATURE"),
        naga::Literal::F32(twin::BOUND_PER_FEATURE)
    );
    assert_eq!(
        literal("BOUND_CONSTANT"),
        naga::Literal::F32(twin::BOUND_CONSTANT)
    );
    assert_eq!(
        literal("NORM_MARGIN"),
        naga::Literal::F32(twin::NORM_MARGIN)
    );
}
