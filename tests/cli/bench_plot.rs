//! `vlad bench --plot FILE.svg`: the roofline is written, is well-formed
//! SVG, and names every stage it can place (those with counted FLOPs) and
//! each backend's ceilings; an unwritable path is a clear error.

use crate::common::backend_test;
use crate::util::{BenchShape, Cmd, Folder, stderr};

const SHAPE: BenchShape = BenchShape {
    images: 8,
    per_image: 64,
    dim: 16,
    clusters: 8,
};

/// Every tag closed in order (plotters writes no comments, CDATA or
/// processing instructions); the root is one `<svg>` element.
fn assert_well_formed_svg(text: &str) {
    let body = text.trim();
    assert!(body.starts_with("<svg"), "{}", &body[..body.len().min(200)]);
    assert!(body.ends_with("</svg>"), "does not end with </svg>");
    assert!(body.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    let mut open: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("an unclosed <") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                open.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().expect("a tag name");
            open.push(name.to_string());
        }
        rest = &rest[end + 1..];
        if open.is_empty() {
            assert!(rest.trim().is_empty(), "content after the root element");
        }
    }
    assert!(open.is_empty(), "unclosed {open:?}");
}

backend_test!(
    plot_is_an_svg_roofline_with_the_stages,
    [cpu, gpu],
    |backend| {
        let folder = Folder::new();
        let path = folder.path("roof.svg");
        let out = Cmd::bench(SHAPE)
            .backend(backend)
            .repeats(1)
            .flag("--plot", path.display())
            .json()
            .run();
        assert!(out.status.success(), "{}", stderr(&out));
        let svg = std::fs::read_to_string(&path).expect("the plot is written");
        assert_well_formed_svg(&svg);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let placed: Vec<&str> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["arithmetic_intensity"].is_number() && r["stage"] != "total")
            .filter_map(|r| r["stage"].as_str())
            .collect();
        assert!(placed.contains(&"assign"), "{placed:?}");
        for stage in placed {
            assert!(svg.contains(&format!(">\n{stage}\n<")), "{stage} not drawn");
        }
        assert!(svg.contains("FMA"), "no FMA ceiling in the legend");
        assert!(svg.contains("GB/s"), "no bandwidth ceiling in the legend");
        if v["ceilings"][0]["emulation"] == true {
            assert!(svg.contains("CPU emulation"), "emulation not labelled");
        }
    }
);

#[test]
fn an_unwritable_plot_path_is_an_error_naming_it() {
    let folder = Folder::new();
    let path = folder.path("no/such/folder/roof.svg");
    let out = Cmd::bench(SHAPE)
        .backend("cpu")
        .repeats(1)
        .flag("--plot", path.display())
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("roof.svg"), "{}", stderr(&out));
}
