"""bench --profile's readers on recorded profiler output of the sam-mini encoder (ONNX Runtime's
Chrome trace and OpenVINO's per-layer counters, trimmed to a few dozen nodes of each kind)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimsam_edge.runtimes.profiling import GROUPS, classify, group_onnxruntime_trace, group_openvino_counters

DATA = Path(__file__).parent / "data"


def test_onnxruntime_trace_groups():
    events = json.loads((DATA / "ort_profile_sam_mini_encoder.json").read_text())
    g = group_onnxruntime_trace(events)
    assert g["runs"] == 2  # two model_run events in the recording
    kernels = [e for e in events if e["cat"] == "Node" and e["name"].endswith("_kernel_time")]
    assert g["nodes"] == len(kernels)
    # every kernel's microseconds land in exactly one group
    assert sum(g["ms_per_run"].values()) == pytest.approx(sum(e["dur"] for e in kernels) / 2 / 1e3, abs=1e-3)
    assert sum(g["share"].values()) == pytest.approx(1.0, abs=1e-3)
    for group in ("attention", "matmul", "norm", "conv", "other"):
        assert g["ms_per_run"][group] > 0, group
    by_op = {e["args"]["op_name"]: classify(e["name"][:-12], e["args"]["op_name"]) for e in kernels}
    assert by_op["Softmax"] == by_op["Einsum"] == "attention"
    assert by_op["Gemm"] == "matmul" and by_op["LayerNormalization"] == "norm" and by_op["Conv"] == "conv"


def test_openvino_counters_group():
    rows = json.loads((DATA / "openvino_perf_counts_sam_mini_encoder.json").read_text())
    g = group_openvino_counters(rows)
    executed = [r for r in rows if r["status"] == "EXECUTED"]
    assert g["nodes"] == len(executed) < len(rows)
    assert g["total_ms_per_run"] == pytest.approx(sum(r["real_time_us"] for r in executed) / 1e3, abs=1e-3)
    assert g["ms_per_run"]["matmul"] > 0 and g["ms_per_run"]["conv"] > 0 and g["ms_per_run"]["norm"] > 0
    fused_attention = [r for r in executed if r["node_type"] == "Subgraph" and "/attn/MatMul" in r["node_name"]]
    assert all(classify(r["node_name"], r["node_type"]) == "attention" for r in fused_attention)
    assert set(g["ms_per_run"]) == set(GROUPS)


def test_attention_needs_an_attention_scope():
    assert classify("/image_encoder/blocks.3/attn/qkv/Gemm", "Gemm") == "matmul"           # the projection
    assert classify("/mask_decoder/transformer/layers.0/self_attn/MatMul", "MatMul") == "attention"
    assert classify("/mask_decoder/output_upscaling/MatMul", "MatMul") == "matmul"
    assert classify("/image_encoder/blocks.0/norm1/LayerNormalization", "Subgraph") == "norm"
    assert classify("/upscale/Resize", "Resize") == "resize"


def test_empty_profiles_report_zero_share_not_nan():
    g = group_onnxruntime_trace([])
    assert g["runs"] == 0 and g["total_ms_per_run"] == 0 and all(v == 0 for v in g["share"].values())
    json.dumps(g, allow_nan=False)


def _encoder_feed(mini_bundle):
    import numpy as np

    from slimsam_edge.bundle import load_bundle

    size = load_bundle(mini_bundle).manifest.image_size
    return np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)


def test_onnxruntime_runner_profiles_on_a_twin_session(mini_bundle):
    from slimsam_edge.predictor import EdgePredictor

    pred = EdgePredictor.from_bundle(mini_bundle, backend="onnxruntime", threads=1).activate()
    g = pred.encoder.profile({"image": _encoder_feed(mini_bundle)}, runs=2)
    assert g["runs"] == 2 and g["nodes"] > 50
    assert g["ms_per_run"]["attention"] > 0 and g["ms_per_run"]["matmul"] > 0
    assert sum(g["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert pred.encoder.is_active and not list(Path(mini_bundle).rglob("*ort*.json"))  # trace removed


def test_openvino_runner_profiles_per_layer(mini_bundle):
    pytest.importorskip("openvino")
    from slimsam_edge.runtimes import open_runner
    from slimsam_edge.runtimes.base import RunnerOptions

    onnx = next(Path(mini_bundle).rglob("image_encoder.onnx"))
    runner = open_runner(onnx, backend="openvino", options=RunnerOptions(threads=1))
    g = runner.profile({"image": _encoder_feed(mini_bundle)}, runs=2)
    assert g["runs"] == 2 and g["nodes"] > 10 and g["total_ms_per_run"] > 0
    assert g["ms_per_run"]["matmul"] > 0


def test_a_backend_without_a_hook_says_so():
    from slimsam_edge.errors import RunnerError
    from slimsam_edge.runtimes.base import Runner

    class Plain(Runner):
        backend = "plain"

        def _activate(self): ...

        def _specs(self):
            return {}, {}

        def _infer(self, feed):
            return {}

    with pytest.raises(RunnerError, match="no profiler hook"):
        Plain("x").profile({})
