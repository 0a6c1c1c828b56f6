//! What `vlad encode` and `vlad assign` share as streamed runs (SPEC §11):
//! the descriptors are memory-mapped and streamed through [`vlad::stream`]
//! in batches bounded by `--memory-limit`; this file parses the limit and
//! reports how the input was cut.

use std::time::Instant;

use serde_json::json;
use vlad::stream::{self, Streamed};

use super::peak_rss::peak_rss_bytes;
use super::summary::Sizes;

/// `--memory-limit`: parsed by clap so a bad size is a usage error.
pub fn parse_memory_limit(s: &str) -> Result<u64, String> {
    stream::parse_memory_size(s).map_err(|e| e.to_string())
}

/// The sizes a summary line reports.
pub fn sizes(streamed: &Streamed, encoder: &vlad::Encoder) -> Sizes {
    Sizes {
        images: streamed.images,
        descriptors: streamed.descriptors,
        clusters: encoder.codebook().clusters(),
        dim: encoder.codebook().dim(),
    }
}

/// `wall_seconds`, `peak_rss_bytes` and how the input was cut.
pub fn add_stream_fields(
    json: &mut serde_json::Map<String, serde_json::Value>,
    streamed: &Streamed,
    memory_limit: u64,
    wall: Instant,
) {
    json.insert("wall_seconds".into(), json!(wall.elapsed().as_secs_f64()));
    json.insert("peak_rss_bytes".into(), json!(peak_rss_bytes()));
    json.insert("memory_limit_bytes".into(), json!(memory_limit));
    json.insert("batches".into(), json!(streamed.batches));
    json.insert("split_images".into(), json!(streamed.split_images));
}
