"""Regenerate docs/results/precision.md: runtime x precision for SlimSAM-77 @1024 and sam-mini, and the
fast-attention routes.

Tables (from :mod:`slimsam_edge.bench.matrix`):

* sam-mini (the shipped, trained model): every runtime x precision, agreement with fp32 and mIoU;
* the SlimSAM-77 architecture at 1024x1024 with random weights: latency, and agreement only
  (random weights have no accuracy);
* route 7b (trained, approximate): the same architecture with every block windowed
  (``compress --global-attention windowed``), its speed at 1024 next to the plain one, and its mIoU
  cost on sam-mini: ``compress`` at the same ratio and schedule with and without windowed global
  blocks (the ablation machinery, :func:`~slimsam_edge.research.ablation.run_ablation`).

The goal of issue 5 is expressed as a ratio to plain OpenVINO bf16 measured in the same run; on a
CPU without native bf16 the bf16 row says so and the ratio is taken to OpenVINO fp32 instead.

    python scripts/precision.py                       # everything, ~40 min on 2 cores
    python scripts/precision.py --models sam-mini --route-b-steps 0   # sam-mini only, a few minutes

Example:
    >>> ratio_to_baseline([{"backend": "openvino", "precision": "fp32", "encoder_p50_ms": 100.0}], 50.0)
    (0.5, 'openvino/fp32')
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ..bench.matrix import MatrixConfig, MatrixModel, render_markdown, run_matrix
from ..fsutil import write_text_atomic

#: name parts of the plain and all-windowed SlimSAM-77 models in a report
PLAIN_P77, WINDOWED_P77 = "SlimSAM-77 architecture", "all-windowed"
WINDOWED_PAIRS = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"),
                  ("openvino", "int8-bf16"))


def _shipped():
    from ..assets import require_reference_model
    from ..models.io import load_model

    return load_model(require_reference_model())


def _shipped_key() -> str:
    import hashlib

    from ..assets import require_reference_model

    return "sam-mini:" + hashlib.sha256(require_reference_model().read_bytes()).hexdigest()[:16]


def _random(preset: str, global_attention: str = "keep"):
    def load():
        from ..compress.attention import global_attention as choose
        from ..models.build import build_sam, random_init_
        from ..models.spec import PRESETS

        sam = random_init_(build_sam(PRESETS[preset]), seed=0)
        return choose(global_attention).apply(sam, PRESETS[preset])

    return load


MODEL_CHOICES = ("sam-mini", "p77", "p77-windowed")


def models(names: Sequence[str] = MODEL_CHOICES, pairs_1024: Sequence[tuple[str, str]] | None = None
           ) -> list[MatrixModel]:
    """The models of the report (a subset of :data:`MODEL_CHOICES`), in that order."""
    full = {"pairs": tuple(pairs_1024)} if pairs_1024 else {}
    make = {
        "sam-mini": lambda: MatrixModel(
            "sam-mini (shipped, trained) @256", _shipped, trained=True, key=_shipped_key(),
            note="Agreement and mIoU on the gate's held-out procedural images (seed 1001)."),
        "p77": lambda: MatrixModel(
            "SlimSAM-77 architecture @1024, random weights", _random("vit_p77"), trained=False,
            key="vit_p77:random-seed0", **full,
            note="Random weights: their masks barely depend on the image, so mask agreement is ~1 whatever "
                 "the precision; the embedding error says how far the precision moves the encoder."),
        "p77-windowed": lambda: MatrixModel(
            "SlimSAM-77 all-windowed @1024 (route 7b), random weights", _random("vit_p77", "windowed"),
            trained=False, pairs=WINDOWED_PAIRS, key="vit_p77-windowed:random-seed0",
            note="`compress --global-attention windowed`: blocks 2, 5, 8, 11 attend within 14x14 windows "
                 "like the others."),
    }
    return [make[n]() for n in MODEL_CHOICES if n in names]


def baseline_encoder(rows: list[dict[str, Any]]) -> tuple[float, str] | None:
    """p50 encoder ms and ``runtime/precision`` of the goals' baseline among a model's ``rows``:
    OpenVINO bf16, or fp32 where bf16 did not run; ``None`` without either.

    Example:
        >>> baseline_encoder([{"backend": "openvino", "precision": "bf16", "encoder_p50_ms": None},
        ...                   {"backend": "openvino", "precision": "fp32", "encoder_p50_ms": 80.0}])
        (80.0, 'openvino/fp32')
    """
    by = {(r["backend"], r["precision"]): r for r in rows}
    for key in (("openvino", "bf16"), ("openvino", "fp32")):
        r = by.get(key)
        if r and r.get("encoder_p50_ms"):
            return r["encoder_p50_ms"], "/".join(key)
    return None


def ratio_to_baseline(rows: list[dict[str, Any]], encoder_ms: float) -> tuple[float | None, str]:
    """``encoder_ms`` as a ratio to the plain OpenVINO bf16 encoder (fp32 where bf16 did not run)."""
    base = baseline_encoder(rows)
    return (round(encoder_ms / base[0], 3), base[1]) if base else (None, "none")


def find_model(result: dict[str, Any], needle: str) -> dict[str, Any] | None:
    """The model of a report (``run_matrix``'s result) whose name contains ``needle``."""
    return next((m for m in result.get("models", []) if needle in m["name"]), None)


def route_b_cost(steps: int, ratios: Sequence[float], workdir: Path, threads: int | None,
                 lr: float = 2e-4) -> list[dict[str, Any]]:
    """Point/box mIoU of sam-mini students with global blocks kept vs windowed (same schedule;
    ``lr`` as in docs/results/ablation.md, so its alternate + disturbed-Taylor rows compare)."""
    from .ablation import Plan, run_ablation

    rows = []
    for choice in ("keep", "windowed"):
        plan = Plan(steps=steps, lr=lr, ratios=list(ratios), schedules=["alternate"], importances=["disturbed-taylor"],
                    extra={"global_attention": choice})
        s = run_ablation(plan, workdir / f"route-b-{choice}", results=workdir / f"route-b-{choice}.md")
        rows += [{**r, "global_attention": choice, "lr": lr, "steps": steps} for r in s["rows"]]
    return rows


def mobilesam_reference(workdir: Path, runs: int, threads: int | None) -> dict[str, Any] | None:
    """MobileSAM's encoder architecture (random weights) timed by :mod:`.mobilesam_reference` in a
    subprocess (``python -m``, no shell, so its threads and imports do not touch this process)."""
    import subprocess

    out = workdir / "mobilesam.json"
    cmd = [sys.executable, "-m", "slimsam_edge.research.mobilesam_reference", "--json", str(out), "--runs", str(runs), "--workdir", str(workdir / "mobilesam")]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"mobilesam_reference.py failed: {tail}", "rows": []}
    return json.loads(out.read_text())


def route_b_lines(result: dict[str, Any], cost: list[dict[str, Any]], steps: int) -> list[str]:
    """The route 7b section: encoder speed plain vs all-windowed at 1024, and the mIoU cost on sam-mini."""
    plain, windowed = find_model(result, PLAIN_P77), find_model(result, WINDOWED_P77)
    if not cost and not (plain and windowed):
        return []
    lines = ["## Fast attention, route 7b (trained): windowed global blocks", ""]
    if plain and windowed:
        lines += ["| encoder @1024 | runtime/precision | p50 ms | ratio to plain OpenVINO bf16 (or fp32) |",
                  "|---|---|---|---|"]
        for label, m in (("plain", plain), ("all-windowed", windowed)):
            for r in m["rows"]:
                if r.get("encoder_p50_ms"):
                    ratio, base = ratio_to_baseline(plain["rows"], r["encoder_p50_ms"])
                    lines.append(f"| {label} | {r['backend']}/{r['precision']} | {r['encoder_p50_ms']:.1f} | "
                                 f"{ratio} (of {base}) |")
        mobile = result.get("mobilesam") or {}
        for r in mobile.get("rows", []):
            if r.get("p50_ms"):
                ratio, base = ratio_to_baseline(plain["rows"], r["p50_ms"])
                lines.append(f"| MobileSAM (TinyViT-5M, random weights) | {r['runtime']}/{r['precision']} | "
                             f"{r['p50_ms']:.1f} | {ratio} (of {base}) |")
        if mobile.get("error"):
            lines.append(f"\nMobileSAM reference not measured: {mobile['error']}")
        lines.append("")
    if cost:
        lines += [f"mIoU cost on sam-mini: `compress` alternate + disturbed Taylor, {steps} steps per phase, "
                  f"lr {cost[0].get('lr', 'default')}, "
                  "held-out point / box mIoU on 32 images (seed 1001).", "",
                  "| ratio | global blocks | point mIoU (kept of teacher) | box mIoU |", "|---|---|---|---|"]
        for r in cost:
            lines.append(f"| {r['ratio']} | {r['global_attention']} | {r['point']:.4f} ({r['kept']:.1%}) | "
                         f"{r['box']:.4f} |")
        lines.append(f"\nTeacher point mIoU {cost[0]['teacher_point']:.4f}.")
        lines.append("")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry (``python scripts/precision.py --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="runtime x precision latency/accuracy -> docs/results/precision.md")
    ap.add_argument("--workdir", type=Path, default=Path("runs/precision"), help="bundles and run folders")
    ap.add_argument("--results", type=Path, default=Path("docs/results/precision.md"))
    ap.add_argument("--runs", type=int, default=5, help="timed encoder runs per configuration")
    ap.add_argument("--prompts", type=int, default=20, help="timed decoder prompts per configuration")
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--gate-images", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's)")
    ap.add_argument("--models", nargs="+", choices=MODEL_CHOICES, default=list(MODEL_CHOICES))
    ap.add_argument("--pairs-1024", nargs="+", default=None, metavar="BACKEND/PRECISION",
                    help="pairs measured for SlimSAM-77 @1024 (default: all)")
    ap.add_argument("--reuse", action="store_true", help="reuse bundles of the same models under --workdir")
    ap.add_argument("--export-only", action="store_true", help="export and gate only (benchmark later with --reuse)")
    ap.add_argument("--no-mobilesam", action="store_true", help="skip MobileSAM's encoder (research/mobilesam_reference.py)")
    ap.add_argument("--route-b-steps", type=int, default=100, help="compress steps per phase (0: skip the mIoU cost)")
    ap.add_argument("--route-b-ratios", type=float, nargs="+", default=[0.77])
    ap.add_argument("--route-b-lr", type=float, default=2e-4, help="compress learning rate of those runs")
    a = ap.parse_args(argv)
    pairs = [tuple(p.split("/", 1)) for p in a.pairs_1024] if a.pairs_1024 else None
    cfg = MatrixConfig(workdir=str(a.workdir), runs=a.runs, prompts=a.prompts, threads=a.threads,
                       calib_images=a.calib_images, gate_images=a.gate_images, reuse=a.reuse,
                       export_only=a.export_only)
    result = run_matrix(models(a.models, pairs), cfg, say=lambda m: print(m, file=sys.stderr, flush=True))
    if "p77" in a.models and not a.no_mobilesam and not a.export_only:
        print("MobileSAM reference encoder", file=sys.stderr, flush=True)
        result["mobilesam"] = mobilesam_reference(a.workdir, a.runs, a.threads)
    cost = route_b_cost(a.route_b_steps, a.route_b_ratios, a.workdir, a.threads, a.route_b_lr) if a.route_b_steps > 0 else []
    result["route_b_cost"] = cost
    command = ("python scripts/precision.py " + shlex.join(argv)).strip()
    route_a = ["## Fast attention, route 7a (exact)", "",
               "Equivalent formulations of the global blocks, timed per block: docs/results/attention.md "
               "(`python scripts/attention_probe.py`).", ""]
    md = render_markdown(result, command=command, extra=route_b_lines(result, cost, a.route_b_steps) + route_a)
    write_text_atomic(a.results, md)
    write_text_atomic(a.results.with_suffix(".json"), json.dumps(result, indent=2))
    print(f"wrote {a.results} ({result['elapsed_s']} s of measurements)")
    return result


if __name__ == "__main__":  # python -m slimsam_edge.research.precision_report
    main()
