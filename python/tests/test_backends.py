"""Backends: the GPU (lavapipe in CI, never skipped there), auto, the report
of what ran, adapters(), and BackendUnavailable without a Vulkan driver."""

import json
import subprocess

import numpy as np
import pytest

import oracle
import vlad
from conftest import codebook, descriptors_near, require_gpu, run_python, vlad_binary

KINDS = ("discrete", "integrated", "virtual", "software", "other")

C = codebook(k=8, f=16, seed=30)
C32 = C.astype(np.float32).astype(np.float64)
K, F = C.shape

# No Vulkan driver to load, and only Vulkan tried: wgpu finds no adapter.
NO_DRIVER = {"VK_ICD_FILENAMES": "/nonexistent", "VK_DRIVER_FILES": "/nonexistent",
             "WGPU_BACKEND": "vulkan"}


def test_gpu_matches_the_oracle_and_the_cpu():
    require_gpu()
    x = descriptors_near(C, 30 * 40, seed=31).astype(np.float32).reshape(30, 40, F)
    gpu = vlad.Encoder(C, backend="gpu").encode_batch(x)
    assert gpu.report.backend == "gpu"
    assert gpu.report.adapter, "the GPU report names its adapter"
    assert gpu.report.adapter_kind in KINDS
    assert gpu.report.setup_seconds >= 0 and gpu.report.fallback_reason is None
    rows = x.reshape(-1, F).astype(np.float64)
    oracle.check_labels(gpu.labels, rows, C32)
    oracle.check(gpu.vlad, rows, np.arange(0, 1201, 40), C32, gpu.labels, "ssr,l2")
    cpu = vlad.Encoder(C, backend="cpu").encode_batch(x)
    assert np.max(np.abs(gpu.vlad - cpu.vlad)) <= 2e-5


def test_gpu_reads_uint8_and_ragged_images():
    require_gpu()
    rows = np.round(descriptors_near(C, 300, seed=32)).astype(np.uint8)
    offsets = np.array([0, 0, 120, 121, 300], np.uint32)
    out = vlad.Encoder(C, norm="mass,ssr,intra,l2", backend="gpu").encode_batch(rows, offsets)
    assert np.all(out.vlad[0] == 0)
    oracle.check(out.vlad, rows.astype(np.float64), offsets, C32, out.labels, "mass,ssr,intra,l2")


def test_auto_runs_what_adapters_says_and_never_a_software_adapter():
    require_gpu()
    x = descriptors_near(C, 200, seed=33).astype(np.float32)
    out = vlad.Encoder(C, backend="auto").encode_batch(x)
    expected = vlad.adapters()["auto"]
    assert out.report.backend == expected["backend"]
    if out.report.backend == "cpu":
        assert out.report.fallback_reason
        assert out.report.adapter is None and out.report.adapter_kind is None
    else:
        assert out.report.adapter and out.report.adapter_kind != "software"
    if all(a["software"] for a in vlad.adapters()["adapters"]):
        # Lavapipe alone (as in CI): auto runs the CPU and says why.
        assert out.report.backend == "cpu"
        assert "software" in out.report.fallback_reason
    oracle.check(out.vlad, x.astype(np.float64), [0, 200], C32, out.labels, "ssr,l2")


def test_report_of_the_cpu():
    x = descriptors_near(C, 500, seed=34).astype(np.float32).reshape(5, 100, F)
    report = vlad.Encoder(C, backend="cpu").encode_batch(x).report
    assert report.backend == "cpu" and report.adapter is None
    assert report.adapter_kind is None and report.setup_seconds == 0
    assert report.fallback_reason is None
    assert report.seconds > 0
    assert isinstance(report.stages, dict) and report.stages
    assert all(isinstance(s, float) and s >= 0 for s in report.stages.values())
    assert sum(report.stages.values()) <= report.seconds * 1.01 + 1e-4
    assert "cpu" in repr(report)


def test_adapters_are_what_the_command_line_prints():
    found = vlad.adapters()
    assert set(found) == {"adapters", "gpu", "auto"}
    for i, adapter in enumerate(found["adapters"]):
        assert adapter["index"] == i
        assert isinstance(adapter["name"], str) and adapter["name"]
        assert adapter["device_type"] in KINDS
        assert adapter["software"] == (adapter["device_type"] == "software")
        assert set(adapter["features"]) == {
            "subgroups", "timestamps", "shader_f16", "cooperative_matrix"}
        assert adapter["max_binding_bytes"] > 0
    assert found["gpu"]["backend"] in ("gpu", "unavailable")
    assert found["auto"]["backend"] in ("gpu", "cpu")
    cli = subprocess.run([str(vlad_binary()), "adapters", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == found


def test_gpu_without_an_adapter_raises_backend_unavailable():
    """In a fresh interpreter with the Vulkan driver hidden."""
    code = """
import json, numpy as np, vlad
c = np.eye(3, dtype=np.float32)
x = np.ones((2, 4, 3), np.float32)
out = {"adapters": vlad.adapters()}
try:
    vlad.Encoder(c, backend="gpu").encode(x)
    out["gpu"] = "ran"
except vlad.BackendUnavailable as e:
    out["gpu"] = ["BackendUnavailable", isinstance(e, RuntimeError), str(e)]
try:
    vlad.KMeans(2, backend="gpu").fit(x.reshape(-1, 3) + np.arange(8)[:, None])
    out["kmeans"] = "ran"
except vlad.BackendUnavailable as e:
    out["kmeans"] = "BackendUnavailable"
auto = vlad.Encoder(c, backend="auto").encode_batch(x)
out["auto"] = [auto.report.backend, auto.report.fallback_reason]
out["cpu_equal"] = bool(np.array_equal(auto.vlad, vlad.Encoder(c, backend="cpu").encode(x)))
print(json.dumps(out))
"""
    run = run_python(code, env=NO_DRIVER)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["adapters"]["adapters"] == []
    assert out["adapters"]["gpu"]["backend"] == "unavailable"
    assert out["adapters"]["auto"] == {
        "adapter": None, "backend": "cpu", "reason": out["adapters"]["auto"]["reason"]}
    kind, is_runtime_error, message = out["gpu"]
    assert kind == "BackendUnavailable" and is_runtime_error
    assert "no GPU adapter" in message
    assert out["kmeans"] == "BackendUnavailable"
    backend, reason = out["auto"]
    assert backend == "cpu" and "no GPU adapter" in reason
    assert out["cpu_equal"]
