"""This machine's peak: the GEMM rate in fp32, bf16 and int8 (where the CPU has them) and the memory
bandwidth, so a benchmark can say how close to the hardware an encoder runs (% of peak).

- fp32: the better of numpy's BLAS and OpenVINO's f32 MatMul on a large square GEMM;
- bf16: OpenVINO's MatMul with the bf16 inference hint (AMX or AVX512_BF16 kernels), only on a
  CPU with BF16;
- int8: OpenVINO's MatMul between FakeQuantize'd inputs, which it runs as an int8 GEMM (VNNI /
  AMX-INT8 where present, else AVX2's int8 dot products);
- memory: a large array copy (bytes read + written per second).

A peak is measured once and cached in a JSON file *the caller names* (nothing is written anywhere
else), keyed by the machine's fingerprint: another CPU, core count, memory size, thread count or
runtime version measures afresh. A rate that cannot be measured is ``None`` with the reason.

Example:
    >>> pct_of_peak(achieved_gflops=120.0, peak_gflops=400.0)
    30.0
    >>> pct_of_peak(120.0, None) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UsageError

PEAK_SCHEMA = "slimsam-edge-peak/1"


def pct_of_peak(achieved_gflops: float | None, peak_gflops: float | None) -> float | None:
    """``achieved`` as a percentage of ``peak`` (one decimal), ``None`` when either is unknown."""
    if not achieved_gflops or not peak_gflops:
        return None
    return round(100.0 * achieved_gflops / peak_gflops, 1)


def achieved_gflops(macs: float, seconds: float) -> float | None:
    """GFLOP/s of ``macs`` multiply-accumulates (2 flops each) done in ``seconds``.

    Example:
        >>> achieved_gflops(5e9, 0.1)
        100.0
    """
    if seconds <= 0 or macs <= 0:
        return None
    return round(2.0 * macs / seconds / 1e9, 2)


def fingerprint(info: dict[str, Any], threads: int | None) -> str:
    """A short hash of what makes a peak valid: CPU model and flags, cores, memory, the runtimes'
    and numpy's versions, and the thread count used.

    Example:
        >>> a = fingerprint({"cpu_model": "X", "cpu_flags": {"avx2": True}, "runtimes": {}}, 2)
        >>> a == fingerprint({"cpu_model": "X", "cpu_flags": {"avx2": True}, "runtimes": {}}, 2), a == fingerprint({"cpu_model": "X", "cpu_flags": {"avx2": True}, "runtimes": {}}, 4)
        (True, False)
    """
    key = {k: info.get(k) for k in ("cpu_model", "cpu_flags", "cores_logical", "memory_total_gb", "machine",
                                    "runtimes")}
    key["numpy"] = np.__version__
    key["threads"] = threads
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def best_seconds(fn: Callable[[], object], reps: int) -> float:
    """The fastest of ``reps`` timed calls of ``fn`` after one untimed call (seconds).

    Example:
        >>> best_seconds(lambda: None, 3) >= 0
        True
    """
    fn()  # warm-up: thread pools, first-touch pages, kernel selection
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def numpy_gemm_gflops(n: int = 2048, reps: int = 3) -> float:
    """fp32 GEMM rate of numpy's BLAS on an ``n`` x ``n`` x ``n`` product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    sec = best_seconds(lambda: np.matmul(a, b, out=out), reps)
    return round(2.0 * n**3 / sec / 1e9, 2)


def memory_gbps(mib: int = 256, reps: int = 3) -> float:
    """Copy bandwidth: bytes read plus bytes written per second, GB/s (10^9)."""
    src = np.ones(mib * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    sec = best_seconds(lambda: np.copyto(dst, src), reps)
    return round(2.0 * src.nbytes / sec / 1e9, 2)


def _openvino_gemm(n: int, kind: str, threads: int | None, reps: int) -> float:
    import openvino as ov
    import openvino.opset13 as ops

    a = ops.parameter([n, n], ov.Type.f32, name="a")
    b = ops.parameter([n, n], ov.Type.f32, name="b")
    x, y = a, b
    if kind == "int8":
        lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        ulo, uhi = ops.constant(np.float32(0.0)), ops.constant(np.float32(8.0))
        x = ops.fake_quantize(a, ulo, uhi, ulo, uhi, 256)  # activations: u8
        y = ops.fake_quantize(b, lo, hi, lo, hi, 255)       # weights: symmetric i8
    model = ov.Model([ops.matmul(x, y, False, False)], [a, b], f"peak_{kind}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                              "INFERENCE_PRECISION_HINT": "bf16" if kind == "bf16" else "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    feed = {0: rng.uniform(0, 8, (n, n)).astype(np.float32), 1: rng.uniform(-4, 4, (n, n)).astype(np.float32)}
    sec = best_seconds(lambda: req.infer(feed), reps)
    return round(2.0 * n**3 / sec / 1e9, 2)


def measure_peak(info: dict[str, Any], *, threads: int | None = None, n: int = 2048, reps: int = 3,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the peaks now. ``info`` is :func:`slimsam_edge.devices.detect`'s dict (it decides
    which rates this CPU can have)."""
    tell = progress or (lambda what: None)
    gemm: dict[str, float | None] = {}
    why: dict[str, str] = {}
    tell("fp32 GEMM (numpy)")
    fp32 = [numpy_gemm_gflops(n, reps)]
    try:
        import openvino  # noqa: F401
        have_ov = True
    except ImportError:
        have_ov = False
    for kind in ("fp32", "bf16", "int8"):
        if kind == "bf16" and not info.get("supports_bf16"):
            gemm[kind], why[kind] = None, "this CPU has no BF16 (AVX512_BF16 / AMX-BF16 / Arm BF16)"
            continue
        if not have_ov:
            if kind != "fp32":
                gemm[kind], why[kind] = None, "measured with OpenVINO, which is not installed"
            continue
        tell(f"{kind} GEMM (OpenVINO)")
        try:
            rate = _openvino_gemm(n, kind, threads, reps)
        except Exception as e:  # noqa: BLE001 - a runtime that cannot build this GEMM: say why
            if kind != "fp32":
                gemm[kind], why[kind] = None, f"OpenVINO could not run it ({type(e).__name__}: {e})"
            continue
        if kind == "fp32":
            fp32.append(rate)
        else:
            gemm[kind] = rate
    gemm["fp32"] = max(fp32)
    tell("memory bandwidth")
    return {"schema": PEAK_SCHEMA, "fingerprint": fingerprint(info, threads), "threads": threads,
            "gemm_gflops": gemm, "memory_gbps": memory_gbps(), "gemm_size": n, "why_none": why,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def cached_peak(cache: Path | str | None, info: dict[str, Any], *, threads: int | None = None,
                measure: Callable[..., dict[str, Any]] = measure_peak,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The peak from ``cache`` when its fingerprint is this machine's, else measured (and written
    there atomically when ``cache`` is given). A cache that is not a peak file is refused."""
    from ..fsutil import write_text_atomic

    want = fingerprint(info, threads)
    if cache is not None and Path(cache).exists():
        p = Path(cache)
        if not p.is_file() or p.stat().st_size > 2**20:
            raise UsageError(f"--peak-cache {p} is not a peak file; give a new path or delete it")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise UsageError(f"--peak-cache {p} is not JSON; delete it to measure again") from None
        if not isinstance(data, dict) or data.get("schema") != PEAK_SCHEMA:
            raise UsageError(f"--peak-cache {p} is not a peak file ({PEAK_SCHEMA}); give a new path or delete it")
        if data.get("fingerprint") == want:
            return {**data, "cached": True}
    data = measure(info, threads=threads, progress=progress)
    if cache is not None:
        write_text_atomic(Path(cache), json.dumps(data, indent=2, allow_nan=False))
    return {**data, "cached": False}
