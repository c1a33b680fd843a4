"""Latency of MobileSAM's image encoder architecture (TinyViT-5M, random weights) on this CPU.

Issue 5 compares our fast encoder with MobileSAM's "on the same machine". No MobileSAM weights are
available, so :func:`slimsam_edge.models.peers.tinyvit.build_mobilesam_encoder` gives the architecture with
random weights: the numbers are latency only. The script exports it to ONNX (opset 17, TorchScript
exporter), converts it to OpenVINO, quantizes it to INT8 with NNCF (the project's settings,
:func:`slimsam_edge.runtimes.openvino.quantize.quantize_int8_nncf`, on random normalized images), and
times the encoder: OpenVINO fp32 (INFERENCE_PRECISION_HINT f32), OpenVINO int8, ONNX Runtime fp32;
p50 over ``--runs`` after one warmup, ``--threads`` intra-op threads.

Example:
    nice -n 10 .venv/bin/python -m slimsam_edge.research.mobilesam_reference --json runs/mobilesam_reference.json
    (or its entry script, scripts/mobilesam_reference.py)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32).reshape(1, 3, 1, 1)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32).reshape(1, 3, 1, 1)
INPUT, OUTPUT = "image", "image_embeddings"


def random_images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` random uint8 images normalized like SAM's input: 1 x 3 x size x size float32."""
    rng = np.random.default_rng(seed)
    return [((rng.integers(0, 256, (1, 3, size, size)).astype(np.float32) - PIXEL_MEAN) / PIXEL_STD)
            for _ in range(n)]


def export(size: int, seed: int, out: Path) -> tuple[Path, int, np.ndarray, np.ndarray]:
    """Export the encoder to ONNX; returns the path, its parameter count, an input and torch's output."""
    import torch

    from ..models.peers.tinyvit import build_mobilesam_encoder, count_parameters

    enc = build_mobilesam_encoder(seed=seed, img_size=size)
    x = random_images(1, size, seed + 1000)[0]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ref = enc(torch.from_numpy(x)).numpy()
        torch.onnx.export(enc, (torch.from_numpy(x),), str(out), input_names=[INPUT], output_names=[OUTPUT],
                          opset_version=17, dynamo=False, do_constant_folding=True)
    return out, count_parameters(enc), x, ref


def time_fn(fn, runs: int) -> tuple[list[float], np.ndarray]:
    """One untimed warmup, then ``runs`` timed calls; returns the times (ms) and the warmup's output."""
    first = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, first


def bench_openvino(path: Path, x: np.ndarray, threads: int, runs: int, *, f32_hint: bool):
    """Compile ``path`` on CPU (LATENCY hint, ``threads`` threads) and time it."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if f32_hint:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return time_fn(lambda: np.array(request.infer({0: x})[0]), runs)


def bench_onnxruntime(path: Path, x: np.ndarray, threads: int, runs: int):
    """ONNX Runtime CPU session (all graph optimizations, ``threads`` intra-op threads), timed."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return time_fn(lambda: sess.run(None, {INPUT: x})[0], runs)


def render(result: dict) -> str:
    """Markdown table of ``result["rows"]``."""
    lines = [
        f"MobileSAM image encoder architecture (TinyViT-5M, {result['params']:,} parameters, random weights), "
        f"{result['img_size']}x{result['img_size']}, {result['threads']} threads, p50 of {result['runs']} runs "
        f"after 1 warmup, {result['cpu']} (1-min load average {result['loadavg_start']} at start, "
        f"{result.get('loadavg_end')} at end)",
        "",
        "| runtime | precision | p50 ms | min ms | max ms | max abs diff vs torch |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['runtime']} | {r['precision']} | failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['runtime']} | {r['precision']} | {r['p50_ms']:.1f} | {r['min_ms']:.1f} | "
                     f"{r['max_ms']:.1f} | {r['max_abs_diff']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command line entry point; returns the result written to ``--json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--img-size", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", type=int, default=4, help="random calibration images for NNCF (subset_size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the ONNX / IR files here (default: temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ov-fp32", "ov-int8", "ort-fp32"])
    args = ap.parse_args(argv)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mobilesam_ref.")
        work = Path(tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        onnx_path, params, x, ref = export(args.img_size, args.seed, work / "mobilesam_encoder.onnx")
        print(f"exported {onnx_path} ({params:,} parameters) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        result = {
            "model": "MobileSAM image encoder architecture (TinyViT-5M), random weights",
            "params": params, "img_size": args.img_size, "threads": args.threads, "runs": args.runs,
            "warmup": 1, "calib": args.calib, "cpu": _cpu_name(), "loadavg_start": _loadavg(),
            "versions": _versions(), "rows": [],
        }

        def row(runtime: str, precision: str, fn) -> None:
            entry = {"runtime": runtime, "precision": precision}
            try:
                times, out = fn()
                entry.update(p50_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
                             times_ms=times, max_abs_diff=float(np.abs(np.asarray(out) - ref).max()))
            except Exception as err:  # report the failure as a row, keep measuring the others
                entry["error"] = f"{type(err).__name__}: {str(err).strip()[:160]}"
            print(f"{runtime}/{precision}: {entry.get('p50_ms', entry.get('error'))}", file=sys.stderr)
            result["rows"].append(entry)

        if "ov-fp32" not in args.skip or "ov-int8" not in args.skip:
            import openvino as ov

            xml = work / "mobilesam_encoder.xml"
            ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
        if "ov-fp32" not in args.skip:
            row("openvino", "fp32", lambda: bench_openvino(xml, x, args.threads, args.runs, f32_hint=True))
        if "ov-int8" not in args.skip:
            int8_xml = work / "mobilesam_encoder.int8.xml"

            def int8():
                import nncf

                from ..runtimes.openvino.quantize import NncfOptions, quantize_int8_nncf

                nncf.set_log_level(logging.WARNING)  # one INFO line per quantizer otherwise

                t = time.perf_counter()
                feeds = [{INPUT: a} for a in random_images(args.calib, args.img_size, args.seed + 1)]
                quantize_int8_nncf(xml, int8_xml, feeds, options=NncfOptions(subset_size=args.calib))
                result["nncf_s"] = round(time.perf_counter() - t, 1)
                return bench_openvino(int8_xml, x, args.threads, args.runs, f32_hint=False)

            row("openvino", "int8", int8)
        if "ort-fp32" not in args.skip:
            row("onnxruntime", "fp32", lambda: bench_onnxruntime(onnx_path, x, args.threads, args.runs))
        result["loadavg_end"] = _loadavg()
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(render(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _cpu_name() -> str:
    from ..devices.profile import detect

    return detect()["cpu_model"]


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "onnxruntime", "openvino", "nncf"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # missing or broken: recorded as such
            out[name] = "n/a"
    return out


if __name__ == "__main__":
    main()
