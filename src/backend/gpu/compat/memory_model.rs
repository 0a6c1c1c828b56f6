//! SPIR-V under the Vulkan memory model, with shared memory accesses that
//! barriers actually order.
//!
//! What it works around: naga 30 moves a module that uses cooperative
//! matrices to the Vulkan memory model (`SPV_KHR_vulkan_memory_model`), but
//! writes its loads, stores and barriers as it does under GLSL450 (wgpu
//! issue 8805; a fix is proposed in wgpu PR 10016). Under the Vulkan model
//! an access without the `NonPrivatePointer` operand is private to its
//! invocation — no barrier orders it against other invocations — and a
//! barrier without `MakeAvailable | MakeVisible` makes nothing available or
//! visible, so a driver may keep a workgroup value in a register across a
//! barrier. The tensor-core assign (`shaders/assign_coop.wgsl`) exchanges
//! its f16 tiles and its dot products through workgroup memory across
//! barriers, so it relies on that ordering; it is the only shader compiled
//! this way (`stages::assign_coop`).
//!
//! Whether the driver would mis-order the unrewritten module is not known:
//! the failure of the tensor-core self-check seen on an H100 is explained by
//! another cause (cooperative loads and stores landing 4 bytes early beside
//! a lone 4-byte workgroup variable, since removed; BENCHMARKS.md, "Tensor
//! cores, what the probe found"), and neither fix has run on a GPU since.
//!
//! When it can go: once naga emits `NonPrivatePointer` and
//! `MakeAvailable | MakeVisible` itself for cooperative-matrix modules (the
//! wgpu release that carries the fix for issue 8805), or once a device
//! check shows the tensor-core self-check passing with the plain path
//! (`AssignCoopStage` compiled without this rewrite). Then
//! `GpuContext::pipeline_vulkan_memory_model`, the `vulkan_memory_model`
//! option and tests/gpu/memory_model.rs go with it.
//!
//! What it does: on Vulkan such a shader is compiled here — naga, as wgpu
//! would — and its SPIR-V words are rewritten before they go to the driver
//! as a passthrough module (`GpuContext::pipeline_vulkan_memory_model`):
//!
//! * every `OpLoad`, `OpStore`, `OpCooperativeMatrixLoadKHR` and
//!   `OpCooperativeMatrixStoreKHR` through a pointer into Workgroup or
//!   StorageBuffer memory gets the `NonPrivatePointer` memory operand;
//! * every `OpControlBarrier` / `OpMemoryBarrier` with acquire-release
//!   semantics gets `MakeAvailable | MakeVisible` (a new constant, so that
//!   a constant shared with other uses keeps its value);
//! * a module still under GLSL450 is moved to the Vulkan model (the tests
//!   run every other shader this way on lavapipe, which is how the rewrite
//!   is checked without tensor cores);
//! * `Coherent` and `Volatile` decorations, which the Vulkan model forbids,
//!   are refused (naga writes them only on request; our shaders make none).
//!
//! The rewrite knows the few instructions naga emits for these; anything it
//! cannot classify (a load through a pointer of unknown storage class, a
//! barrier whose semantics are not a constant) is an error, and the caller
//! then runs the plain path.

use std::collections::HashMap;

const MAGIC: u32 = 0x0723_0203;
const HEADER_WORDS: usize = 5;

/// Opcodes (SPIR-V specification, section 3.52).
mod op {
    pub const EXTENSION: u16 = 10;
    pub const MEMORY_MODEL: u16 = 14;
    pub const CAPABILITY: u16 = 17;
    pub const TYPE_INT: u16 = 21;
    pub const TYPE_POINTER: u16 = 32;
    pub const CONSTANT: u16 = 43;
    pub const FUNCTION_PARAMETER: u16 = 55;
    pub const VARIABLE: u16 = 59;
    pub const LOAD: u16 = 61;
    pub const STORE: u16 = 62;
    pub const ACCESS_CHAIN: u16 = 65;
    pub const IN_BOUNDS_ACCESS_CHAIN: u16 = 66;
    pub const PTR_ACCESS_CHAIN: u16 = 67;
    pub const IN_BOUNDS_PTR_ACCESS_CHAIN: u16 = 70;
    pub const DECORATE: u16 = 71;
    pub const MEMBER_DECORATE: u16 = 72;
    pub const COPY_OBJECT: u16 = 83;
    pub const CONTROL_BARRIER: u16 = 224;
    pub const MEMORY_BARRIER: u16 = 225;
    pub const COOPERATIVE_MATRIX_LOAD: u16 = 4457;
    pub const COOPERATIVE_MATRIX_STORE: u16 = 4458;
}

const STORAGE_CLASS_WORKGROUP: u32 = 4;
const STORAGE_CLASS_STORAGE_BUFFER: u32 = 12;
const MEMORY_MODEL_GLSL450: u32 = 1;
const MEMORY_MODEL_VULKAN: u32 = 3;
const CAPABILITY_VULKAN_MEMORY_MODEL: u32 = 5345;
const DECORATION_VOLATILE: u32 = 21;
const DECORATION_COHERENT: u32 = 23;
const MEMORY_ACCESS_NON_PRIVATE_POINTER: u32 = 0x20;
const SEMANTICS_ACQUIRE: u32 = 0x2;
const SEMANTICS_RELEASE: u32 = 0x4;
const SEMANTICS_ACQUIRE_RELEASE: u32 = 0x8;
const SEMANTICS_SEQUENTIALLY_CONSISTENT: u32 = 0x10;
const SEMANTICS_MAKE_AVAILABLE: u32 = 0x2000;
const SEMANTICS_MAKE_VISIBLE: u32 = 0x4000;

/// What [`make_shared_accesses_non_private`] changed (for tests and labels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Loads and stores (plain and cooperative) made `NonPrivatePointer`.
    pub accesses: usize,
    /// Barriers made `MakeAvailable | MakeVisible`.
    pub barriers: usize,
    /// Whether the module was under GLSL450 and is moved to Vulkan's.
    pub moved_to_vulkan_model: bool,
}

/// One instruction: its opcode and operand words.
struct Instruction {
    opcode: u16,
    operands: Vec<u32>,
}

fn parse(words: &[u32]) -> Result<Vec<Instruction>, String> {
    if words.len() < HEADER_WORDS || words[0] != MAGIC {
        return Err("not a SPIR-V module (bad magic number)".to_string());
    }
    let mut out = Vec::new();
    let mut at = HEADER_WORDS;
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        let opcode = (words[at] & 0xffff) as u16;
        if count == 0 || at + count > words.len() {
            return Err(format!("malformed instruction at word {at}"));
        }
        out.push(Instruction {
            opcode,
            operands: words[at + 1..at + count].to_vec(),
        });
        at += count;
    }
    Ok(out)
}

fn encode(header: &[u32], instructions: &[Instruction]) -> Vec<u32> {
    let mut out = header.to_vec();
    for i in instructions {
        out.push((((i.operands.len() + 1) as u32) << 16) | u32::from(i.opcode));
        out.extend_from_slice(&i.operands);
    }
    out
}

/// A literal string operand: UTF-8, NUL-terminated, little-endian words.
fn string_operand(s: &str) -> Vec<u32> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn operand(i: &Instruction, n: usize) -> Result<u32, String> {
    i.operands
        .get(n)
        .copied()
        .ok_or_else(|| format!("opcode {} lacks operand {n}", i.opcode))
}

/// Add `NonPrivatePointer` to the memory-operand mask at `mask_at` (appended
/// when the instruction has none yet; a mask's own extra operands follow it
/// in bit order, and this bit has none, so OR-ing it in is enough).
fn add_non_private(i: &mut Instruction, mask_at: usize) -> Result<(), String> {
    match i.operands.len() {
        n if n == mask_at => {
            i.operands.push(MEMORY_ACCESS_NON_PRIVATE_POINTER);
            Ok(())
        }
        n if n > mask_at => {
            i.operands[mask_at] |= MEMORY_ACCESS_NON_PRIVATE_POINTER;
            Ok(())
        }
        _ => Err(format!(
            "opcode {} has {} operands, expected at least {mask_at}",
            i.opcode,
            i.operands.len()
        )),
    }
}

/// Rewrite `words` (a SPIR-V module) as described in the module docs.
pub fn make_shared_accesses_non_private(words: &[u32]) -> Result<(Vec<u32>, Rewrite), String> {
    let mut instructions = parse(words)?;
    let mut header = words[..HEADER_WORDS].to_vec();
    let mut bound = header[3];
    let mut rewrite = Rewrite::default();

    // Storage class of every pointer type, then of every pointer value.
    let mut pointer_type_class: HashMap<u32, u32> = HashMap::new();
    let mut pointer_class: HashMap<u32, u32> = HashMap::new();
    let mut constants: HashMap<u32, (u32, u32)> = HashMap::new();
    let mut uint32_types: Vec<u32> = Vec::new();
    for i in &instructions {
        match i.opcode {
            op::TYPE_POINTER => {
                pointer_type_class.insert(operand(i, 0)?, operand(i, 1)?);
            }
            op::TYPE_INT if operand(i, 1)? == 32 => uint32_types.push(operand(i, 0)?),
            op::CONSTANT if i.operands.len() == 3 => {
                constants.insert(i.operands[1], (i.operands[0], i.operands[2]));
            }
            op::VARIABLE => {
                pointer_class.insert(operand(i, 1)?, operand(i, 2)?);
            }
            op::FUNCTION_PARAMETER
            | op::ACCESS_CHAIN
            | op::IN_BOUNDS_ACCESS_CHAIN
            | op::PTR_ACCESS_CHAIN
            | op::IN_BOUNDS_PTR_ACCESS_CHAIN
            | op::COPY_OBJECT => {
                if let Some(&class) = pointer_type_class.get(&operand(i, 0)?) {
                    pointer_class.insert(operand(i, 1)?, class);
                }
            }
            op::DECORATE | op::MEMBER_DECORATE => {
                let decoration = operand(i, if i.opcode == op::DECORATE { 1 } else { 2 })?;
                if decoration == DECORATION_COHERENT || decoration == DECORATION_VOLATILE {
                    return Err("Coherent/Volatile decorations are not allowed under the \
                                Vulkan memory model"
                        .to_string());
                }
            }
            _ => {}
        }
    }
    let shared = |pointer: u32| -> Result<bool, String> {
        match pointer_class.get(&pointer) {
            Some(&class) => {
                Ok(class == STORAGE_CLASS_WORKGROUP || class == STORAGE_CLASS_STORAGE_BUFFER)
            }
            None => Err(format!("pointer %{pointer} of unknown storage class")),
        }
    };

    // New semantics constants, one per constant used by a barrier.
    let mut new_semantics: HashMap<u32, u32> = HashMap::new();
    let mut new_constants: Vec<(u32, Instruction)> = Vec::new();
    for i in &instructions {
        let semantics_id = match i.opcode {
            op::CONTROL_BARRIER => operand(i, 2)?,
            op::MEMORY_BARRIER => operand(i, 1)?,
            _ => continue,
        };
        if new_semantics.contains_key(&semantics_id) {
            continue;
        }
        let Some(&(ty, value)) = constants.get(&semantics_id) else {
            return Err(format!(
                "barrier semantics %{semantics_id} is not a constant"
            ));
        };
        if !uint32_types.contains(&ty) {
            return Err(format!(
                "barrier semantics %{semantics_id} is not a 32-bit integer"
            ));
        }
        if value & SEMANTICS_SEQUENTIALLY_CONSISTENT != 0 {
            return Err(
                "sequentially consistent barriers are not allowed under the \
                        Vulkan memory model"
                    .to_string(),
            );
        }
        let mut extra = 0;
        if value & (SEMANTICS_RELEASE | SEMANTICS_ACQUIRE_RELEASE) != 0 {
            extra |= SEMANTICS_MAKE_AVAILABLE;
        }
        if value & (SEMANTICS_ACQUIRE | SEMANTICS_ACQUIRE_RELEASE) != 0 {
            extra |= SEMANTICS_MAKE_VISIBLE;
        }
        let id = bound;
        bound += 1;
        new_semantics.insert(semantics_id, id);
        new_constants.push((
            semantics_id,
            Instruction {
                opcode: op::CONSTANT,
                operands: vec![ty, id, value | extra],
            },
        ));
    }

    let mut has_vulkan_capability = false;
    for i in &mut instructions {
        match i.opcode {
            op::CAPABILITY if operand(i, 0)? == CAPABILITY_VULKAN_MEMORY_MODEL => {
                has_vulkan_capability = true;
            }
            op::MEMORY_MODEL => match operand(i, 1)? {
                MEMORY_MODEL_VULKAN => {}
                MEMORY_MODEL_GLSL450 => {
                    i.operands[1] = MEMORY_MODEL_VULKAN;
                    rewrite.moved_to_vulkan_model = true;
                }
                other => return Err(format!("memory model {other} is not GLSL450 or Vulkan")),
            },
            op::LOAD if shared(operand(i, 2)?)? => {
                add_non_private(i, 3)?;
                rewrite.accesses += 1;
            }
            op::STORE if shared(operand(i, 0)?)? => {
                add_non_private(i, 2)?;
                rewrite.accesses += 1;
            }
            // Result type, result, pointer, layout, stride, memory operand.
            op::COOPERATIVE_MATRIX_LOAD if shared(operand(i, 2)?)? => {
                operand(i, 4).map_err(|_| "cooperative load without a stride".to_string())?;
                add_non_private(i, 5)?;
                rewrite.accesses += 1;
            }
            // Pointer, object, layout, stride, memory operand.
            op::COOPERATIVE_MATRIX_STORE if shared(operand(i, 0)?)? => {
                operand(i, 3).map_err(|_| "cooperative store without a stride".to_string())?;
                add_non_private(i, 4)?;
                rewrite.accesses += 1;
            }
            op::CONTROL_BARRIER => {
                i.operands[2] = new_semantics[&i.operands[2]];
                rewrite.barriers += 1;
            }
            op::MEMORY_BARRIER => {
                i.operands[1] = new_semantics[&i.operands[1]];
                rewrite.barriers += 1;
            }
            _ => {}
        }
    }

    // Splice in the new constants (each right after the one it copies) and,
    // for a module moved to the Vulkan model, its capability and extension.
    let mut out: Vec<Instruction> =
        Vec::with_capacity(instructions.len() + new_constants.len() + 2);
    let mut added_capability = has_vulkan_capability;
    for i in instructions {
        let copies: Vec<usize> = if i.opcode == op::CONSTANT && i.operands.len() == 3 {
            new_constants
                .iter()
                .enumerate()
                .filter(|(_, (original, _))| *original == i.operands[1])
                .map(|(n, _)| n)
                .collect()
        } else {
            Vec::new()
        };
        if !added_capability && i.opcode != op::CAPABILITY {
            out.push(Instruction {
                opcode: op::CAPABILITY,
                operands: vec![CAPABILITY_VULKAN_MEMORY_MODEL],
            });
            out.push(Instruction {
                opcode: op::EXTENSION,
                operands: string_operand("SPV_KHR_vulkan_memory_model"),
            });
            added_capability = true;
        }
        out.push(i);
        for n in copies {
            let (_, ref c) = new_constants[n];
            out.push(Instruction {
                opcode: c.opcode,
                operands: c.operands.clone(),
            });
        }
    }
    header[3] = bound;
    Ok((encode(&header, &out), rewrite))
}

/// A WGSL compute shader compiled for a passthrough Vulkan module: the
/// rewritten SPIR-V, the group-0 bindings the entry point uses, and its
/// workgroup size.
pub struct CompiledShader {
    /// SPIR-V words, rewritten by [`make_shared_accesses_non_private`].
    pub spirv: Vec<u32>,
    /// Bind group 0's layout (only the bindings `entry` uses).
    pub bindings: Vec<wgpu::BindGroupLayoutEntry>,
    /// `@workgroup_size` of `entry`.
    pub workgroup_size: [u32; 3],
    /// What the rewrite changed.
    pub rewrite: Rewrite,
}

/// Compile `wgsl`'s entry point `entry` with naga (validated with the
/// capabilities `features` grant, bounds-checked as wgpu would), then
/// rewrite it for the Vulkan memory model.
pub fn compile(
    wgsl: &str,
    entry: &str,
    features: wgpu::Features,
) -> Result<CompiledShader, String> {
    use naga::valid::{Capabilities, SubgroupOperationSet, ValidationFlags, Validator};

    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let mut capabilities = Capabilities::empty();
    if features.contains(wgpu::Features::SUBGROUP) {
        capabilities |= Capabilities::SUBGROUP;
    }
    if features.contains(wgpu::Features::SUBGROUP_BARRIER) {
        capabilities |= Capabilities::SUBGROUP_BARRIER;
    }
    if features.contains(wgpu::Features::SHADER_F16) {
        capabilities |= Capabilities::SHADER_FLOAT16;
    }
    if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        capabilities |= Capabilities::COOPERATIVE_MATRIX;
    }
    let mut validator = Validator::new(ValidationFlags::all(), capabilities);
    if features.contains(wgpu::Features::SUBGROUP) {
        validator
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(SubgroupOperationSet::all());
    }
    let info = validator
        .validate(&module)
        .map_err(|e| e.emit_to_string(wgsl))?;

    let (index, entry_point) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == entry && e.stage == naga::ShaderStage::Compute)
        .ok_or_else(|| format!("no compute entry point `{entry}`"))?;
    let uses = info.get_entry_point(index);
    let mut bindings = Vec::new();
    for (handle, global) in module.global_variables.iter() {
        let Some(binding) = &global.binding else {
            continue;
        };
        if uses[handle].is_empty() {
            continue;
        }
        if binding.group != 0 {
            return Err(format!(
                "binding in group {} (only group 0 is bound)",
                binding.group
            ));
        }
        let ty = match global.space {
            naga::AddressSpace::Uniform => wgpu::BufferBindingType::Uniform,
            naga::AddressSpace::Storage { access } => wgpu::BufferBindingType::Storage {
                read_only: !access.contains(naga::StorageAccess::STORE),
            },
            other => {
                return Err(format!(
                    "binding {} in address space {other:?}",
                    binding.binding
                ));
            }
        };
        bindings.push(wgpu::BindGroupLayoutEntry {
            binding: binding.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    bindings.sort_by_key(|b| b.binding);
    // wgpu's Vulkan backend numbers a layout's descriptors densely, in the
    // order of its entries (0, 1, 2, … whatever the WGSL binding numbers),
    // and has naga remap the shader to match; a passthrough module must
    // carry the same numbers (an entry point using bindings 0, 1, 4 reads
    // descriptors 0, 1, 2).
    let binding_map: naga::back::spv::BindingMap = bindings
        .iter()
        .enumerate()
        .map(|(dense, entry)| {
            (
                naga::ResourceBinding {
                    group: 0,
                    binding: entry.binding,
                },
                naga::back::spv::BindingInfo {
                    descriptor_set: 0,
                    binding: dense as u32,
                    binding_array_size: None,
                },
            )
        })
        .collect();

    let options = naga::back::spv::Options {
        // SPIR-V 1.5: Vulkan 1.2, where the Vulkan memory model is core.
        lang_version: (1, 5),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Restrict,
            image_load: naga::proc::BoundsCheckPolicy::Restrict,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        // The shaders initialize the workgroup memory they read.
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: true,
        binding_map,
        // Only the entry point's own bindings are in the map.
        fake_missing_bindings: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| format!("SPIR-V: {e}"))?;
    let (spirv, rewrite) = make_shared_accesses_non_private(&words)?;
    Ok(CompiledShader {
        spirv,
        bindings,
        workgroup_size: entry_point.workgroup_size,
        rewrite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instructions_of(words: &[u32]) -> Vec<Instruction> {
        parse(words).unwrap()
    }

    const SHARED: &str = r#"
        @group(0) @binding(0) var<storage, read_write> data: array<u32>;
        var<workgroup> tile: array<u32, 64>;
        @compute @workgroup_size(64)
        fn main(@builtin(local_invocation_index) lid: u32) {
            tile[lid] = data[lid];
            workgroupBarrier();
            data[lid] = tile[63u - lid];
        }
    "#;

    #[test]
    fn a_glsl450_module_moves_to_the_vulkan_model() {
        let shader = compile(SHARED, "main", wgpu::Features::empty()).unwrap();
        let rewrite = shader.rewrite;
        assert!(rewrite.moved_to_vulkan_model);
        // data[lid] load, tile store, tile load, data store.
        assert_eq!(rewrite.accesses, 4, "{rewrite:?}");
        assert_eq!(rewrite.barriers, 1);
        let out = instructions_of(&shader.spirv);
        assert!(
            out.iter()
                .any(|i| i.opcode == op::CAPABILITY
                    && i.operands == [CAPABILITY_VULKAN_MEMORY_MODEL])
        );
        assert!(
            out.iter()
                .any(|i| i.opcode == op::MEMORY_MODEL && i.operands[1] == MEMORY_MODEL_VULKAN)
        );
        assert_eq!(shader.workgroup_size, [64, 1, 1]);
        assert_eq!(shader.bindings.len(), 1);
    }

    #[test]
    fn every_shared_access_is_non_private_and_barriers_make_available_and_visible() {
        let shader = compile(SHARED, "main", wgpu::Features::empty()).unwrap();
        let out = instructions_of(&shader.spirv);
        let mut constants = HashMap::new();
        for i in &out {
            if i.opcode == op::CONSTANT && i.operands.len() == 3 {
                constants.insert(i.operands[1], i.operands[2]);
            }
        }
        let mut loads_and_stores = 0;
        for i in &out {
            match i.opcode {
                op::LOAD | op::STORE => {
                    let mask_at = if i.opcode == op::LOAD { 3 } else { 2 };
                    if let Some(mask) = i.operands.get(mask_at) {
                        assert_ne!(mask & MEMORY_ACCESS_NON_PRIVATE_POINTER, 0);
                        loads_and_stores += 1;
                    }
                }
                op::CONTROL_BARRIER => {
                    let semantics = constants[&i.operands[2]];
                    assert_eq!(
                        semantics & (SEMANTICS_MAKE_AVAILABLE | SEMANTICS_MAKE_VISIBLE),
                        SEMANTICS_MAKE_AVAILABLE | SEMANTICS_MAKE_VISIBLE
                    );
                }
                _ => {}
            }
        }
        assert_eq!(loads_and_stores, 4);
        // The id bound covers the new constant.
        let max_id = out
            .iter()
            .filter(|i| i.opcode == op::CONSTANT)
            .map(|i| i.operands[1])
            .max()
            .unwrap();
        assert!(shader.spirv[3] > max_id);
    }

    #[test]
    fn a_second_rewrite_changes_nothing_more() {
        let shader = compile(SHARED, "main", wgpu::Features::empty()).unwrap();
        let (again, rewrite) = make_shared_accesses_non_private(&shader.spirv).unwrap();
        assert!(!rewrite.moved_to_vulkan_model);
        // Masks already carry the bit: the words only differ by the barrier
        // constant (copied again with the same value).
        assert_eq!(rewrite.accesses, 4);
        assert_eq!(again.len(), shader.spirv.len() + 4);
    }

    #[test]
    fn sparse_bindings_are_numbered_densely_as_wgpu_numbers_descriptors() {
        // `zero_empty_blocks` uses bindings 0, 1 and 4 of residual.wgsl.
        let shader = compile(
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/residual.wgsl"
            )),
            "zero_empty_blocks",
            wgpu::Features::empty(),
        )
        .unwrap();
        let wgsl: Vec<u32> = shader.bindings.iter().map(|b| b.binding).collect();
        assert_eq!(wgsl, [0, 1, 4]);
        const DECORATION_BINDING: u32 = 33;
        let mut spirv: Vec<u32> = instructions_of(&shader.spirv)
            .iter()
            .filter(|i| i.opcode == op::DECORATE && i.operands[1] == DECORATION_BINDING)
            .map(|i| i.operands[2])
            .collect();
        spirv.sort();
        assert_eq!(spirv, [0, 1, 2]);
    }

    #[test]
    fn bad_modules_are_refused() {
        assert!(make_shared_accesses_non_private(&[1, 2, 3]).is_err());
        let shader = compile(SHARED, "main", wgpu::Features::empty()).unwrap();
        // An instruction claiming more words than the module has.
        let mut overlong = shader.spirv.clone();
        overlong[HEADER_WORDS] |= 0xffff << 16;
        assert!(make_shared_accesses_non_private(&overlong).is_err());
        assert!(compile(SHARED, "nope", wgpu::Features::empty()).is_err());
    }

    #[test]
    fn the_tensor_core_shader_rewrites() {
        let source = crate::backend::gpu::stages::assign_coop::shader_source(32, false).unwrap();
        let shader = compile(
            &source,
            "assign",
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16,
        )
        .unwrap();
        let out = instructions_of(&shader.spirv);
        let coop: Vec<&Instruction> = out
            .iter()
            .filter(|i| {
                i.opcode == op::COOPERATIVE_MATRIX_LOAD || i.opcode == op::COOPERATIVE_MATRIX_STORE
            })
            .collect();
        // 8 loads (a hi/lo, b hi/lo, two tiles each) and 4 stores.
        assert_eq!(coop.len(), 12);
        for i in coop {
            let mask_at = if i.opcode == op::COOPERATIVE_MATRIX_LOAD {
                5
            } else {
                4
            };
            assert_eq!(i.operands[mask_at], MEMORY_ACCESS_NON_PRIVATE_POINTER);
        }
        assert!(
            !shader.rewrite.moved_to_vulkan_model,
            "naga declares it already"
        );
        assert!(shader.rewrite.barriers > 0);
        assert_eq!(shader.workgroup_size, [32, 1, 1]);
        assert_eq!(shader.bindings.len(), 8);
    }
}
