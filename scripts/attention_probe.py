#!/usr/bin/env python
"""Probe the exact global-attention variants of slimsam_edge.exporters.attention on CPU runtimes.

Builds the vit_p77 encoder (random weights), takes ONE global-attention block at the preset's
resolution (or, with ``--whole``, the whole encoder), exports every variant to ONNX (opset 17,
TorchScript exporter), checks each against ``plain`` in torch and in each runtime, then times
all (variant, runtime) pairs round-robin so that load from other processes hits them alike.

Example:
    nice -n 10 .venv/bin/python scripts/attention_probe.py --json runs/attention_probe.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimsam_edge.exporters.attention import ATTENTION_VARIANTS, export_variant_onnx, get_variant
from slimsam_edge.models.build import random_init_
from slimsam_edge.models.encoder import FlexImageEncoderViT
from slimsam_edge.models.spec import PRESETS


class _BlockOnly(nn.Module):
    """One transformer block of an encoder, on tokens B x H x W x C."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


_ARENA: list = []


def _shared_ort_arena(ort) -> None:
    """Register one CPU arena for all ONNX Runtime sessions (arena speed, one session's memory)."""
    if not _ARENA:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # extend by what is asked
        _ARENA.append(info)


def _sessions(path: Path, runtimes: list[str], threads: int, ort_arena: str = "off"):
    """Return {runtime: callable(np.ndarray) -> np.ndarray} for the ONNX file at ``path``."""
    out = {}
    if "onnxruntime" in runtimes:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # Many sessions stay open and each arena keeps ~3 GB of score buffers at full size, so
        # the default is no arena (fresh allocations every run: slower for every variant alike).
        if ort_arena == "off":
            so.enable_cpu_mem_arena = False
        elif ort_arena == "shared":  # one env arena; it still grew to 14 GB in a 10-session probe
            _shared_ort_arena(ort)
            so.add_session_config_entry("session.use_env_allocators", "1")
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        out["onnxruntime"] = lambda x, s=sess, n=name: s.run(None, {n: x})[0]
    if "openvino" in runtimes:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            str(path), "CPU",
            {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
             "PERFORMANCE_HINT": "LATENCY"},
        )
        req = compiled.create_infer_request()

        def run(x, r=req):
            r.infer({0: x})
            return r.get_output_tensor(0).data.copy()

        out["openvino"] = run
    return out


def _roofline(report_path: Path, spec, gidx: int, threads: int, plain_block_ms: dict[str, float]) -> dict:
    """The compute floor of one global block here, and the best whole-encoder ratio it allows."""
    from slimsam_edge.research.roofline import exact_route_bound, measure_machine

    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return exact_route_bound(report, spec, gidx, measure_machine(threads=threads), source=str(report_path),
                             plain_block_ms=plain_block_ms)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="vit_p77")
    ap.add_argument("--variants", default=",".join(ATTENTION_VARIANTS), help="comma-separated")
    ap.add_argument("--runtimes", default="onnxruntime,openvino")
    ap.add_argument("--whole", action="store_true", help="time the whole encoder, not one block")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2, help="runs per (variant, runtime) per round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ort-arena", choices=("off", "session", "shared"), default="off",
                    help="ONNX Runtime CPU arena: off (default, bounded memory), one per session, "
                    "or one shared; with an arena use few variants (about 3 GB each at 1024 px)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the ONNX files here")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table here (docs/results/attention.md)")
    ap.add_argument("--roofline", type=Path, default=None, metavar="PRECISION_JSON",
                    help="also bound the best exact route: this machine's GEMM and exp rates, and the "
                    "plain and all-windowed encoder times of this precision report (docs/results/precision.json)")
    args = ap.parse_args(argv)

    names = [get_variant(n.strip()).name for n in args.variants.split(",") if n.strip()]
    if "plain" not in names:
        names.insert(0, "plain")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    torch.manual_seed(0)
    spec = PRESETS[args.preset].encoder
    enc = random_init_(FlexImageEncoderViT(spec).eval(), seed=0)
    gidx = spec.global_attn_indexes[0]
    g = torch.Generator().manual_seed(1)
    if args.whole:
        x = torch.randn(1, 3, spec.img_size, spec.img_size, generator=g)
        geometry = f"{args.preset} whole encoder at {spec.img_size}px"
    else:
        x = torch.randn(1, spec.grid, spec.grid, spec.embed_dim, generator=g)
        geometry = (f"{args.preset} global block {gidx} at {spec.img_size}px "
                    f"({spec.grid}x{spec.grid} tokens, {spec.num_heads} heads x {spec.head_dims()[gidx]})")
    print(f"# {geometry}; threads={args.threads}", flush=True)

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    xn = x.numpy()
    ref = None
    runners: dict[tuple[str, str], object] = {}
    diffs: dict[tuple[str, str], float] = {}
    torch_diff: dict[str, float] = {}
    for name in names:
        var = ATTENTION_VARIANTS[name]
        module = var.apply(enc)
        module = module if args.whole else _BlockOnly(module.blocks[gidx])
        with torch.no_grad():
            y = module(x).numpy()
        if ref is None:
            ref = y
        torch_diff[name] = float(np.abs(y - ref).max())
        path = workdir / f"{name}.onnx"
        t0 = time.perf_counter()
        export_variant_onnx(module, (x,), path, input_names=["x"], output_names=["y"],
                            finalize=var.needs_finalize)
        del module
        gc.collect()
        for rt, fn in _sessions(path, [r for r in runtimes if r in var.runtimes], args.threads,
                                args.ort_arena).items():
            diffs[(name, rt)] = float(np.abs(fn(xn) - ref).max())
            runners[(name, rt)] = fn
        print(f"# {name}: exported+loaded in {time.perf_counter() - t0:.1f}s, torch |diff| "
              f"{torch_diff[name]:.2e}", flush=True)

    keys = [k for k in runners]
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    for r in range(args.warmup + args.rounds):
        order = keys if r % 2 == 0 else keys[::-1]  # alternate direction: no fixed neighbour
        for k in order:
            for _ in range(args.reps):
                t0 = time.perf_counter()
                runners[k](xn)
                dt = (time.perf_counter() - t0) * 1e3
                if r >= args.warmup:
                    times[k].append(dt)
        print(f"# round {r + 1}/{args.warmup + args.rounds} done", flush=True)

    rows = []
    for name, rt in keys:
        p50 = statistics.median(times[(name, rt)])
        base = statistics.median(times[("plain", rt)]) if ("plain", rt) in times else float("nan")
        rows.append({
            "variant": name, "runtime": rt, "p50_ms": p50, "min_ms": min(times[(name, rt)]),
            "ratio_to_plain": p50 / base, "max_abs_diff": diffs[(name, rt)],
            "torch_max_abs_diff": torch_diff[name], "exact": diffs[(name, rt)] <= args.tol,
            "samples_ms": times[(name, rt)],
        })
    rows.sort(key=lambda r: (r["runtime"], r["variant"] != "plain"))
    table = [f"{geometry}; {args.rounds} interleaved rounds x {args.reps} runs after {args.warmup} warmup; "
             f"{args.threads} threads; ORT arena {args.ort_arena}", "",
             "| variant | runtime | p50 ms | min ms | ratio to plain | max abs diff |", "|---|---|---:|---:|---:|---:|"]
    table += [f"| {r['variant']} | {r['runtime']} | {r['p50_ms']:.1f} | {r['min_ms']:.1f} | "
              f"{r['ratio_to_plain']:.3f} | {r['max_abs_diff']:.1e} |" for r in rows]
    print("\n" + "\n".join(table))
    plain_ms = {r["runtime"]: r["p50_ms"] for r in rows if r["variant"] == "plain"}
    floor = _roofline(args.roofline, spec, gidx, args.threads, plain_ms) if args.roofline and not args.whole else None
    if floor:
        table += ["", *floor["lines"]]
        print("\n" + "\n".join(floor["lines"]))
    if args.markdown:
        from slimsam_edge.fsutil import write_text_atomic

        command = "python scripts/attention_probe.py " + " ".join(sys.argv[1:])
        write_text_atomic(args.markdown, "\n".join([
            "# Fast attention, route 7a (exact): global-attention formulations", "",
            "Each variant computes the same function as `plain` (max |diff| in the last column); the "
            "table times them interleaved on this machine. See `slimsam_edge/exporters/attention.py`.", "",
            *table, "", f"Regenerate: `{command.strip()}`", ""]))
        print(f"wrote {args.markdown}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "geometry": geometry, "threads": args.threads, "ort_arena": args.ort_arena, "rounds": args.rounds, "reps": args.reps,
            "warmup": args.warmup, "tol": args.tol, "results": rows,
            "roofline": {k: v for k, v in (floor or {}).items() if k != "lines"} or None,
        }, indent=2))
        print(f"\nwrote {args.json}")
    bad = [f"{r['variant']}/{r['runtime']}" for r in rows if not r["exact"]]
    if bad:
        print(f"NOT EXACT (> {args.tol}): {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
