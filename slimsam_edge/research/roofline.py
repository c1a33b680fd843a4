"""A compute floor for exact global attention on this machine (issue 5, route 7a).

Any exact formulation of a global-attention block must still do the two score matmuls
(``q @ k^T`` and ``p @ v``: ``2 * heads * N^2 * d`` multiply-adds each) and one ``exp`` per score
(``heads * N^2``), however it is laid out or fused. :func:`measure_machine` measures the rates the
best library kernels sustain here for both -- a large square fp32 GEMM, and torch's vectorised
``exp`` over a cache-resident buffer -- and :func:`attention_floor` turns them into the least time
one block can take even as a single fused kernel that never writes its scores to memory (which
neither ONNX Runtime nor OpenVINO has for this attention on an AVX2 CPU). With the time of the rest of the encoder (the all-windowed encoder, whose windowed
attention costs little), :func:`encoder_floor_ratio` bounds the best ratio any exact route can reach
against the plain encoder. Memory traffic, the bias, the max and the sum of the softmax are left
out, so the true floor is higher.

Example:
    >>> f = attention_floor(heads=12, tokens=4096, head_dim=14, gemm_gflops=100.0, exp_per_s=1e9)
    >>> round(f["matmul_ms"], 1), round(f["exp_ms"], 1), round(f["floor_ms"], 1)
    (112.7, 201.3, 314.1)
    >>> encoder_floor_ratio(rest_ms=600.0, floor_block_ms=100.0, blocks=4, plain_ms=2000.0)
    0.5
"""

from __future__ import annotations

from typing import Any

from ..bench.peak import best_seconds


def attention_floor(*, heads: int, tokens: int, head_dim: int, gemm_gflops: float, exp_per_s: float) -> dict[str, float]:
    """Least time (ms) of one exact global-attention block at the given rates.

    Returns ``flops`` (of the two matmuls), ``exps``, ``matmul_ms``, ``exp_ms`` and ``floor_ms``.
    """
    if min(heads, tokens, head_dim) < 1 or gemm_gflops <= 0 or exp_per_s <= 0:
        raise ValueError("heads, tokens and head_dim must be >= 1 and the rates > 0")
    scores = heads * tokens * tokens
    flops = 2 * 2 * scores * head_dim  # two matmuls, a multiply and an add per term
    matmul_ms = flops / (gemm_gflops * 1e9) * 1e3
    exp_ms = scores / exp_per_s * 1e3
    return {"flops": float(flops), "exps": float(scores), "matmul_ms": matmul_ms, "exp_ms": exp_ms,
            "floor_ms": matmul_ms + exp_ms}


def encoder_floor_ratio(*, rest_ms: float, floor_block_ms: float, blocks: int, plain_ms: float) -> float:
    """Best ratio to ``plain_ms`` of an encoder whose ``blocks`` global blocks run at the floor."""
    if plain_ms <= 0:
        raise ValueError("plain_ms must be > 0")
    return round((rest_ms + blocks * floor_block_ms) / plain_ms, 3)


def encoder_ms(report: dict[str, Any], needle: str) -> tuple[float, str] | None:
    """p50 encoder ms and ``runtime/precision`` of the OpenVINO bf16 row (else fp32) of the model
    whose name contains ``needle`` in a precision report (``docs/results/precision.json``)."""
    from .precision_report import baseline_encoder, find_model

    model = find_model(report, needle)
    return baseline_encoder(model["rows"]) if model else None


def _window_shrink(grid: int, window: int) -> float:
    """How many times fewer scores windowed attention computes than global attention on ``grid``."""
    windows = (-(-grid // window)) ** 2
    return grid**4 / (windows * window**4)


def exact_route_bound(report: dict[str, Any], spec: Any, gidx: int, rates: dict[str, Any], *,
                      source: str = "precision.json", plain_block_ms: dict[str, float] | None = None
                      ) -> dict[str, Any]:
    """The floor of global block ``gidx`` of encoder ``spec`` at ``rates`` (:func:`measure_machine`)
    and, where ``report`` has the plain and all-windowed SlimSAM-77 encoders, the best ratio an
    exact route can reach; ``plain_block_ms`` (runtime -> measured ms of the plain block) is set
    against the floor. ``lines`` holds the markdown section.

    Example:
        >>> from types import SimpleNamespace
        >>> spec = SimpleNamespace(num_heads=12, grid=64, window_size=14, head_dims=lambda: [14] * 12,
        ...                        global_attn_indexes=(2, 5, 8, 11))
        >>> rows = lambda ms: [{"backend": "openvino", "precision": "fp32", "encoder_p50_ms": ms}]
        >>> report = {"models": [{"name": "SlimSAM-77 architecture @1024", "rows": rows(2000.0)},
        ...                      {"name": "SlimSAM-77 all-windowed @1024", "rows": rows(600.0)}]}
        >>> b = exact_route_bound(report, spec, 2, {"threads": 2, "gemm_size": 2048, "gemm_gflops": 100.0, "exp_per_s": 1e9})
        >>> round(b["floor_ms"]), b["floor_ratio"], b["baseline"]
        (314, 0.928, 'openvino/fp32')
    """
    f = attention_floor(heads=spec.num_heads, tokens=spec.grid**2, head_dim=spec.head_dims()[gidx],
                        gemm_gflops=rates["gemm_gflops"], exp_per_s=rates["exp_per_s"])
    lines = ["## Compute floor of an exact global block on this machine", "",
             f"Measured here ({rates['threads']} threads, torch): fp32 GEMM {rates['gemm_gflops']:.1f} GFLOP/s "
             f"({rates['gemm_size']}^3); exp {rates['exp_per_s'] / 1e9:.2f} G/s (one core on an L2-resident "
             f"buffer, times {rates['threads']}). These are the best library kernels here, not the silicon's limit. "
             f"An exact block must do {f['flops'] / 1e9:.2f} GFLOP of score matmuls and "
             f"{f['exps'] / 1e6:.0f} M exps: at least {f['matmul_ms']:.0f} + {f['exp_ms']:.0f} = "
             f"**{f['floor_ms']:.0f} ms**, before any memory traffic, bias, max or sum."]
    if plain_block_ms:
        lines[-1] += " The plain block measured above: " + ", ".join(
            f"{rt} {ms:.0f} ms ({ms / f['floor_ms']:.2f}x the floor)" for rt, ms in sorted(plain_block_ms.items())) + "."
    out: dict[str, Any] = {"rates": rates, **f, "plain_block_ms": plain_block_ms or {}}
    from .precision_report import PLAIN_P77, WINDOWED_P77

    plain, windowed = encoder_ms(report, PLAIN_P77), encoder_ms(report, WINDOWED_P77)
    if plain and windowed:
        blocks = len(spec.global_attn_indexes)
        ratio = encoder_floor_ratio(rest_ms=windowed[0], floor_block_ms=f["floor_ms"], blocks=blocks,
                                    plain_ms=plain[0])
        out.update(plain_ms=plain[0], rest_ms=windowed[0], baseline=plain[1], floor_ratio=ratio)
        lines += ["", f"Whole encoder ({source}): plain {plain[1]} {plain[0]:.0f} ms; the rest of the "
                  f"encoder (all-windowed, {windowed[1]}) {windowed[0]:.0f} ms. With its {blocks} global blocks "
                  f"at the floor, an exact route could reach at best ({windowed[0]:.0f} + {blocks} x "
                  f"{f['floor_ms']:.0f}) / {plain[0]:.0f} = **{ratio}x** of plain (a little less: the "
                  f"all-windowed time still holds those blocks' windowed attention, whose score tensors are "
                  f"{_window_shrink(spec.grid, spec.window_size):.0f}x smaller)."]
    else:
        lines += ["", f"No plain and all-windowed SlimSAM-77 rows in {source}: no whole-encoder bound."]
    out["lines"] = lines
    return out


def measure_machine(threads: int = 2, gemm_size: int = 2048, exp_elements: int = 1 << 16, reps: int = 5) -> dict[str, Any]:
    """This machine's fp32 GEMM rate (GFLOP/s) and cache-resident ``exp`` rate (per second), in torch.

    The GEMM is ``gemm_size`` square on ``threads`` threads. ``exp`` runs on one thread over
    ``exp_elements`` float32 values (256 KiB by default, inside one core's L2), so it is
    compute-bound and free of threading overhead; the rate is scaled by ``threads`` (every core
    has its own L2 and exp units). The best of ``reps`` runs counts.

    Example:
        >>> m = measure_machine(threads=1, gemm_size=64, exp_elements=1024, reps=1)
        >>> m["gemm_gflops"] > 0 and m["exp_per_s"] > 0
        True
    """
    import torch

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        g = torch.Generator().manual_seed(0)
        a = torch.randn(gemm_size, gemm_size, generator=g)
        b = torch.randn(gemm_size, gemm_size, generator=g)
        gemm_s = best_seconds(lambda: torch.mm(a, b), reps)
        torch.set_num_threads(1)
        x = torch.rand(exp_elements, generator=g)
        out = torch.empty_like(x)
        inner = 200

        def exps():
            for _ in range(inner):
                torch.exp(x, out=out)

        exp_s = best_seconds(exps, reps)
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "gemm_size": gemm_size, "gemm_gflops": 2 * gemm_size**3 / gemm_s / 1e9,
            "exp_elements": exp_elements, "exp_per_s": threads * exp_elements * inner / exp_s}
