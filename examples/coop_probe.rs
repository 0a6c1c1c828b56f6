//! What this adapter's cooperative matrices actually do: a diagnostic for
//! the tensor-core assign (`shaders/assign_coop.wgsl`), run by
//! `benches/device-check.sh` on a GPU machine.
//!
//!     VLAD_GPU_TENSOR_CORES=1 cargo run --release --example coop_probe
//!
//! Each probe multiplies two 16 × 16 f16 matrices of small integers (every
//! product and sum exact) with one `coopMultiplyAdd`, staged through
//! workgroup memory as the assign shader stages its tiles, and compares the
//! stored result with every reading of the three layouts (A, B and the
//! result each row- or column-major). So a probe says not only "wrong" but
//! which layout the driver took. Each runs through wgpu's own shader path
//! and, on Vulkan, through vlad's memory-model rewrite.
//!
//! Then the assign shader itself, patched only to dump its tile of dot
//! products (`dots`) for the first two centroid tiles into its `values` and
//! `keys` outputs, on integer data whose products and sums are exact, so
//! every dot product and label can be checked and a wrong one explained.

use vlad::backend::gpu::{GpuContext, GpuOptions};

const N: usize = 16;

/// One probe: how the shader loads A and B and stores the result, and
/// whether the accumulator starts from zero or from a loaded matrix.
struct Probe {
    name: &'static str,
    load_a: &'static str,
    load_b: &'static str,
    store: &'static str,
    /// Multiply-adds done (0: store the zero accumulator).
    products: u32,
    /// Store straight into the storage buffer instead of workgroup memory.
    store_to_storage: bool,
    /// Declare a lone 4-byte workgroup word before the tiles (the assign
    /// shader once had one, and its tiles were read 4 bytes off).
    lone_word: bool,
}

fn shader(p: &Probe, subgroup: u32) -> String {
    let products = (0..p.products)
        .map(|_| "    acc = coopMultiplyAdd(am, bm, acc);\n")
        .collect::<String>();
    let store = if p.store_to_storage {
        format!("    {}(acc, &out[0], 16u);\n", p.store)
    } else {
        format!(
            "    {}(acc, &c[0], 16u);\n    workgroupBarrier();\n    \
             for (var e = lid; e < 256u; e += {subgroup}u) {{ out[e] = c[e]; }}\n",
            p.store
        )
    };
    format!(
        "enable f16;
enable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> a_in: array<f32>;
@group(0) @binding(1) var<storage, read> b_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
{word_decl}var<workgroup> a: array<f16, 256>;
var<workgroup> b: array<f16, 256>;
var<workgroup> c: array<f32, 256>;
@compute @workgroup_size({subgroup})
fn main(@builtin(local_invocation_index) lid: u32) {{
    for (var e = lid; e < 256u; e += {subgroup}u) {{
        a[e] = f16(a_in[e]);
        b[e] = f16(b_in[e]);
    }}
    {word_use}workgroupBarrier();
    let am = {la}<coop_mat16x16<f16, A>>(&a[0], 16u);
    let bm = {lb}<coop_mat16x16<f16, B>>(&b[0], 16u);
    var acc = coop_mat16x16<f32, C>();
{products}{store}{word_read}}}
",
        la = p.load_a,
        lb = p.load_b,
        word_decl = if p.lone_word {
            "var<workgroup> word: u32;\n"
        } else {
            ""
        },
        word_use = if p.lone_word {
            "if lid == 0u { word = select(0u, 1u, a_in[0] > 0.0); }\n    "
        } else {
            ""
        },
        word_read = if p.lone_word {
            "    workgroupBarrier();\n    if word == 7u { out[0] = -1.0; }\n"
        } else {
            ""
        },
    )
}

/// `m` read as a 16 × 16 matrix, row-major or column-major.
fn as_matrix(m: &[f32], row_major: bool) -> Vec<f32> {
    let mut out = vec![0.0; N * N];
    for i in 0..N {
        for j in 0..N {
            out[i * N + j] = if row_major {
                m[i * N + j]
            } else {
                m[j * N + i]
            };
        }
    }
    out
}

/// `times` · A·B laid out row- or column-major.
fn product(a: &[f32], b: &[f32], times: u32, row_major: bool) -> Vec<f32> {
    let mut out = vec![0.0; N * N];
    for i in 0..N {
        for j in 0..N {
            let s: f32 = (0..N).map(|k| a[i * N + k] * b[k * N + j]).sum();
            let at = if row_major { i * N + j } else { j * N + i };
            out[at] = s * times as f32;
        }
    }
    out
}

fn run(
    ctx: &GpuContext,
    p: &Probe,
    rewrite: bool,
    a: &[f32],
    b: &[f32],
) -> Result<Vec<f32>, String> {
    let subgroup = match &ctx.tensor_cores {
        vlad::backend::gpu::tensor_cores::TensorCores::Enabled { subgroup_size } => *subgroup_size,
        other => return Err(format!("tensor cores not enabled: {other:?}")),
    };
    let source = shader(p, subgroup);
    let pipeline = if rewrite {
        ctx.pipeline_vulkan_memory_model(p.name, &source, "main")
    } else {
        ctx.pipeline(p.name, &source, "main")
    }
    .map_err(|e| e.to_string())?;
    let a_buf = ctx.upload("a", a).map_err(|e| e.to_string())?;
    let b_buf = ctx.upload("b", b).map_err(|e| e.to_string())?;
    let out = ctx
        .storage_buffer("out", (N * N * 4) as u64)
        .map_err(|e| e.to_string())?;
    let group = ctx
        .bind_group(
            p.name,
            &pipeline,
            &[
                a_buf.as_entire_binding(),
                b_buf.as_entire_binding(),
                out.as_entire_binding(),
            ],
        )
        .map_err(|e| e.to_string())?;
    let mut encoder = ctx.encoder(p.name);
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    ctx.submit_and_wait(p.name, encoder)
        .map_err(|e| e.to_string())?;
    ctx.read_back::<f32>("out", &out, 0, N * N)
        .map_err(|e| e.to_string())
}

/// The assign shader with its first workgroup's `dots` (after centroid
/// tiles 0 and 1) written to `values` and `keys`, and nothing else written
/// there. `variant` rewrites the cooperative block first, to try a
/// suspected cause: "hoisted" declares the four accumulators once, before
/// the centroid-tile loop, and resets them by assignment; "unbranched"
/// drops the `if !U8_INPUT` around the lo products (f32 input only).
fn dumping_assign_source(subgroup: u32, emulated: bool, variant: &str) -> Result<String, String> {
    let source = if emulated {
        vlad::backend::gpu::stages::assign_coop::emulated_shader_source(subgroup, false)
    } else {
        vlad::backend::gpu::stages::assign_coop::shader_source(subgroup, false)
    }
    .map_err(|e| e.to_string())?;
    let store = "        workgroupBarrier();\n\n        // Fold the tile";
    let dump = "        if tile == 0u && kt < 2u {\n            for (var e = lid; e < BM * BN; e += SG) {\n                \
                if kt == 0u { values[e] = bitcast<u32>(dots[e]); } else { keys[e] = bitcast<u32>(dots[e]); }\n            }\n        }\n";
    let mut patches = Vec::new();
    if variant.contains("hoisted") {
        let loop_head = "    for (var kt = 0u; kt < params.k_tiles; kt++) {\n";
        let declared = ["acc00", "acc01", "acc10", "acc11"]
            .map(|a| format!("    var {a} = coop_mat16x16<f32, C>();\n"))
            .concat();
        patches.push((loop_head, format!("{declared}{loop_head}")));
        for a in ["acc00", "acc01", "acc10", "acc11"] {
            let from = format!("        var {a} = coop_mat16x16<f32, C>();\n");
            let to = format!("        {a} = coop_mat16x16<f32, C>();\n");
            patches.push((Box::leak(from.into_boxed_str()), to));
        }
    }
    if variant.contains("hi only") || variant.contains("one product") {
        for line in [
            "            let bl0 = coopLoad<coop_mat16x16<f16, B>>(&b_lo[0], STEP);\n",
            "            let bl1 = coopLoad<coop_mat16x16<f16, B>>(&b_lo[16u * STEP], STEP);\n",
            "            acc00 = coopMultiplyAdd(ah0, bl0, acc00);\n",
            "            acc01 = coopMultiplyAdd(ah0, bl1, acc01);\n",
            "            acc10 = coopMultiplyAdd(ah1, bl0, acc10);\n",
            "            acc11 = coopMultiplyAdd(ah1, bl1, acc11);\n",
        ] {
            patches.push((line, String::new()));
        }
        patches.push((
            "            if !U8_INPUT {\n                let al0",
            "            if false {\n                let al0".to_string(),
        ));
    }
    if variant.contains("one product") {
        for line in [
            "            acc01 = coopMultiplyAdd(ah0, bh1, acc01);\n",
            "            acc10 = coopMultiplyAdd(ah1, bh0, acc10);\n",
            "            acc11 = coopMultiplyAdd(ah1, bh1, acc11);\n",
        ] {
            patches.push((line, String::new()));
        }
    }
    if variant.contains("unbranched") {
        patches.push((
            "            if !U8_INPUT {\n                let al0",
            "            {\n                let al0".to_string(),
        ));
    }
    patches.extend([
        (store, store.replacen("\n\n", &format!("\n{dump}\n"), 1)),
        (
            "            keys[row] = image_of(row) * params.clusters + k;\n",
            // Keeps image_offsets bound (it is read only here).
            "            if image_of(row) > params.images { keys[row] = k; }\n".to_string(),
        ),
        ("            values[row] = row;\n", String::new()),
    ]);
    let mut out = source;
    for (from, to) in patches {
        if !out.contains(from) {
            return Err(format!("the assign shader changed: no {from:?}"));
        }
        out = out.replacen(from, &to, 1);
    }
    Ok(out)
}

/// A candidate for what the tile holds: the dot product at (row, column).
type Hypothesis<'a> = Box<dyn Fn(usize, usize) -> f32 + 'a>;

/// Run the dumping assign on exact integer data and explain the result.
fn assign_probe(
    ctx: &GpuContext,
    rewrite: bool,
    shape: (usize, usize),
    variant: &str,
) -> Result<(), String> {
    const ROWS: usize = 1024;
    let (dim, k_count) = shape;
    // Without cooperative matrices the emulated block stands in (checking
    // this probe's own arithmetic, not the adapter's).
    let (subgroup, emulated) = match &ctx.tensor_cores {
        vlad::backend::gpu::tensor_cores::TensorCores::Enabled { subgroup_size } => {
            (*subgroup_size, false)
        }
        _ => (32, true),
    };
    // Largest |element| 2^14 in every row and centroid (scale 1, exact in
    // f16), the big elements never meet: every dot product is an exact
    // integer below 2^18.
    let small =
        |i: usize, j: usize, m: usize| ((i * 31 + j * 17 + i * j) % m) as f32 - (m / 2) as f32;
    let mut v = vec![0f32; ROWS * dim];
    for r in 0..ROWS {
        for f in 0..dim {
            v[r * dim + f] = match f {
                0 => 16384.0,
                1 => 0.0,
                _ => small(r, f, 17),
            };
        }
    }
    let mut c = vec![0f32; k_count * dim];
    for k in 0..k_count {
        for f in 0..dim {
            c[k * dim + f] = match f {
                1 => 16384.0,
                _ => small(k + 7, f, 15),
            };
        }
    }
    let norms: Vec<f32> = (0..k_count)
        .map(|k| (0..dim).map(|f| c[k * dim + f] * c[k * dim + f]).sum())
        .collect();
    let dot = |r: usize, k: usize, features: std::ops::Range<usize>| -> f32 {
        features.map(|f| v[r * dim + f] * c[k * dim + f]).sum()
    };
    let source = dumping_assign_source(subgroup, emulated, variant)?;
    let pipeline = if rewrite {
        ctx.pipeline_vulkan_memory_model("dumping assign", &source, "assign")
    } else {
        ctx.pipeline("dumping assign", &source, "assign")
    }
    .map_err(|e| e.to_string())?;
    let e = |x: vlad::VladError| x.to_string();
    let params: [u32; 8] = [
        ROWS as u32,
        dim as u32,
        k_count as u32,
        1,
        (ROWS / 32) as u32,
        k_count.div_ceil(32) as u32,
        dim.div_ceil(16) as u32,
        0,
    ];
    let params = ctx.uniform("params", &params).map_err(e)?;
    let descriptors = ctx.upload("v", &v).map_err(e)?;
    let centroids = ctx.upload("c", &c).map_err(e)?;
    let norm_buf = ctx.upload("norms", &norms).map_err(e)?;
    let offsets = ctx.upload("offsets", &[0u32, ROWS as u32]).map_err(e)?;
    let poison = vec![u32::MAX; ROWS];
    let labels = ctx.upload("labels", &poison).map_err(e)?;
    let keys = ctx.upload("keys", &poison).map_err(e)?;
    let values = ctx.upload("values", &poison).map_err(e)?;
    let group = ctx
        .bind_group(
            "dumping assign",
            &pipeline,
            &[
                &params,
                &descriptors,
                &centroids,
                &norm_buf,
                &offsets,
                &labels,
                &keys,
                &values,
            ]
            .map(|b| b.as_entire_binding()),
        )
        .map_err(e)?;
    let mut encoder = ctx.encoder("dumping assign");
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups((ROWS / 32) as u32, 1, 1);
    }
    ctx.submit_and_wait("dumping assign", encoder).map_err(e)?;
    let got_labels: Vec<u32> = ctx.read_back("labels", &labels, 0, ROWS).map_err(e)?;
    let tiles: [Vec<f32>; 2] = [
        ctx.read_back::<f32>("values", &values, 0, 1024)
            .map_err(e)?,
        ctx.read_back::<f32>("keys", &keys, 0, 1024).map_err(e)?,
    ];
    let path = match (emulated, rewrite) {
        (true, true) => "emulated, rewrite",
        (true, false) => "emulated",
        (false, true) => "rewrite",
        (false, false) => "wgpu",
    };
    for (kt, got) in tiles.iter().enumerate() {
        // Hypotheses: the right tile; features of one 16-wide chunk only;
        // tile 1 still holding tile 0's sums; A or B transposed per block.
        let mut hypotheses: Vec<(String, Hypothesis<'_>)> = Vec::new();
        let k0 = kt * 32;
        let kk = move |j: usize| (k0 + j).min(k_count - 1);
        let valid = move |j: usize| k0 + j < k_count;
        hypotheses.push((
            "right".into(),
            Box::new(move |i, j| if valid(j) { dot(i, kk(j), 0..dim) } else { 0.0 }),
        ));
        for chunk in 0..dim.div_ceil(16) {
            let fs = chunk * 16..((chunk + 1) * 16).min(dim);
            hypotheses.push((
                format!("chunk {chunk} only"),
                Box::new(move |i, j| {
                    if valid(j) {
                        dot(i, kk(j), fs.clone())
                    } else {
                        0.0
                    }
                }),
            ));
        }
        if kt == 1 {
            hypotheses.push((
                "tile 0 + tile 1 (accumulator kept)".into(),
                Box::new(move |i, j| {
                    dot(i, j, 0..dim) + if valid(j) { dot(i, kk(j), 0..dim) } else { 0.0 }
                }),
            ));
        }
        hypotheses.push((
            "transposed result per 16x16 block".into(),
            Box::new(move |i, j| {
                let (bi, bj) = (i / 16 * 16, j / 16 * 16);
                let (ti, tj) = (bi + j % 16, bj + i % 16);
                if valid(tj) {
                    dot(ti, kk(tj), 0..dim)
                } else {
                    0.0
                }
            }),
        ));
        let mut verdicts = Vec::new();
        for (name, h) in &hypotheses {
            let wrong = (0..32 * 32)
                .filter(|&e| got[e] != h(e / 32, e % 32))
                .count();
            verdicts.push(format!("{name}: {wrong} of 1024 differ"));
        }
        // Which 16 × 16 accumulator blocks are right (rows, columns).
        let per_block: Vec<usize> = (0..4)
            .map(|b| {
                let (bi, bj) = (b / 2 * 16, b % 2 * 16);
                (0..256)
                    .filter(|&e| {
                        let (i, j) = (bi + e / 16, bj + e % 16);
                        got[i * 32 + j] != hypotheses[0].1(i, j)
                    })
                    .count()
            })
            .collect();
        verdicts.push(format!("wrong per block 00/01/10/11: {per_block:?}"));
        println!("assign dots tile {kt} {path:8} {}", verdicts.join("; "));
        println!("    got  row 0: {:?}", &got[..8]);
        println!(
            "    want row 0: {:?}",
            (0..8).map(|j| hypotheses[0].1(0, j)).collect::<Vec<_>>()
        );
        println!("    got  row 1: {:?}", &got[32..40]);
        println!(
            "    want row 1: {:?}",
            (0..8).map(|j| hypotheses[0].1(1, j)).collect::<Vec<_>>()
        );
        // The whole first tile where something is wrong, for offline study.
        if kt == 0
            && got[..]
                != (0..1024)
                    .map(|e| hypotheses[0].1(e / 32, e % 32))
                    .collect::<Vec<_>>()[..]
        {
            println!("    full tile (row-major 32 x 32): {got:?}");
        }
    }
    let mut wrong = 0;
    let mut first = None;
    for (r, &got) in got_labels.iter().enumerate() {
        let want = (0..k_count)
            .map(|k| (norms[k] - 2.0 * dot(r, k, 0..dim), k))
            .fold((f32::INFINITY, 0), |b, x| if x.0 < b.0 { x } else { b })
            .1 as u32;
        if got != want {
            wrong += 1;
            first.get_or_insert((r, got, want));
        }
    }
    println!(
        "assign labels {path:8} {wrong} of {ROWS} differ from the exact argmin; first {first:?}"
    );
    Ok(())
}

fn main() {
    let ctx = match GpuContext::new(&GpuOptions::default()) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("coop_probe: no GPU: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "adapter: {}; tensor cores: {:?}",
        ctx.adapter_name(),
        ctx.tensor_cores
    );
    // Without cooperative matrices nothing below runs; the patched shader
    // can still be checked by naga.
    let variants = ["as is", "hoisted unbranched", "hi only", "one product"];
    match variants.iter().try_for_each(|v| {
        let s = dumping_assign_source(32, false, v)?;
        let module = naga::front::wgsl::parse_str(&s).map_err(|e| e.emit_to_string(&s))?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map(|_| ())
        .map_err(|e| format!("{v}: {e:?}"))
    }) {
        Ok(()) => {
            println!("dumping assign shader, every variant: valid (naga)");
            if let Ok(path) = std::env::var("COOP_PROBE_DUMP_SOURCE")
                && let Ok(source) = dumping_assign_source(32, false, "")
            {
                let _ = std::fs::write(path, source);
            }
        }
        Err(e) => println!("dumping assign shader: {e}"),
    }
    // Small integers: every f16 value, product and sum is exact.
    let a: Vec<f32> = (0..N * N)
        .map(|i| ((i * i + 3 * (i / N)) % 5) as f32 - 2.0)
        .collect();
    let b: Vec<f32> = (0..N * N).map(|i| ((i * 3 + 1) % 7) as f32 - 3.0).collect();
    let probes = [
        Probe {
            name: "zero accumulator",
            load_a: "coopLoadT",
            load_b: "coopLoad",
            store: "coopStoreT",
            products: 0,
            store_to_storage: false,
            lone_word: false,
        },
        Probe {
            name: "assign's layouts (A row, B col, C row)",
            load_a: "coopLoadT",
            load_b: "coopLoad",
            store: "coopStoreT",
            products: 1,
            store_to_storage: false,
            lone_word: false,
        },
        Probe {
            name: "assign's layouts, two products",
            load_a: "coopLoadT",
            load_b: "coopLoad",
            store: "coopStoreT",
            products: 2,
            store_to_storage: false,
            lone_word: false,
        },
        Probe {
            name: "all row-major",
            load_a: "coopLoadT",
            load_b: "coopLoadT",
            store: "coopStoreT",
            products: 1,
            store_to_storage: false,
            lone_word: false,
        },
        Probe {
            name: "all column-major",
            load_a: "coopLoad",
            load_b: "coopLoad",
            store: "coopStore",
            products: 1,
            store_to_storage: false,
            lone_word: false,
        },
        Probe {
            name: "assign's layouts, stored to storage",
            load_a: "coopLoadT",
            load_b: "coopLoad",
            store: "coopStoreT",
            products: 1,
            store_to_storage: true,
            lone_word: false,
        },
        Probe {
            name: "assign's layouts, beside a 4-byte word",
            load_a: "coopLoadT",
            load_b: "coopLoad",
            store: "coopStoreT",
            products: 1,
            store_to_storage: false,
            lone_word: true,
        },
        Probe {
            name: "the same, stored to storage",
            load_a: "coopLoadT",
            load_b: "coopLoad",
            store: "coopStoreT",
            products: 1,
            store_to_storage: true,
            lone_word: true,
        },
    ];
    for p in &probes {
        let source = shader(p, 32);
        let checked = naga::front::wgsl::parse_str(&source)
            .map_err(|e| e.emit_to_string(&source))
            .and_then(|module| {
                naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::all(),
                )
                .validate(&module)
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
            });
        if let Err(e) = checked {
            println!("{}: the probe shader is invalid: {e}", p.name);
        }
    }
    let rewrites: &[bool] = if ctx.can_rewrite_memory_model() {
        &[false, true]
    } else {
        &[false]
    };
    for p in &probes {
        for &rewrite in rewrites {
            let path = if rewrite { "rewrite" } else { "wgpu" };
            match run(&ctx, p, rewrite, &a, &b) {
                Err(e) => println!("{:45} {path:8} error: {e}", p.name),
                Ok(got) => {
                    let mut matches = Vec::new();
                    for (ra, rb, rc) in (0..8).map(|m| (m & 4 != 0, m & 2 != 0, m & 1 != 0)) {
                        let want = product(&as_matrix(&a, ra), &as_matrix(&b, rb), p.products, rc);
                        if want == got {
                            let l = |r: bool| if r { "row" } else { "col" };
                            matches.push(format!("A {} B {} C {}", l(ra), l(rb), l(rc)));
                        }
                    }
                    let summary = if matches.is_empty() {
                        let nonzero = got.iter().filter(|x| **x != 0.0).count();
                        format!(
                            "matches no layout; {nonzero} of 256 nonzero; first row {:?}",
                            &got[..N]
                        )
                    } else {
                        format!("as if {}", matches.join(" | "))
                    };
                    println!("{:45} {path:8} {summary}", p.name);
                }
            }
        }
    }
    for (shape, variant) in [
        ((16, 32), "as is"),
        ((37, 45), "as is"),
        ((128, 64), "as is"),
        ((37, 45), "hoisted"),
        ((37, 45), "unbranched"),
        ((37, 45), "hoisted unbranched"),
        ((16, 32), "hi only"),
        ((16, 32), "one product"),
    ] {
        for &rewrite in rewrites {
            println!("assign probe, F = {}, K = {}, {variant}:", shape.0, shape.1);
            if let Err(e) = assign_probe(&ctx, rewrite, shape, variant) {
                let path = if rewrite { "rewrite" } else { "wgpu" };
                println!("assign probe ({path}) error: {e}");
            }
        }
    }
}
