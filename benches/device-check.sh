#!/usr/bin/env bash
# The one-shot device check: everything worth knowing about a GPU machine
# that is lent now and then, in one command that finishes in minutes.
#
#   benches/device-check.sh            on a bare GPU machine, over a copy of
#                                      this checkout with .device/ (made by
#                                      benches/device-bundle.sh) and .gl/ (the
#                                      Vulkan loader packages) carried to it
#   benches/device-check.sh --local    here, against whatever adapter wgpu
#                                      finds (lavapipe): smaller shapes, built
#                                      from this checkout; keeps the script
#                                      working between GPU machines
#
# It writes into $OUT (or target/device-check/):
#   summary.json   keys: adapters, bench, suite, tests, torch, cross_check,
#                  machine, tests_in_parallel
#   suite-DTYPE.json  `vlad bench --suite --json` (schema vlad-bench/2) per
#                  dtype (u8, f16, f32), gpu and cpu; compare two machines'
#                  with `vlad bench --compare A.json B.json`
#   roofline.svg   the f32 suite's stages on the device's roofline
#   bench-table.md the summary table for BENCHMARKS.md (ceilings, and per
#                  suite shape, dtype and backend the stage medians and
#                  % of ceiling)
#   check.log      what ran, with timings
#   tests.log      every test binary's output (CI=true: no GPU test skips)
#   bench.log      vlad bench's stderr
#   torch.log      benches/torch_vlad.py's output
#
#   coop_probe.txt what the cooperative matrices do (examples/coop_probe.rs)
#
# DEVICE_CHECK_SHAPES, DEVICE_CHECK_SUITE_MAX_N ("u8 f16 f32" caps) and
# DEVICE_CHECK_TESTS narrow it down (see below); DEVICE_CHECK_TORCH=0 skips
# the PyTorch step.
#
# Steps, most wanted first: `vlad adapters --json`; `vlad bench --json` (gpu
# and cpu) at the seed, SIFT-like and N = 10^6 shapes, with and without
# VLAD_GPU_TENSOR_CORES=1; NetVLAD soft assignment (`vlad bench --soft-alpha`,
# gpu and cpu; DEVICE_CHECK_NETVLAD="T:L:F:K:repeats"); the usual
# hand-rolled PyTorch CUDA VLAD on the
# same data, run twice to show whether it is bitwise repeatable, and vlad's
# gpu encoding of that same data checked against it (--verify); then every
# test executable, one test at a time, within the deadline.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

local_mode=0
[ "${1:-}" = "--local" ] && local_mode=1
out=${OUT:-$repo/target/device-check}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)
# Every step is bounded by what is left of DEVICE_CHECK_DEADLINE seconds
# since the start, so the summary is always written.
deadline=${DEVICE_CHECK_DEADLINE:-420}
# min(wanted, time left), at least 1 (`timeout 0` would mean no limit).
left() {
    local l=$((deadline - ($(date +%s) - t0)))
    [ "$l" -lt 1 ] && l=1
    [ "$l" -lt "$1" ] && echo "$l" || echo "$1"
}
say() { echo "[device-check +$(($(date +%s) - t0))s] $*" | tee -a "$out/check.log" >&2; }
: >"$out/check.log"
: >"$out/tests.log"
: >"$out/bench.log"
: >"$out/torch.log"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export CI=true

# --- 1. binaries -------------------------------------------------------------
if [ "$local_mode" = 1 ]; then
    say "local mode: building release binaries here"
    cargo build --release --bin vlad --example coop_probe >>"$out/check.log" 2>&1 || { say "build failed"; exit 1; }
    cargo test --release --no-run --message-format=json 2>>"$out/check.log" |
        python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
' >"$work/tests.txt"
    # lavapipe emulates the GPU on the CPU: keep the shapes small.
    shapes="seed:256:128:64:16:5 sift:200:500:128:64:3"
    netvlad="20:1200:512:64:3"
    torch_shapes="256,128,64,16"
    save_shape="256,128,64,16"
    # The suite's seed shape only (lavapipe), each dtype.
    suite_max_n="40000 40000 40000"
else
    # Vulkan loader: the GPU image has the NVIDIA driver, maybe not libvulkan.
    if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        say "unpacked the carried Vulkan loader packages"
    fi
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] &&
        ! ls /etc/vulkan/icd.d/nvidia* /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
        export VK_DRIVER_FILES=$icd
        export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
        say "VK_DRIVER_FILES=$icd"
    fi
    [ -f .device/bundle.tar.xz ] || { say "no .device/bundle.tar.xz: run benches/device-bundle.sh here and carry .device"; exit 1; }
    mkdir -p "$work/bundle"
    tar -xJf .device/bundle.tar.xz -C "$work/bundle"
    mkdir -p target/release
    cp -a "$work/bundle/target/." target/
    built_at=$(cat "$work/bundle/built_at.txt")
    # The tests have the build checkout's paths compiled in (the vlad binary,
    # the shaders folder): make that path lead here.
    if [ "$built_at" != "$repo" ] && [ ! -e "$built_at" ]; then
        mkdir -p "$(dirname "$built_at")"
        ln -s "$repo" "$built_at"
    fi
    sed "s|^|$repo/|" "$work/bundle/tests.txt" >"$work/tests.txt"
    say "bundle of commit $(cat "$work/bundle/commit.txt"), $(wc -l <"$work/tests.txt") test executables"
    shapes="seed:256:128:64:16:9 sift:200:500:128:64:9 1m:2000:500:128:256:7"
    netvlad="200:1200:512:64:5"
    torch_shapes="256,128,64,16 200,500,128,64 2000,500,128,256"
    # The cross-check runs the f64 reference too (--verify): the SIFT-like shape.
    save_shape="200,500,128,64"
    # `vlad bench --suite` caps per dtype (u8 f16 f32): the whole suite to
    # N = 10^7 in f32 and u8; f16 (widened on the host until f16 uploads
    # land) to 10^6.
    suite_max_n="10000000 1000000 10000000"
fi
vlad=$repo/target/release/vlad
# Overrides, to try the script quickly: DEVICE_CHECK_SHAPES="label:T:L:F:K:repeats ..."
# and DEVICE_CHECK_TESTS (an extended regex of test binary names to run).
shapes=${DEVICE_CHECK_SHAPES:-$shapes}
if [ -n "${DEVICE_CHECK_TESTS:-}" ]; then
    grep -E "$DEVICE_CHECK_TESTS" "$work/tests.txt" >"$work/t.txt" || true
    mv "$work/t.txt" "$work/tests.txt"
fi

{
    echo "host: $(uname -a)"
    lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)' || true
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "nvidia-smi: none"
} >"$work/machine.txt" 2>&1
cat "$work/machine.txt" >>"$out/check.log"

# The GPU tests first: they are what this machine is for.
{ grep -E '/(tensor_cores|gpu)-[0-9a-f]+$' "$work/tests.txt"; grep -vE '/(tensor_cores|gpu)-[0-9a-f]+$' "$work/tests.txt"; } >"$work/t.txt" || true
mv "$work/t.txt" "$work/tests.txt"

# --- 2. adapters -------------------------------------------------------------
if timeout 60 "$vlad" adapters --json >"$work/adapters.json" 2>>"$out/check.log"; then
    say "vlad adapters: ok"
else
    say "vlad adapters failed or is not built in this version"
    echo null >"$work/adapters.json"
fi

# --- 2b. what the adapter's cooperative matrices do (examples/coop_probe.rs) --
if [ -x "$repo/target/release/examples/coop_probe" ]; then
    if VLAD_GPU_TENSOR_CORES=1 timeout "$(left 60)" "$repo/target/release/examples/coop_probe" >"$out/coop_probe.txt" 2>&1; then
        say "coop_probe: ok ($(grep -c 'as if\|0 of 1024 differ' "$out/coop_probe.txt") findings)"
    else
        say "coop_probe failed (rc $?)"
    fi
fi

# --- 3. vlad bench -------------------------------------------------------------
: >"$work/bench.jsonl"
for spec in $shapes; do
    IFS=: read -r label t l f k repeats <<<"$spec"
    for tc in 0 1; do
        say "bench $label (T=$t L=$l F=$f K=$k, tensor cores $tc)"
        if [ "$tc" = 1 ]; then backends="--backend gpu"; else backends="--backend gpu --backend cpu"; fi
        # shellcheck disable=SC2086
        if VLAD_GPU_TENSOR_CORES=$tc timeout "$(left 60)" "$vlad" bench --images "$t" --per-image "$l" --dim "$f" \
            --clusters "$k" $backends --repeats "$repeats" --json >"$work/b.json" 2>>"$out/bench.log"; then
            python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({"shape": sys.argv[2], "tensor_cores": sys.argv[3] == "1", "result": d}))' \
                "$work/b.json" "$label" "$tc" >>"$work/bench.jsonl"
        else
            say "bench $label failed (rc $?)"
            echo "{\"shape\": \"$label\", \"tensor_cores\": $([ "$tc" = 1 ] && echo true || echo false), \"result\": null}" >>"$work/bench.jsonl"
        fi
    done
done

# --- 3a. vlad bench --suite: ceilings and the fixed shapes, per dtype ----------
# SPEC §16: the ceilings (FMA f32/f16, device memory, host<->device, one
# empty dispatch) and the suite's seeded shapes, in the versioned schema.
suite_max_n=${DEVICE_CHECK_SUITE_MAX_N:-$suite_max_n}
read -r cap_u8 cap_f16 cap_f32 <<<"$suite_max_n"
for spec in "u8:$cap_u8" "f16:$cap_f16" "f32:$cap_f32"; do
    IFS=: read -r dtype cap <<<"$spec"
    plot=()
    [ "$dtype" = f32 ] && plot=(--plot "$out/roofline.svg")
    say "bench --suite --dtype $dtype --max-n $cap"
    if timeout "$(left 150)" "$vlad" bench --suite --max-n "$cap" --dtype "$dtype" --backend gpu --backend cpu \
        "${plot[@]}" --json >"$out/suite-$dtype.json" 2>>"$out/bench.log"; then
        say "bench --suite --dtype $dtype: ok"
    else
        say "bench --suite --dtype $dtype failed (rc $?)"
        echo null >"$out/suite-$dtype.json"
    fi
done
python3 - "$out" >"$out/bench-table.md" 2>>"$out/check.log" <<'EOF'
import json, sys
out = sys.argv[1]
def fmt(s):
    return "-" if s is None else (f"{s*1e3:.3f} ms" if s >= 1e-4 else f"{s*1e6:.1f} us")
def num(x, d=1):
    return "-" if x is None else f"{x:.{d}f}"
print("| dtype | run | backend | stage | median | GB/s | GFLOP/s | % of ceiling |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
ceilings = {}
for dtype in ["u8", "f16", "f32"]:
    try:
        doc = json.load(open(f"{out}/suite-{dtype}.json"))
    except Exception:
        doc = None
    if not doc:
        print(f"| {dtype} | (failed) | | | | | | |")
        continue
    host = doc["host"]["cpu"]
    for run in doc["runs"]:
        for c in run["ceilings"]:
            ceilings.setdefault((c["backend"], c.get("adapter")), (c, host))
        for r in run["rows"]:
            p = r["percent_of_ceiling"]
            bound = "-" if p is None else f"{p:.1f} % {r['ceiling']}"
            emu = " (emulation)" if r.get("emulation") else ""
            print(f"| {dtype} | {run['label']} | {r['backend']}{emu} | {r['stage']} | {fmt(r['median_seconds'])} "
                  f"| {num(r['gigabytes_per_second'], 2)} | {num(r['gigaflops_per_second'])} | {bound} |")
print()
print("| backend | adapter (kind, driver) / host CPU | FMA f32 GFLOP/s | FMA f16 GFLOP/s | memory GB/s | upload GB/s | read-back GB/s | empty dispatch |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (backend, adapter), (c, host) in ceilings.items():
    who = f"{adapter} ({c['adapter_kind']}, {c['driver']})" if adapter else f"{host} ({c.get('fma_path')})"
    if c.get("emulation"):
        who += ", software adapter: CPU emulation, not GPU speed"
    print(f"| {backend} | {who} | {num(c['fma_gflops'])} | {num(c['fma_f16_gflops'])} | {num(c['memory_gbps'])} "
          f"| {num(c['upload_gbps'], 2)} | {num(c['readback_gbps'], 2)} | {fmt(c['dispatch_seconds'])} |")
EOF
say "bench-table.md: $(wc -l <"$out/bench-table.md") lines"

# --- 3b. vlad bench, NetVLAD soft assignment (SPEC §10) -------------------------
# The soft path's own stages (soft logits, per-image aggregation) on gpu and
# cpu, at a reduced NetVLAD shape (L = 1200, F = 512, K = 64).
netvlad=${DEVICE_CHECK_NETVLAD:-$netvlad}
IFS=: read -r t l f k repeats <<<"$netvlad"
say "bench netvlad soft-alpha (T=$t L=$l F=$f K=$k)"
if timeout "$(left 90)" "$vlad" bench --images "$t" --per-image "$l" --dim "$f" --clusters "$k" \
    --soft-alpha 1 --norm intra,l2 --backend gpu --backend cpu --repeats "$repeats" --json >"$work/b.json" 2>>"$out/bench.log"; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({"shape": "netvlad", "tensor_cores": False, "result": d}))' \
        "$work/b.json" >>"$work/bench.jsonl"
else
    say "bench netvlad failed (rc $?)"
    echo '{"shape": "netvlad", "tensor_cores": false, "result": null}' >>"$work/bench.jsonl"
fi

# --- 4. PyTorch, the usual hand-rolled CUDA VLAD, and a cross-check ------------
echo null >"$work/torch.json"
echo null >"$work/cross.json"
if [ "${DEVICE_CHECK_TORCH:-1}" = 0 ]; then
    say "DEVICE_CHECK_TORCH=0: PyTorch comparison skipped"
elif python3 -c 'import torch, numpy' >/dev/null 2>&1; then
    say "torch_vlad.py"
    # shellcheck disable=SC2086
    timeout "$(left 150)" python3 benches/torch_vlad.py --shapes $torch_shapes --save "$work/data" --save-shape "$save_shape" \
        --json "$work/torch.json" >>"$out/torch.log" 2>&1 || say "torch_vlad.py failed (rc $?)"
    # vlad on the very same data, checked against the torch result.
    if [ -f "$work/data/d.npy" ]; then
        if timeout "$(left 60)" "$vlad" encode --descriptors "$work/data/d.npy" --centroids "$work/data/c.npy" \
            --out "$work/data/v.npy" --backend gpu --verify --json >"$work/enc.json" 2>>"$out/torch.log"; then
            python3 - "$work" >"$work/cross.json" 2>>"$out/torch.log" <<'EOF'
import json, sys
import numpy as np
w = sys.argv[1]
v = np.load(f"{w}/data/v.npy")
t = np.load(f"{w}/data/t.npy")
enc = json.load(open(f"{w}/enc.json"))
print(json.dumps({
    "shape": list(np.load(f"{w}/data/d.npy", mmap_mode="r").shape),
    "vlad_gpu_vs_torch_max_abs_diff": float(np.abs(v - t).max()),
    "vlad_encode": enc,
}))
EOF
        else
            say "vlad encode on the torch data failed"
        fi
    fi
    # NetVLAD pooling the PyTorch way at step 3b's shape, on this machine's
    # CPU (all cores) and GPU, beside vlad's own figures from step 3b.
    devs="cpu cuda"; [ "$local_mode" = 1 ] && devs=cpu
    for dev in $devs; do
        say "netvlad_torch.py on $dev ($t images)"
        echo "===== netvlad_torch.py $t 3 0 $dev" >>"$out/torch.log"
        timeout "$(left 90)" python3 benches/netvlad_torch.py "$t" 3 0 "$dev" >>"$out/torch.log" 2>&1 ||
            say "netvlad_torch.py on $dev failed (rc $?)"
    done
else
    say "no torch here: PyTorch comparison skipped"
fi

# --- 5. tests ----------------------------------------------------------------
# Last, under a deadline, one test at a time (--test-threads=1: the harness
# names each test before it runs, so a hang names its test), each binary
# bounded by what is left of DEVICE_CHECK_DEADLINE seconds since the start.
: >"$work/tests.tsv"
while read -r exe; do
    [ -n "$exe" ] || continue
    name=$(basename "$exe" | sed 's/-[0-9a-f]\{16\}$//')
    echo "===== $name" >>"$out/tests.log"
    left=$((deadline - ($(date +%s) - t0)))
    if [ "$left" -lt 5 ]; then
        say "tests $name: not run, past the deadline"
        printf '%s\t%s\t0\t0\t0\n' "$name" "skipped" >>"$work/tests.tsv"
        continue
    fi
    s=$(date +%s%N)
    timeout "$left" "$exe" --test-threads=1 >"$work/one.log" 2>&1
    rc=$?
    e=$(date +%s%N)
    cat "$work/one.log" >>"$out/tests.log"
    passed=$(grep -o '[0-9]* passed' "$work/one.log" | awk '{s += $1} END {print s + 0}')
    failed=$(grep -o '[0-9]* failed' "$work/one.log" | awk '{s += $1} END {print s + 0}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$passed" "$failed" "$(((e - s) / 1000000))" >>"$work/tests.tsv"
    say "tests $name: rc $rc, $passed passed, $failed failed"
done <"$work/tests.txt"

# --- 5b. the GPU tests in parallel ------------------------------------------
# Once more with the harness's default parallelism (every test its own
# device): on NVIDIA this stalled inside the driver until devices were
# opened one at a time and OpenGL left out (BENCHMARKS.md).
echo null >"$work/parallel.json"
gpu_exe=$(grep -E '/gpu-[0-9a-f]+$' "$work/tests.txt" | head -1)
if [ -n "$gpu_exe" ] && [ $((deadline - ($(date +%s) - t0))) -ge 30 ]; then
    s=$(date +%s)
    timeout "$(left 60)" "$gpu_exe" >"$work/par.log" 2>&1
    rc=$?
    ok=$(grep -c ' ok$' "$work/par.log")
    echo "{\"exit\": $rc, \"passed\": $ok, \"seconds\": $(($(date +%s) - s))}" >"$work/parallel.json"
    say "gpu tests in parallel: rc $rc, $ok passed in $(($(date +%s) - s)) s"
fi

# --- 6. summary --------------------------------------------------------------
python3 - "$work" "$out" <<'EOF'
import json, sys
w, out = sys.argv[1], sys.argv[2]
def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except Exception as e:  # a step that failed left nothing usable
        return {"error": str(e)}
tests = []
for line in open(f"{w}/tests.tsv"):
    name, rc, passed, failed, ms = line.rstrip("\n").split("\t")
    tests.append({"binary": name, "exit": int(rc) if rc.isdigit() else rc,
                  "passed": int(passed), "failed": int(failed),
                  "seconds": int(ms or 0) / 1e3})
bench = [json.loads(l) for l in open(f"{w}/bench.jsonl") if l.strip()]
summary = {
    "machine": open(f"{w}/machine.txt").read(),
    "adapters": load(f"{w}/adapters.json"),
    "tests": {"binaries": tests,
              "passed": sum(t["passed"] for t in tests),
              "failed": sum(t["failed"] for t in tests),
              "all_ok": all(t["exit"] == 0 for t in tests)},
    "bench": bench,
    "suite": {d: load(f"{out}/suite-{d}.json") for d in ("u8", "f16", "f32")},
    "torch": load(f"{w}/torch.json"),
    "cross_check": load(f"{w}/cross.json"),
    "tests_in_parallel": load(f"{w}/parallel.json"),
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
t = summary["tests"]
print(f"tests: {t['passed']} passed, {t['failed']} failed, all binaries ok: {t['all_ok']}")
for b in bench:
    r = b["result"] or {}
    for row in r.get("rows", []):
        if row.get("stage") == "total":
            print(f"bench {b['shape']:5} tc={int(b['tensor_cores'])} {row.get('backend'):4} "
                  f"{row.get('median_seconds', 0)*1e3:9.3f} ms  {row.get('adapter')}")
EOF
say "done in $(($(date +%s) - t0)) s; summary in $out/summary.json"
