#!/usr/bin/env bash
# Encode an input larger than memory, file to file, streamed (SPEC §11),
# and the same encoder in memory on a slice that fits, for reference.
#
#   benches/stream_large.sh DIR [GB] [MEMORY_LIMIT] [K] [BACKEND] [SLICE_GB]
#
# 1. Writes GB gigabytes (default 32: 62.5 M descriptors × 128 f32, in
#    images of L = 2000) of clustered synthetic descriptors and a
#    K-centroid codebook (default 256) to DIR. The generator
#    (examples/make_npy.rs) appends ~64 MB at a time to the output file: it
#    never holds the input in memory.
# 2. Encodes them with `vlad encode --backend BACKEND` (default cpu)
#    `--memory-limit MEMORY_LIMIT` (default 1GiB) and reports wall and
#    compute seconds, descriptors/s and peak RSS (VmHWM, from --json).
# 3. Writes a SLICE_GB slice (default 1 GB, at most GB) with the same
#    generator and times the same encoder on it in memory
#    (`vlad bench --descriptors`, median of 3): the in-memory
#    descriptors/s the streamed figure is compared with.
# 4. Prints one summary line and deletes everything it wrote.
#
# Needs GB + GB·K/L + SLICE_GB of free disk (the encodings are
# T × K·F × 4 bytes: 4 GB for the 32 GB input at K = 256) and SLICE_GB × ~2
# of memory for step 3. The 32 GB run takes ~15 min on 2 cores.
set -euo pipefail
dir=${1:?usage: stream_large.sh DIR [GB] [MEMORY_LIMIT] [K] [BACKEND] [SLICE_GB]}
gb=${2:-32}
limit=${3:-1GiB}
k=${4:-256}
backend=${5:-cpu}
slice_gb=${6:-1}
l=2000
f=128
t=$(python3 -c "print(max(1, int($gb * 1e9 / ($l * $f * 4))))")
slice_t=$(python3 -c "print(max(1, min($t, int($slice_gb * 1e9 / ($l * $f * 4)))))")
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$root/Cargo.toml" --example make_npy --bin vlad >&2
mkdir -p "$dir"
files=("$dir/stream_d.npy" "$dir/stream_c.npy" "$dir/stream_v.npy" "$dir/slice_d.npy" "$dir/slice_c.npy")
trap 'rm -f "${files[@]}"' EXIT
need=$(python3 -c "print(int(($t * $l * $f * 4) * (1 + $k / $l) + $slice_t * $l * $f * 4))")
free=$(df -B1 --output=avail "$dir" | tail -1)
if [ "$free" -lt "$need" ]; then
    echo "stream_large.sh: $dir has $free bytes free, the run needs $need" >&2
    exit 1
fi
cpu=$(lscpu | grep 'Model name' | sed 's/.*: *//')
echo "CPU: $cpu, $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "writing $t images × $l × $f f32 ($(( t * l * f * 4 / 1000000 )) MB) to $dir" >&2
gen_start=$(date +%s.%N)
"$root/target/release/examples/make_npy" "$dir/stream_d.npy" "$dir/stream_c.npy" "$t" "$l" "$f" "$k"
gen_end=$(date +%s.%N)
echo "written in $(python3 -c "print(round($gen_end - $gen_start, 1))") s" >&2

echo "encoding streamed (backend $backend, memory limit $limit)" >&2
streamed=$("$root/target/release/vlad" encode --descriptors "$dir/stream_d.npy" \
    --centroids "$dir/stream_c.npy" --out "$dir/stream_v.npy" --backend "$backend" \
    --memory-limit "$limit" --json)
echo "$streamed" >&2
rm -f "$dir/stream_v.npy"

echo "in-memory reference: $slice_t images ($(( slice_t * l * f * 4 / 1000000 )) MB)" >&2
"$root/target/release/examples/make_npy" "$dir/slice_d.npy" "$dir/slice_c.npy" "$slice_t" "$l" "$f" "$k"
# The slice's codebook is the big input's (the first K descriptors of both
# files are the same draws, but use the same file to be sure).
in_memory=$("$root/target/release/vlad" bench --descriptors "$dir/slice_d.npy" \
    --centroids "$dir/stream_c.npy" --backend "$backend" --repeats 3 --json)

STREAMED="$streamed" IN_MEMORY="$in_memory" CPU="$cpu" LIMIT="$limit" python3 -c '
import json, os
s = json.loads(os.environ["STREAMED"])
m = json.loads(os.environ["IN_MEMORY"])
n, wall, compute = s["descriptors"], s["wall_seconds"], s["seconds"]
rss = s["peak_rss_bytes"] / 2**20
total = [r for r in m["rows"] if r["stage"] == "total"]
ref = total[0]["descriptors_per_second"] if total else float("nan")
print("backend %s (%s), limit %s: %d descriptors, %d batches; wall %.1f s, compute %.1f s; "
      "%.3e descriptors/s (wall), %.3e (compute); in memory on %d descriptors: %.3e descriptors/s "
      "(streamed wall = %.2f of it); peak RSS %.0f MiB; CPU: %s"
      % (s["backend"], s.get("adapter") or "no adapter", os.environ["LIMIT"], n, s["batches"],
         wall, compute, n / wall, n / compute, m["descriptors"], ref, (n / wall) / ref, rss,
         os.environ["CPU"]))'
