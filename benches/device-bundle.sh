#!/usr/bin/env bash
# Build here everything benches/device-check.sh needs on a bare GPU machine
# that has no Rust toolchain: the release `vlad` binary, every test
# executable and examples/coop_probe, stripped and packed into .device/bundle.tar.xz (paths kept
# relative to the repository root, so the tests' compiled-in paths resolve
# once the check links this checkout's path to the copy there).
#
#   benches/device-bundle.sh        # then carry .device (and .gl) to the machine
#
# The Vulkan loader packages are fetched separately (BENCHMARKS.md, "Running
# the device check"): the GPU image has the NVIDIA driver but may lack
# libvulkan1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cargo build --release --bin vlad --example coop_probe
# Test executables, as cargo reports them (one per test binary).
mapfile -t tests < <(cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
')
[ "${#tests[@]}" -gt 0 ] || { echo "device-bundle: cargo listed no test executables" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/target/release/deps"
cp target/release/vlad "$stage/target/release/vlad"
mkdir -p "$stage/target/release/examples"
cp target/release/examples/coop_probe "$stage/target/release/examples/coop_probe"
: >"$stage/tests.txt"
for t in "${tests[@]}"; do
    rel=${t#"$root"/}
    mkdir -p "$stage/$(dirname "$rel")"
    cp "$t" "$stage/$rel"
    echo "$rel" >>"$stage/tests.txt"
done
strip "$stage/target/release/vlad" "$stage/target/release/examples/coop_probe" "$stage"/target/release/deps/* 2>/dev/null || true
echo "$root" >"$stage/built_at.txt"
git rev-parse HEAD >"$stage/commit.txt" 2>/dev/null || echo unknown >"$stage/commit.txt"
mkdir -p .device
tar -C "$stage" -cJf .device/bundle.tar.xz .
echo "device-bundle: $(wc -l <"$stage/tests.txt") test executables + vlad -> .device/bundle.tar.xz ($(du -h .device/bundle.tar.xz | cut -f1))"
