"""docs/results/bench-cpu.md and its plots, in one run: ``python scripts/bench_report.py``.

What it measures, all in one interleaved :func:`~slimsam_edge.bench.suite.bench_suite` run on this
machine:

- the shipped sam-mini in every precision its CPU backends have (ONNX Runtime fp32 / fp16 /
  int8, OpenVINO fp32 / bf16 / int8 / int8-bf16; bf16 rows only on a CPU with BF16), with point
  and box mIoU on the procedural held-out set through the very runtime timed;
- the SlimSAM-77 architecture at 1024 px, plain and all-windowed (random weights: latency only);
- the peers MobileSAM (TinyViT-5M), SAM-B and EfficientViT-SAM-L0 (512 px), random weights.

Bundles are exported into ``--workdir`` (kept, and reused with ``--reuse`` when the weights
match), then every row runs ``--repeats`` times, round-robin. The Markdown page lists the machine,
its CPU flags, the protocol and every n/a with its reason; the JSON report sits next to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

SAM_MINI_BUNDLES = {  # bundle (its reduced precision; fp32 always included) -> the rows it carries
    "fp16": (("onnxruntime", "fp32"), ("openvino", "fp32"), ("onnxruntime", "fp16"), ("openvino", "bf16")),
    "int8": (("onnxruntime", "int8"), ("openvino", "int8")),
    "int8-bf16": (("openvino", "int8-bf16"),),
}
P77_PAIRS = (("openvino", "fp32"), ("openvino", "bf16"), ("onnxruntime", "fp32"))
PEER_PAIRS = (("openvino", "fp32"), ("openvino", "bf16"), ("onnxruntime", "fp32"))
PEERS = ("mobilesam", "sam-b", "efficientvit-sam-l0")


def _export(load: Any, key: str, out: Path, precision: str, reuse: bool, say: Any) -> Path:
    from ..bench.matrix import MatrixConfig, _export as export_one

    cfg = MatrixConfig(workdir=str(out.parent), reuse=reuse, calib_images=16, gate_images=8)
    sam, spec = load()
    export_one(sam, spec, key, out, precision, cfg, say)
    return out


def subjects(workdir: Path, *, reuse: bool, say: Any, skip_1024: bool = False) -> list[Any]:
    """Export (or reuse) every bundle of the report; return the suite's subjects."""
    from ..bench.suite import Subject
    from ..devices import detected, why_not
    from ..exporters.peer_export import export_peer
    from .precision_report import _random, _shipped, _shipped_key

    info = detected()
    out: list[Subject] = []
    for precision, pairs in SAM_MINI_BUNDLES.items():
        pairs = tuple(p for p in pairs if not why_not(p[1], info))
        if not pairs:
            say(f"sam-mini {precision}: skipped ({why_not(precision, info)})")
            continue
        path = _export(_shipped, _shipped_key(), workdir / f"sam-mini-{precision}", precision, reuse, say)
        out.append(Subject(f"sam-mini ({'fp32 + fp16' if precision == 'fp16' else precision} bundle)", str(path),
                           pairs=pairs))
    if skip_1024:
        return out
    keep = tuple(p for p in P77_PAIRS if not why_not(p[1], info))
    for label, attention in (("SlimSAM-77 arch.", "keep"), ("SlimSAM-77 all-windowed", "windowed")):
        key = f"vit_p77{'-windowed' if attention == 'windowed' else ''}:random-seed0"
        path = _export(_random("vit_p77", attention), key, workdir / key.split(":")[0], "fp16", reuse, say)
        out.append(Subject(f"{label} (random weights)", str(path), pairs=keep,
                           latency_only="SlimSAM-77 architecture at 1024 px, random weights: latency only"))
    for name in PEERS:
        dest = workdir / f"peer-{name}"
        if not (reuse and (dest / "manifest.json").exists()):
            say(f"peer {name}: exporting")
            export_peer(name, dest, validate=False, reference=False)
        out.append(Subject(f"{name} (random weights)", str(dest), peer=name,
                           pairs=tuple(p for p in PEER_PAIRS if not why_not(p[1], info))))
    return out


def refresh_derived(report: dict[str, Any]) -> None:
    """Compute the derived columns (% of peak from the stored stages, peak and MACs) again."""
    from ..bench.suite import Row, Subject, _efficiency, _macs
    from ..bundle import load_bundle

    manifests = {b: load_bundle(b, verify=False).manifest for b in {r["bundle"] for r in report["rows"]}}
    for r in report["rows"]:
        row = Row(Subject(r["model"], r["bundle"], r.get("peer")), r["backend"], r["precision"], r["scenario"])
        r["efficiency"] = _efficiency(row, r["stages"], report.get("peak"), _macs(manifests[r["bundle"]]))


def render(report: dict[str, Any], command: str) -> str:
    """The Markdown page."""
    from ..bench.render import to_markdown

    return "\n".join([
        "# Benchmark report: CPU", "",
        f"Made by one command, in one run: `{command}`.", "",
        "Every row ran once per round in a fresh process, rounds interleaved round-robin with a rotating "
        "start, so that drift on a shared machine hits every row alike; compare rows of this page only "
        "with each other. Accuracy is measured through the runtime and precision of the row on the "
        "procedural held-out set (data that chose no checkpoint and no threshold); rows with random "
        "weights are latency only. % of peak: the encoder's counted MACs (attention included) per "
        "encoder p50, against this machine's GEMM peak for that precision "
        f"({_peak_line(report)}). The peak is measured once, at the start of the run; on a machine shared "
        "with other jobs it can come out low, and a row above 100 % then says that the peak "
        "underestimated this CPU, not that the row beat it.", "",
        to_markdown(report), "",
        "![latency vs mIoU](bench-cpu/pareto.png)", "",
        "![p50 per stage](bench-cpu/stages.png)", "",
    ])


def _peak_line(report: dict[str, Any]) -> str:
    peak = report.get("peak") or {}
    rates = peak.get("gemm_gflops") or {}
    parts = [f"{k} {v:.0f} GFLOP/s" for k, v in rates.items() if v]
    if peak.get("memory_gbps"):
        parts.append(f"copy bandwidth {peak['memory_gbps']:.1f} GB/s")
    return ", ".join(parts) or "not measured"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from ..bench.harness import BenchConfig
    from ..bench.suite import bench_suite, write_outputs
    from ..fsutil import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/bench-cpu", help="bundles are exported (and kept) here")
    ap.add_argument("--reuse", action="store_true", help="reuse bundles already in --workdir")
    ap.add_argument("--out", default="docs/results/bench-cpu.md")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--accuracy-images", type=int, default=32)
    ap.add_argument("--skip-1024", action="store_true", help="only the sam-mini rows (a quick check)")
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the page from the JSON next to --out (no measuring; the derived "
                         "columns - ratios, %% of peak - are computed again)")
    a = ap.parse_args(argv)
    say = lambda m: print(m, flush=True)  # noqa: E731
    out = Path(a.out)
    if a.render_only:
        report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        refresh_derived(report)
        command = report["command"]
    else:
        workdir = Path(a.workdir)
        subs = subjects(workdir, reuse=a.reuse, say=say, skip_1024=a.skip_1024)
        base = BenchConfig(bundle="", backend="", threads=a.threads, image_hw=(720, 1280), warmup=1, runs=a.runs,
                           prompts=a.prompts, energy="auto")
        report = bench_suite(subs, repeats=a.repeats, base=base, accuracy_limit=a.accuracy_images,
                             progress=lambda d, t, label: say(f"[{d}/{t}] {label}"))
        command = ("python scripts/bench_report.py "
                   + " ".join(argv if argv is not None else __import__("sys").argv[1:])).strip()
        report["command"] = command
    write_outputs(report, out=out.with_suffix(".json"), plot=out.parent / out.stem)
    write_text_atomic(out, render(report, command))
    say(f"wrote {out}, {out.with_suffix('.json')} and {out.parent / out.stem}/*.png")
    return json.loads(json.dumps(report, default=str))
