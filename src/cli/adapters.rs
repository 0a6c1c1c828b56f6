//! `vlad adapters`: every GPU adapter wgpu sees, what vlad would use of it,
//! and which one `--backend auto` and `--backend gpu` would take (SPEC §7).
//! Listing opens no device and compiles no shader.

use clap::Args;
use serde_json::{Value, json};
use vlad::{AdapterInfo, Adapters};

use super::failure::Failure;

/// `vlad adapters` options.
#[derive(Debug, Args)]
pub struct AdaptersArgs {
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run `vlad adapters`. Always exit 0: a machine without adapters is an
/// answer, not an error (a `VLAD_ADAPTER` that matches none is reported in
/// the `gpu` and `auto` lines).
pub fn run(args: &AdaptersArgs) -> Result<(), Failure> {
    let adapters = vlad::adapters(&super::args::gpu_options()?);
    if args.json {
        println!("{}", to_json(&adapters));
    } else {
        print!("{}", table(&adapters));
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn table(adapters: &Adapters) -> String {
    let mut out = String::new();
    if adapters.adapters.is_empty() {
        out.push_str("no GPU adapter\n");
    }
    let gpu_index = adapters.gpu.as_ref().ok().and_then(|p| p.index);
    let auto_index = adapters.auto.as_ref().ok().and_then(|p| p.index);
    for a in &adapters.adapters {
        let mut marks = Vec::new();
        if Some(a.index) == auto_index {
            marks.push("auto");
        }
        if Some(a.index) == gpu_index {
            marks.push("gpu");
        }
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("  <- {}", marks.join(", "))
        };
        out.push_str(&format!(
            "{}: {} [{}, {}]{marks}\n",
            a.index, a.name, a.kind, a.api
        ));
        out.push_str(&format!(
            "   driver: {}; subgroups {}, timestamps {}, shader f16 {}, cooperative matrix {}; \
             binding limit {} bytes\n",
            if a.driver.is_empty() { "?" } else { &a.driver },
            yes(a.subgroups),
            yes(a.timestamps),
            yes(a.shader_f16),
            yes(a.cooperative_matrix),
            a.max_binding_bytes
        ));
    }
    match &adapters.gpu {
        Ok(p) => out.push_str(&format!(
            "--backend gpu: adapter {} ({})\n",
            p.index.map(|i| i.to_string()).unwrap_or("none".into()),
            p.reason
        )),
        Err(why) => out.push_str(&format!("--backend gpu: unavailable ({why})\n")),
    }
    match &adapters.auto {
        Ok(p) => match p.index {
            Some(i) => out.push_str(&format!("--backend auto: adapter {i} ({})\n", p.reason)),
            None => out.push_str(&format!("--backend auto: cpu ({})\n", p.reason)),
        },
        Err(why) => out.push_str(&format!("--backend auto: unavailable ({why})\n")),
    }
    out
}

fn adapter_json(a: &AdapterInfo) -> Value {
    json!({
        "index": a.index,
        "name": a.name,
        "device_type": a.kind.name(),
        "software": a.is_software(),
        "api": a.api,
        "driver": a.driver,
        "features": {
            "subgroups": a.subgroups,
            "timestamps": a.timestamps,
            "shader_f16": a.shader_f16,
            "cooperative_matrix": a.cooperative_matrix,
        },
        "max_binding_bytes": a.max_binding_bytes,
    })
}

fn to_json(adapters: &Adapters) -> Value {
    let pick = |p: &Result<vlad::AdapterPick, String>, cpu_when_none: bool| match p {
        Ok(p) => json!({
            "adapter": p.index,
            "backend": match (p.index, cpu_when_none) {
                (Some(_), _) => "gpu",
                (None, true) => "cpu",
                (None, false) => "unavailable",
            },
            "reason": p.reason,
        }),
        Err(why) => json!({"adapter": null, "backend": "unavailable", "reason": why}),
    };
    json!({
        "adapters": adapters.adapters.iter().map(adapter_json).collect::<Vec<_>>(),
        "gpu": pick(&adapters.gpu, false),
        "auto": pick(&adapters.auto, true),
    })
}
