"""Where the time goes (``bench --profile``): runtime profiler output grouped into attention /
matmul / norm / conv / resize / other, per graph; each runner's ``profile()`` returns it.

Two readers, one classifier:

- ONNX Runtime's profiler writes a Chrome trace (``SessionOptions.enable_profiling``): one
  ``Node`` event per kernel run, named ``<node>_kernel_time``, its op in ``args.op_name``, its
  duration in microseconds; one ``model_run`` session event per inference.
- OpenVINO's per-layer counters (``PERF_COUNT`` on, ``InferRequest.get_profiling_info()``): one
  entry per executed node of the *compiled* graph, whose fused nodes (``Subgraph``) keep the name
  of an ONNX node they absorbed.

:func:`classify` decides a node's group from its op type and, for fused or generic ops, from its
name: SAM's exporters name attention nodes ``.../attn/MatMul``, ``.../attn/Softmax``.

Example:
    >>> classify("/image_encoder/blocks.0/attn/MatMul_1", "Subgraph")
    'attention'
    >>> classify("/image_encoder/blocks.0/mlp/lin1/Gemm", "FullyConnected")
    'matmul'
    >>> [classify(n, op) for n, op in [("x", "MVN"), ("/neck/neck.1/ReduceMean", "ReduceMean"),
    ...                                ("y", "Convolution"), ("z", "Interpolate"), ("w", "Add")]]
    ['norm', 'norm', 'conv', 'resize', 'other']
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

GROUPS = ("attention", "matmul", "norm", "conv", "resize", "other")

ATTENTION_OPS = frozenset({"Softmax", "SoftMax", "Einsum", "ScaledDotProductAttention", "MultiHeadAttention",
                           "Attention", "GroupQueryAttention", "SDPA"})
MATMUL_OPS = frozenset({"MatMul", "Gemm", "FullyConnected", "FullyConnectedCompressed", "MatMulInteger",
                        "QLinearMatMul", "FusedMatMul", "DynamicQuantizeMatMul", "MatMulNBits", "FusedGemm"})
NORM_OPS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization", "MVN",
                      "RMS", "BatchNormalization", "GroupNormalization", "InstanceNormalization", "NormalizeL2",
                      "ReduceMean"})
CONV_OPS = frozenset({"Conv", "Convolution", "ConvTranspose", "Deconvolution", "GroupConvolution",
                      "QLinearConv", "ConvInteger", "FusedConv", "NchwcConv"})
RESIZE_OPS = frozenset({"Resize", "Interpolate", "Upsample"})

_ATTN_SCOPE = re.compile(r"(^|[/._])(self_|cross_)?attn|attention", re.IGNORECASE)
_ATTN_LEAF = re.compile(r"^(MatMul|Softmax|Einsum|FusedMatMul)(_\d+)?$", re.IGNORECASE)


def classify(name: str, op_type: str) -> str:
    """The group of one profiled node (one of :data:`GROUPS`)."""
    parts = name.split("/")
    leaf = parts[-1]
    if op_type in ATTENTION_OPS:
        return "attention"
    if _ATTN_LEAF.match(leaf) and any(_ATTN_SCOPE.search(p) for p in parts[:-1]):
        return "attention"
    if op_type in MATMUL_OPS:
        return "matmul"
    if op_type in NORM_OPS or "norm" in leaf.lower() or any("norm" in p.lower() for p in parts[-2:-1]):
        return "norm"
    if op_type in CONV_OPS:
        return "conv"
    if op_type in RESIZE_OPS:
        return "resize"
    return "other"


def _finish(totals: dict[str, float], runs: int, nodes: int) -> dict[str, Any]:
    total = sum(totals.values())
    per_run = {g: round(totals.get(g, 0.0) / max(runs, 1) / 1e3, 4) for g in GROUPS}
    return {"ms_per_run": per_run, "share": {g: round(totals.get(g, 0.0) / total, 4) if total else 0.0
                                             for g in GROUPS},
            "runs": runs, "nodes": nodes, "total_ms_per_run": round(total / max(runs, 1) / 1e3, 4)}


def group_onnxruntime_trace(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Group an ONNX Runtime profile (the JSON list ``end_profiling()`` wrote): milliseconds per
    run and share of the kernel time, per group.

    Example:
        >>> trace = [{"cat": "Session", "name": "model_run", "dur": 900},
        ...          {"cat": "Node", "name": "/b/attn/Softmax_kernel_time", "dur": 300, "args": {"op_name": "Softmax"}},
        ...          {"cat": "Node", "name": "/b/mlp/Gemm_kernel_time", "dur": 500, "args": {"op_name": "Gemm"}},
        ...          {"cat": "Node", "name": "/b/Add_fence_before", "dur": 0, "args": {"op_name": "Add"}}]
        >>> g = group_onnxruntime_trace(trace)
        >>> g["ms_per_run"]["attention"], g["ms_per_run"]["matmul"], g["runs"], g["nodes"]
        (0.3, 0.5, 1, 2)
    """
    totals: dict[str, float] = {}
    runs = nodes = 0
    for ev in events:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            runs += 1
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        op = str((ev.get("args") or {}).get("op_name", ""))
        group = classify(str(ev["name"])[: -len("_kernel_time")], op)
        totals[group] = totals.get(group, 0.0) + float(ev.get("dur", 0))
        nodes += 1
    return _finish(totals, runs, nodes)


def _field(info: Any, key: str) -> Any:
    return info.get(key) if isinstance(info, Mapping) else getattr(info, key, None)


def group_openvino_counters(infos: Iterable[Any], runs: int = 1) -> dict[str, Any]:
    """Group OpenVINO per-layer counters (``ProfilingInfo`` objects, or dicts with ``node_name``,
    ``node_type``, ``status`` and ``real_time_us``) summed over ``runs`` inferences.

    Example:
        >>> rows = [{"node_name": "/b/attn/MatMul", "node_type": "Subgraph", "status": "EXECUTED", "real_time_us": 40},
        ...         {"node_name": "/b/mlp/lin1/Gemm", "node_type": "FullyConnected", "status": "EXECUTED", "real_time_us": 60},
        ...         {"node_name": "/b/Reshape", "node_type": "Reshape", "status": "NOT_RUN", "real_time_us": 0}]
        >>> g = group_openvino_counters(rows)
        >>> g["share"]["attention"], g["share"]["matmul"], g["nodes"]
        (0.4, 0.6, 2)
    """
    totals: dict[str, float] = {}
    nodes = 0
    for info in infos:
        status = str(_field(info, "status") or "")
        if not status.endswith("EXECUTED"):
            continue
        real = _field(info, "real_time_us")
        if real is None:
            rt = _field(info, "real_time")  # a datetime.timedelta on ProfilingInfo
            real = rt.total_seconds() * 1e6 if rt is not None else 0.0
        group = classify(str(_field(info, "node_name") or ""), str(_field(info, "node_type") or ""))
        totals[group] = totals.get(group, 0.0) + float(real)
        nodes += 1
    return _finish(totals, runs, nodes)
