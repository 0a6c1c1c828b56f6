//! The shader ↔ Rust contract, in one place: for every variant the host
//! compiles (`vlad::backend::gpu::stages::contracts`), every constant the host copies,
//! every entry point's workgroup size and the uniform `Params` block's size
//! and field offsets are held against naga's parse of that very source:
//! its folded constants, its entry points and its type layout
//! (`naga::proc::Layouter`). Needs no GPU.

use std::collections::BTreeSet;
use std::path::Path;

use naga::proc::Layouter;
use naga::{AddressSpace, Literal, Scalar, ScalarKind, TypeInner};
use vlad::backend::gpu::__internal::ShaderValue;
use vlad::backend::gpu::contract::{ShaderContract, UniformLayout};
use vlad::backend::gpu::stages;

/// Parse a variant's WGSL (validation is `shader_validation`'s job).
fn parse(contract: &ShaderContract) -> naga::Module {
    naga::front::wgsl::parse_str(&contract.source).unwrap_or_else(|e| {
        panic!(
            "{}: parse error\n{}",
            contract.name,
            e.emit_to_string(&contract.source)
        )
    })
}

/// The folded value of module-scope constant `name`, if it is a literal.
fn constant(module: &naga::Module, name: &str) -> Option<Result<ShaderValue, String>> {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))?;
    Some(match module.global_expressions[c.init] {
        naga::Expression::Literal(Literal::U32(v)) => Ok(ShaderValue::U32(v)),
        naga::Expression::Literal(Literal::F32(v)) => Ok(ShaderValue::F32(v)),
        naga::Expression::Literal(Literal::Bool(v)) => Ok(ShaderValue::Bool(v)),
        ref other => Err(format!("not a folded u32, f32 or bool literal: {other:?}")),
    })
}

/// A naga type as the Rust type it must be copied to (scalars only; `None`
/// for anything else).
fn rust_name(inner: &TypeInner) -> Option<&'static str> {
    match *inner {
        TypeInner::Scalar(Scalar { kind, width: 4 }) => match kind {
            ScalarKind::Uint => Some("u32"),
            ScalarKind::Sint => Some("i32"),
            ScalarKind::Float => Some("f32"),
            _ => None,
        },
        _ => None,
    }
}

/// The uniform block against its Rust copy; problems are pushed to `out`.
fn check_uniform(module: &naga::Module, rust: &UniformLayout, out: &mut Vec<String>) {
    // A `Pod` struct has no padding bytes: the listed fields must add up to
    // its size, or a field was left out of the contract.
    let listed: usize = rust.fields.iter().map(|f| f.size).sum();
    if listed != rust.size {
        out.push(format!(
            "Rust {}: the listed fields cover {listed} of its {} bytes",
            rust.type_name, rust.size
        ));
    }
    let uniforms: Vec<_> = module
        .global_variables
        .iter()
        .filter(|(_, g)| g.space == AddressSpace::Uniform)
        .collect();
    let [(_, global)] = uniforms[..] else {
        out.push(format!(
            "{} uniform bindings in the shader, the host fills one",
            uniforms.len()
        ));
        return;
    };
    let ty = &module.types[global.ty];
    if ty.name.as_deref() != Some(rust.type_name) {
        out.push(format!(
            "the uniform is a `{:?}`, the host writes a `{}`",
            ty.name, rust.type_name
        ));
    }
    let TypeInner::Struct { ref members, .. } = ty.inner else {
        out.push(format!("the uniform is not a struct: {:?}", ty.inner));
        return;
    };
    let mut layouter = Layouter::default();
    if let Err(e) = layouter.update(module.to_ctx()) {
        out.push(format!("naga cannot lay the types out: {e}"));
        return;
    }
    let wgsl_size = layouter[global.ty].size as usize;
    if wgsl_size != rust.size {
        out.push(format!(
            "{}: {wgsl_size} bytes in WGSL, {} in Rust",
            rust.type_name, rust.size
        ));
    }
    // Named fields, in order, at the same offsets with the same types;
    // padding only has to keep the sizes equal.
    let wgsl: Vec<_> = members
        .iter()
        .filter(|m| !m.name.as_deref().unwrap_or("_").starts_with('_'))
        .collect();
    let named: Vec<_> = rust.fields.iter().filter(|f| !f.is_padding()).collect();
    let wgsl_names: Vec<_> = wgsl
        .iter()
        .map(|m| m.name.as_deref().unwrap_or(""))
        .collect();
    let rust_names: Vec<_> = named.iter().map(|f| f.name).collect();
    if wgsl_names != rust_names {
        out.push(format!(
            "{} fields: WGSL {wgsl_names:?}, Rust {rust_names:?}",
            rust.type_name
        ));
        return;
    }
    for (m, f) in wgsl.iter().zip(named) {
        let size = layouter[m.ty].size as usize;
        let ty = rust_name(&module.types[m.ty].inner);
        if m.offset as usize != f.offset || size != f.size || ty != Some(f.ty) {
            out.push(format!(
                "{}.{}: WGSL {ty:?} at byte {} ({size} bytes), Rust {} at byte {} ({} bytes)",
                rust.type_name, f.name, m.offset, f.ty, f.offset, f.size
            ));
        }
    }
}

/// Everything that does not hold in `contract`, one line each.
fn problems(contract: &ShaderContract) -> Vec<String> {
    let module = parse(contract);
    let mut out = Vec::new();
    for &(name, want) in &contract.constants {
        match constant(&module, name) {
            None => out.push(format!("no `const {name}` in the shader")),
            Some(Err(e)) => out.push(format!("`const {name}`: {e}")),
            Some(Ok(got)) if got != want => out.push(format!(
                "`const {name}` is {got} in the shader, {want} on the host"
            )),
            Some(Ok(_)) => {}
        }
    }
    let listed: BTreeSet<&str> = contract.entry_points.iter().map(|e| e.0).collect();
    for entry in &module.entry_points {
        if !listed.contains(entry.name.as_str()) {
            out.push(format!(
                "entry point `{}` is not in the host's contract",
                entry.name
            ));
        }
        if entry.workgroup_size_overrides.is_some() {
            out.push(format!(
                "entry point `{}`: workgroup size from an override",
                entry.name
            ));
        }
    }
    for &(name, size) in &contract.entry_points {
        match module.entry_points.iter().find(|e| e.name == name) {
            None => out.push(format!("no entry point `{name}` in the shader")),
            Some(entry) => match size {
                Some(size) if entry.workgroup_size != size => out.push(format!(
                    "`{name}` runs {:?} invocations per workgroup, the host dispatches for {size:?}",
                    entry.workgroup_size
                )),
                _ => {}
            },
        }
    }
    check_uniform(&module, &contract.uniform, &mut out);
    out
}

fn contracts() -> Vec<ShaderContract> {
    stages::contracts().expect("every variant specializes")
}

#[test]
fn every_shader_file_has_a_contract() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("shaders/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("UTF-8");
            files.insert(stem.to_string());
        }
    }
    let covered: BTreeSet<String> = contracts().iter().map(|c| c.file.to_string()).collect();
    assert_eq!(files, covered, "shaders/ against the host's contracts");
    // An unspecialized contract is the file itself (its parts included),
    // byte for byte.
    for c in contracts() {
        let raw = std::fs::read_to_string(dir.join(format!("{}.wgsl", c.file))).unwrap();
        let file = vlad::backend::gpu::__internal::assemble_shader(&raw).unwrap();
        if c.name == c.file {
            assert_eq!(c.source, file, "{}", c.name);
        }
    }
}

#[test]
fn every_variant_keeps_the_contract() {
    let mut failures = Vec::new();
    let all = contracts();
    assert!(all.len() >= 5, "{} contracts", all.len());
    for contract in &all {
        for problem in problems(contract) {
            failures.push(format!("{}: {problem}", contract.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Each kind of drift is caught: the check above can fail.
#[test]
fn drift_is_reported() {
    let base = contracts()
        .into_iter()
        .find(|c| c.file == "radix_sort")
        .expect("a radix sort contract");
    assert!(problems(&base).is_empty(), "{:?}", problems(&base));
    let drifted = |change: &dyn Fn(&mut ShaderContract), needle: &str| {
        let mut c = base.clone();
        change(&mut c);
        let found = problems(&c);
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{needle:?} not reported: {found:?}"
        );
    };
    drifted(
        &|c| c.constants.push(("SCAN_ITEMS", ShaderValue::U32(8))),
        "`const SCAN_ITEMS` is 4u in the shader, 8u on the host",
    );
    drifted(
        &|c| c.constants.push(("ADD_WG", ShaderValue::Bool(true))),
        "`const ADD_WG` is 256u",
    );
    drifted(
        &|c| c.constants.push(("NO_SUCH", ShaderValue::U32(1))),
        "no `const NO_SUCH`",
    );
    drifted(
        &|c| c.entry_points[2].1 = Some([128, 1, 1]),
        "`add_block_sums` runs [256, 1, 1]",
    );
    drifted(
        &|c| {
            c.entry_points.pop();
        },
        "entry point `scatter` is not in the host's contract",
    );
    drifted(
        &|c| c.entry_points.push(("gather", None)),
        "no entry point `gather`",
    );
    drifted(&|c| c.uniform.fields[3].offset = 16, "Params.mask");
    drifted(&|c| c.uniform.fields[3].ty = "f32", "Params.mask");
    drifted(&|c| c.uniform.size = 36, "36 in Rust");
    drifted(
        &|c| {
            c.uniform.fields.remove(7);
        },
        "cover 28 of its 32 bytes",
    );
    drifted(
        &|c| c.uniform.fields.swap(0, 1),
        "fields: WGSL [\"len\", \"tiles\"",
    );
    drifted(
        &|c| {
            c.source = c
                .source
                .replace("var<uniform> params", "var<private> params")
        },
        "0 uniform bindings",
    );
}
