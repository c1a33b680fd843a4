#!/usr/bin/env python
"""Time one bundle's OpenVINO encoder in fp32 / bf16 / int8 / int8-bf16, round-robin, on this CPU.

The four configurations are the bundle's two IRs under the runner's precision hints: the fp32 IR
with INFERENCE_PRECISION_HINT f32 (fp32) and bf16 (bf16); the NNCF int8 IR (``--precision int8`` or
``int8-bf16`` export) with f32 (int8) and bf16 (int8-bf16) for the ops NNCF left unquantized, plus
the int8 IR with no hint at all (what ``int8`` ran before it pinned f32: the CPU's default, bf16 on
AMX). Runs are interleaved (one of each per round) so that load from other processes hits every
configuration alike. For each it also counts, from OpenVINO's execution graph, the layers running in
int8 / bf16 and the ones on AMX kernels (``primitiveType`` naming ``amx``), and prints the CPU flags.

Example:
    python scripts/int8_bf16_probe.py runs/int8/sam-mini --runs 20 --json runs/int8/sam-mini.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from slimsam_edge.devices import detect
from slimsam_edge.runtimes import RunnerOptions, open_runner


def configs(bundle: Path) -> dict[str, tuple[Path, str | None]]:
    """name -> (IR, runner precision; None = no hint at all)."""
    ov = bundle / "openvino"
    int8 = sorted(ov.glob("image_encoder.int8*.xml"))
    if not int8:
        sys.exit(f"{bundle}: no openvino/image_encoder.int8*.xml; export it with --precision int8 or int8-bf16")
    fp32 = ov / "image_encoder.xml"
    return {"fp32": (fp32, "fp32"), "bf16": (fp32, "bf16"), "int8": (int8[0], "int8"),
            "int8-bf16": (int8[0], "int8-bf16"), "int8 (no hint)": (int8[0], None)}


def layer_counts(compiled) -> dict[str, int]:
    """Layers of the execution graph by runtime precision, and how many run AMX kernels."""
    out: dict[str, int] = {"amx": 0}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in ("Const", "Input", "Output"):
            continue
        prec = rt["runtimePrecision"].astype(str)
        out[prec] = out.get(prec, 0) + 1
        out["amx"] += "amx" in rt["primitiveType"].astype(str)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    info = detect()
    runners, counts = {}, {}
    for name, (path, precision) in configs(a.bundle).items():
        r = open_runner(path, backend="openvino", options=RunnerOptions(threads=a.threads, precision=precision or "int8"))
        if precision is None:  # drop the pinned hint: the CPU plugin's own default
            r._config = _without_hint(r._config)
        r.activate()
        runners[name], counts[name] = r, layer_counts(r._compiled)
    shape = [d if isinstance(d, int) else 1 for d in next(iter(runners.values())).input_specs()["image"].shape]
    x = {"image": np.random.default_rng(0).normal(size=shape).astype(np.float32)}
    times: dict[str, list[float]] = {n: [] for n in runners}
    for i in range(a.warmup + a.runs):
        for name, r in runners.items():
            t0 = time.perf_counter()
            r.infer(x)
            if i >= a.warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    hints = {n: str(r._compiled.get_property("INFERENCE_PRECISION_HINT")) for n, r in runners.items()}
    result = {
        "bundle": str(a.bundle), "input": shape, "runs": a.runs, "threads": a.threads,
        "cpu": info["cpu_model"], "cores": info["cores_logical"], "flags": info["cpu_features"],
        "supports_bf16": info["supports_bf16"], "amx": info["amx"],
        "rows": [{"config": n, "p50_ms": round(statistics.median(t), 1), "min_ms": round(min(t), 1),
                  "hint": hints[n], "layers": counts[n]} for n, t in times.items()],
    }
    for r in runners.values():
        r.deactivate()
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return result


def _without_hint(config_fn):
    def config(core, device):
        cfg = config_fn(core, device)
        cfg.pop("INFERENCE_PRECISION_HINT", None)
        return cfg
    return config


if __name__ == "__main__":
    main()
