#!/usr/bin/env bash
# Encode an input larger than memory, file to file, streamed (SPEC §11).
#
#   benches/stream_large.sh DIR [GB] [MEMORY_LIMIT] [K]
#
# Writes GB gigabytes (default 32: 62.5 M descriptors × 128 f32, in images
# of 2000) of clustered synthetic descriptors and a K-centroid codebook
# (default 256) to DIR, encodes them with `vlad encode --backend cpu
# --memory-limit MEMORY_LIMIT` (default 1GiB), prints the --json report (wall and
# compute seconds, descriptors/s, peak RSS), and deletes everything it
# wrote. Needs GB + GB·K/L of free disk (L = 2000 descriptors an image:
# the encodings are T × K·F × 4 bytes, 4 GB for the 32 GB input at K = 256).
set -euo pipefail
dir=${1:?usage: stream_large.sh DIR [GB] [MEMORY_LIMIT] [K]}
gb=${2:-32}
limit=${3:-1GiB}
k=${4:-256}
l=2000
f=128
t=$(( gb * 1000000000 / (l * f * 4) ))
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$root/Cargo.toml" --example make_npy --bin vlad >&2
mkdir -p "$dir"
trap 'rm -f "$dir/stream_d.npy" "$dir/stream_c.npy" "$dir/stream_v.npy"' EXIT
echo "writing $t images × $l × $f f32 ($(( t * l * f * 4 / 1000000 )) MB) to $dir" >&2
time "$root/target/release/examples/make_npy" "$dir/stream_d.npy" "$dir/stream_c.npy" "$t" "$l" "$f" "$k"
echo "encoding (memory limit $limit); CPU: $(lscpu | grep 'Model name' | sed 's/.*: *//')" >&2
"$root/target/release/vlad" encode --descriptors "$dir/stream_d.npy" --centroids "$dir/stream_c.npy" \
    --out "$dir/stream_v.npy" --backend cpu --memory-limit "$limit" --json |
    tee /dev/stderr |
    python3 -c '
import json, sys
d = json.load(sys.stdin)
n, wall, compute = d["descriptors"], d["wall_seconds"], d["seconds"]
rss = d["peak_rss_bytes"] / 2**20
print("wall %.1f s, compute %.1f s, %.3e descriptors/s (wall), %.3e (compute), peak RSS %.0f MiB" % (wall, compute, n / wall, n / compute, rss))'
