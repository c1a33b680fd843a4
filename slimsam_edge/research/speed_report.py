"""docs/results/speed.md: combined speed routes against MobileSAM, in one run (issue 18, item 3).

One command (``python scripts/speed.py``) measures, on this machine and in one interleaved
:func:`~slimsam_edge.bench.suite.bench_suite` run:

* **latency** of the SlimSAM-77 architecture (random weights) on every route = input size
  (1024 / 768 / 512, :func:`~slimsam_edge.models.regrid.resample_model`) x global attention
  (``keep`` / ``windowed``: ``compress --global-attention windowed``) x runtime and precision
  (OpenVINO fp32 / bf16 / int8 / int8-bf16, ONNX Runtime fp32 / int8; the bf16 ones only on a CPU
  with BF16, else listed as refused with the reason), next to MobileSAM's encoder (TinyViT-5M,
  random weights) in every precision it has;
* **accuracy kept** by the same route on its sam-mini analogue: the shipped 256 px sam-mini
  compressed with the same settings at 256 / 192 / 128 px (the 1024 / 768 / 512 of a 1024 px
  teacher, a quarter of the side) with the same attention, exported and evaluated through the same
  runtime and precision (point and box mIoU on the procedural held-out set, which chose no
  checkpoint and no threshold), as a share of the shipped teacher's fp32 point mIoU;
* **click-to-mask tracking** of the fastest route that keeps the most and of MobileSAM's fastest
  row: the video scenario (capture -> encode -> track -> sink pipeline) on a procedural clip.

Students are compressed (or reused, same settings) under ``--students``, bundles exported (or
reused) under ``--workdir``. The page puts every route in one table: encoder p50, decoder +
postprocessing per prompt, the ratio to MobileSAM's best encoder, point mIoU kept, and whether
the route meets issue 18's goals (<= 0.5x MobileSAM's best encoder, >= 88 % kept).

Example:
    >>> r = Route(768, "windowed", "openvino", "int8")
    >>> r.label, r.mini_size
    ('768 px windowed openvino/int8', 192)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import UsageError
from ..fsutil import write_text_atomic
from . import load_note, publish

#: input sizes of the 1024 px SlimSAM-77 routes; the sam-mini analogue runs at a quarter of each
SIZES = (1024, 768, 512)
#: how the global-attention blocks run (``compress --global-attention``)
ATTENTIONS = ("keep", "windowed")
#: the (runtime, precision) pairs of every route and of MobileSAM, in table order
PAIRS = (("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"), ("openvino", "int8-bf16"),
         ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
#: the SlimSAM-77 teacher's input size and the shipped sam-mini's; a route's analogue is scaled by their ratio
TEACHER_SIZE, MINI_SIZE = 1024, 256
#: issue 18's goals
GOAL_RATIO, GOAL_KEPT = 0.5, 0.88
PEER = "mobilesam"


@dataclass(frozen=True)
class Route:
    """One way to run the compressed encoder: input size x attention x runtime/precision."""

    size: int
    attention: str
    backend: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.size} px {self.attention} {self.backend}/{self.precision}"

    @property
    def mini_size(self) -> int:
        """The input size of this route's sam-mini analogue."""
        return self.size * MINI_SIZE // TEACHER_SIZE

    @property
    def model(self) -> str:
        """Name of the SlimSAM-77 bundle this route runs."""
        return f"p77-{self.size}-{self.attention}"

    @property
    def student(self) -> str:
        """Name of this route's sam-mini analogue (compress run and bundle)."""
        return student_name(self.mini_size, self.attention)


def student_name(size: int, attention: str) -> str:
    """Folder name of a sam-mini student (the resolution report's names for ``keep``).

    Example:
        >>> student_name(192, "keep"), student_name(128, "windowed")
        ('mini-192', 'mini-128-windowed')
    """
    return f"mini-{size}" + ("" if attention == "keep" else f"-{attention}")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_sizes(sizes: Sequence[int]) -> None:
    """Refuse (UsageError) a route size SlimSAM-77 cannot run at, or whose sam-mini analogue (a
    quarter of the side) sam-mini cannot, saying which sizes work.

    Example:
        >>> check_sizes([1024, 768, 512])
        >>> check_sizes([1000])
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --sizes 1000: --image-size 1000 is not a multiple of the patch size 16; sizes that work for this 1024 px teacher (patch 16, window 14): 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 336, 352, 384, 416, 432, 448, 480, 512, 528, 576, 624, 640, 672, 704, 768, 832, 896, 1024
    """
    from ..models.regrid import check_image_size
    from ..models.spec import PRESETS

    for size in sizes:
        try:
            check_image_size(PRESETS["vit_p77"].encoder, size)  # a multiple of 16: a quarter is whole
            check_image_size(PRESETS["sam_mini"].encoder, size * MINI_SIZE // TEACHER_SIZE)
        except UsageError as err:
            raise UsageError(f"--sizes {size}: {err}") from None


# ---------------------------------------------------------------------------------------- exports
def _export_int8(load: Callable[[], tuple[Any, Any]], key: str, out: Path, reuse: bool, say: Callable[[str], None],
                calib_images: int = 16) -> Path:
    """Export (or reuse) a CPU bundle holding fp32 and int8 artifacts for both CPU runtimes; bf16
    and int8-bf16 run those with OpenVINO's bf16 hint. ``calib_images`` procedural images calibrate
    int8 (half as many gate it against fp32)."""
    from ..bench.matrix import MatrixConfig, export_cached

    cfg = MatrixConfig(workdir=str(out.parent), reuse=reuse, calib_images=calib_images,
                       gate_images=max(calib_images // 2, 1))
    sam, spec = load()
    export_cached(sam, spec, key, out, "int8", cfg, say)
    return out


def p77_loader(size: int, attention: str) -> Callable[[], tuple[Any, Any]]:
    """SlimSAM-77 with random weights (seed 0), ``attention`` applied, moved to input ``size``."""
    def load() -> tuple[Any, Any]:
        from ..models.regrid import resample_model
        from .precision_report import _random

        sam, spec = _random("vit_p77", attention)()
        return (sam, spec) if size == spec.image_size else resample_model(sam, spec, size)

    return load


def student_loader(path: Path) -> Callable[[], tuple[Any, Any]]:
    def load() -> tuple[Any, Any]:
        from ..models.io import load_model

        return load_model(path)

    return load


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def students(sizes: Sequence[int], attentions: Sequence[str], students_dir: Path, workdir: Path,
             settings: dict[str, Any], images: int, threads: int | None, reuse: bool,
             say: Callable[[str], None], compress: bool = True) -> dict[tuple[int, str], Path]:
    """Compress (or reuse) each sam-mini analogue and export it; ``{(mini size, attention): bundle}``,
    with the shipped teacher under ``(256, "teacher")``. ``compress=False``: only the analogues
    already compressed with these settings (the others are left out, and their routes have no
    accuracy)."""
    from ..assets import require_reference_model
    from .precision_report import _shipped, _shipped_key
    from .resolution_report import compress_run, finished_run

    out = {(MINI_SIZE, "teacher"): _export_int8(_shipped, _shipped_key(), workdir / "sam-mini", reuse, say)}
    for attention in attentions:
        for size in sizes:
            name = student_name(size, attention)
            job = dict(settings) if attention == "keep" else {**settings, "global_attention": attention}
            if not compress and not finished_run(students_dir / name, job, None if size == MINI_SIZE else size):
                say(f"{name}: not compressed with these settings; left out (--no-compress)")
                continue
            compress_run(size, MINI_SIZE, students_dir, job, images, threads, name=name)
            model = students_dir / name / "model.safetensors"
            out[(size, attention)] = _export_int8(student_loader(model), f"{name}:{_digest(model)}",
                                                  workdir / name, reuse, say)
    require_reference_model()
    return out


def p77_bundles(sizes: Sequence[int], attentions: Sequence[str], workdir: Path, reuse: bool,
                say: Callable[[str], None]) -> dict[tuple[int, str], Path]:
    """Export (or reuse) the SlimSAM-77 architecture at every size and attention (random weights:
    int8 calibrated on 8 images, enough for timing)."""
    return {(s, a): _export_int8(p77_loader(s, a), f"vit_p77-{a}@{s}:random-seed0", workdir / f"p77-{s}-{a}",
                                 reuse, say, calib_images=8)
            for a in attentions for s in sizes}


def peer_bundle(workdir: Path, reuse: bool, say: Callable[[str], None]) -> Path:
    """MobileSAM's bundle (random weights) with fp32 and int8 artifacts (int8 calibrated on 8
    procedural images, as the SlimSAM-77 routes are)."""
    from ..exporters.peer_export import export_peer
    from ..exporters.precision import PrecisionOptions

    dest = workdir / f"peer-{PEER}"
    if not (reuse and (dest / "manifest.json").exists()):
        say(f"peer {PEER}: exporting (fp32 + int8)")
        export_peer(PEER, dest, validate=False, reference=False, precisions=("fp32", "int8"),
                    precision_options=PrecisionOptions(calib_images=8, gate_images=4, allow_accuracy_drop=True))
    return dest


# ---------------------------------------------------------------------------------------- measure
def runnable(pairs: Sequence[tuple[str, str]], info: dict) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """Split ``pairs`` into those this machine runs and the refused ones (with the reason).

    Example:
        >>> ok, refused = runnable([("openvino", "fp32"), ("openvino", "bf16")], {"supports_bf16": False})
        >>> ok, refused[0]["precision"]
        ([('openvino', 'fp32')], 'bf16')
    """
    from ..devices import why_not

    ok, refused = [], []
    for backend, precision in pairs:
        reason = why_not(precision, info)
        if reason:
            refused.append({"backend": backend, "precision": precision, "reason": reason})
        else:
            ok.append((backend, precision))
    return ok, refused


def measure_accuracy(bundles: dict[tuple[int, str], Path], pairs: Sequence[tuple[str, str]], limit: int,
                     say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Point / box mIoU of every sam-mini bundle on every pair, through that runtime and precision."""
    from ..eval.run import run_eval

    rows = []
    for (size, attention), bundle in bundles.items():
        for backend, precision in pairs:
            say(f"accuracy: {bundle.name} {backend}/{precision}")
            rep = run_eval(bundle, backend=backend, precision=precision, limit=limit)
            rows.append({"size": size, "attention": attention, "backend": backend, "precision": precision,
                         "point_miou": round(float(rep["point"]["miou"]), 4),
                         "box_miou": round(float(rep["box"]["miou"]), 4), "images": rep["n_images"]})
    return rows


def _subjects(p77: dict[tuple[int, str], Path], peer: Path, pairs: Sequence[tuple[str, str]]) -> list[Any]:
    from ..bench.suite import Subject

    subs = [Subject(f"p77-{s}-{a}", str(b), pairs=tuple(pairs),
                    latency_only="SlimSAM-77 architecture, random weights: latency only "
                                 "(accuracy: the sam-mini analogue)")
            for (s, a), b in p77.items()]
    return subs + [Subject(f"{PEER} (random weights)", str(peer), peer=PEER, pairs=tuple(pairs))]


# ---------------------------------------------------------------------------------------- join
def _p50(row: dict[str, Any], stage: str) -> float | None:
    return (row.get("stages", {}).get(stage) or {}).get("p50_ms")


def mobilesam_best(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """MobileSAM's click row with the lowest encoder p50 (its best of every runtime and precision).

    Example:
        >>> rows = [{"peer": "mobilesam", "scenario": "click", "stages": {"encoder": {"p50_ms": 9.0}}},
        ...         {"peer": "mobilesam", "scenario": "click", "stages": {"encoder": {"p50_ms": 7.0}}},
        ...         {"peer": None, "scenario": "click", "stages": {"encoder": {"p50_ms": 1.0}}}]
        >>> mobilesam_best(rows)["stages"]["encoder"]["p50_ms"]
        7.0
    """
    mine = [r for r in rows if r.get("peer") == PEER and r.get("scenario") == "click" and _p50(r, "encoder")]
    return min(mine, key=lambda r: _p50(r, "encoder")) if mine else None


def join(bench_rows: Sequence[dict[str, Any]], accuracy: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per route: its latency (SlimSAM-77 bundle) joined with its analogue's accuracy.

    ``kept`` is the analogue's point mIoU over the teacher's fp32 point mIoU (same data, same
    runtime family: the teacher row of ``accuracy`` with backend and precision ``fp32`` of the
    same backend); ``ratio`` the route's encoder p50 over MobileSAM's best.

    Example:
        >>> bench = [{"model": "p77-768-windowed", "peer": None, "scenario": "click", "backend": "openvino",
        ...           "precision": "int8", "stages": {"encoder": {"p50_ms": 50.0},
        ...           "decoder_plus_postprocess": {"p50_ms": 8.0}}},
        ...          {"model": "mobilesam", "peer": "mobilesam", "scenario": "click", "backend": "openvino",
        ...           "precision": "int8", "stages": {"encoder": {"p50_ms": 200.0}}}]
        >>> acc = [{"size": 256, "attention": "teacher", "backend": "openvino", "precision": "fp32", "point_miou": 0.8},
        ...        {"size": 192, "attention": "windowed", "backend": "openvino", "precision": "int8", "point_miou": 0.72}]
        >>> r = join(bench, acc)[0]
        >>> r["label"], r["ratio"], r["kept"], r["meets"]
        ('768 px windowed openvino/int8', 0.25, 0.9, True)
    """
    best = mobilesam_best(bench_rows)
    best_ms = _p50(best, "encoder") if best else None
    acc = {(a["size"], a["attention"], a["backend"], a["precision"]): a for a in accuracy}
    out = []
    for r in bench_rows:
        if r.get("peer") or r.get("scenario") != "click" or not str(r.get("model", "")).startswith("p77-"):
            continue
        _, size, attention = str(r["model"]).split("-", 2)
        route = Route(int(size), attention, r["backend"], r["precision"])
        enc, dec = _p50(r, "encoder"), _p50(r, "decoder_plus_postprocess")
        mine = acc.get((route.mini_size, attention, route.backend, route.precision))
        teacher = acc.get((MINI_SIZE, "teacher", route.backend, "fp32"))
        kept = (round(mine["point_miou"] / teacher["point_miou"], 4)
                if mine and teacher and teacher.get("point_miou") else None)
        ratio = round(enc / best_ms, 4) if enc and best_ms else None
        out.append({"label": route.label, "size": route.size, "attention": attention, "backend": route.backend,
                    "precision": route.precision, "encoder_ms": enc, "decoder_post_ms": dec,
                    "click_fps": round(1000.0 / (enc + dec), 2) if enc and dec else None,
                    "ratio": ratio, "point_miou": mine["point_miou"] if mine else None,
                    "box_miou": mine.get("box_miou") if mine else None, "kept": kept,
                    "meets": bool(ratio is not None and kept is not None and ratio <= GOAL_RATIO and kept >= GOAL_KEPT)})
    return sorted(out, key=lambda x: (x["encoder_ms"] is None, x["encoder_ms"] or 0.0))


def _fast_with_analogue(routes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routes at <= 0.5x MobileSAM's best whose analogue was measured."""
    return [r for r in routes if r["ratio"] is not None and r["ratio"] <= GOAL_RATIO and r["kept"] is not None]


def _kept_then_fast(r: dict[str, Any]) -> tuple[float, float]:
    """Sort key: kept to a tenth of a point (closer is the same accuracy: int8 and fp32 of one
    analogue differ in the fourth decimal), then the faster encoder."""
    return round(r["kept"], 3), -(r["encoder_ms"] or 0.0)


def pick_best(routes: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The route to show off: the fastest one meeting both goals, else the fastest at <= 0.5x
    MobileSAM that keeps the most (to a tenth of a point), else the one that keeps the most.

    Example:
        >>> pick_best([{"encoder_ms": 5, "ratio": 0.2, "kept": 0.6, "meets": False},
        ...            {"encoder_ms": 9, "ratio": 0.4, "kept": 0.8, "meets": False}])["kept"]
        0.8
        >>> pick_best([{"encoder_ms": 9, "ratio": 0.4, "kept": 0.8361, "meets": False},
        ...            {"encoder_ms": 8, "ratio": 0.3, "kept": 0.8358, "meets": False}])["encoder_ms"]
        8
    """
    meets = [r for r in routes if r["meets"]]
    if meets:
        return min(meets, key=lambda r: r["encoder_ms"])
    fast = _fast_with_analogue(routes)
    pool = fast or [r for r in routes if r["kept"] is not None]
    return max(pool, key=_kept_then_fast) if pool else None


# ---------------------------------------------------------------------------------------- render
def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def goal_lines(result: dict[str, Any]) -> list[str]:
    """The goals of issue 18, each with what this run measured.

    Example:
        >>> res = {"routes": [{"label": "r", "encoder_ms": 10.0, "decoder_post_ms": 12.0, "ratio": 0.3,
        ...                    "kept": 0.7, "meets": False, "size": 1024, "backend": "openvino", "precision": "fp32"}],
        ...        "mobilesam_best": {"label": "m", "encoder_ms": 33.3}, "machine": {"supports_bf16": False},
        ...        "video": []}
        >>> goal_lines(res)[0].startswith("- **Encoder <= 0.5x MobileSAM's best with >= 88 % kept: not met")
        True
    """
    routes, best = result["routes"], result.get("mobilesam_best") or {}
    meets = [r for r in routes if r["meets"]]
    head = "- **Encoder <= 0.5x MobileSAM's best with >= 88 % kept: "
    if meets:
        f = min(meets, key=lambda r: r["encoder_ms"])
        first = (f"{head}met** by {len(meets)} route(s); the fastest, {f['label']}, runs the encoder in "
                 f"{_ms(f['encoder_ms'])} ms ({f['ratio']:.2f}x MobileSAM's best, {best.get('label')} "
                 f"{_ms(best.get('encoder_ms'))} ms) and keeps {_pct(f['kept'])}.")
    else:
        fast = _fast_with_analogue(routes)
        keep = max(fast, key=_kept_then_fast) if fast else None
        top = max((r for r in routes if r["kept"] is not None), key=lambda r: r["kept"], default=None)
        first = f"{head}not met** in this run. MobileSAM's best encoder: {best.get('label')} {_ms(best.get('encoder_ms'))} ms. "
        if keep:
            first += (f"Of the {len(fast)} routes with an analogue at <= 0.5x it, {keep['label']} keeps the most: "
                      f"{_pct(keep['kept'])} ({keep['ratio']:.2f}x). " if len(fast) > 1 else
                      f"The one route with an analogue at <= 0.5x it, {keep['label']}, keeps {_pct(keep['kept'])} "
                      f"({keep['ratio']:.2f}x). ")
        if top:
            first += f"The most kept by any route: {_pct(top['kept'])} ({top['label']}, {top['ratio']:.2f}x)."
    dec = [r for r in routes if r["decoder_post_ms"] is not None]
    lines = [first]
    if dec:
        size = max(r["size"] for r in dec)
        d = min((r for r in dec if r["size"] == size), key=lambda r: r["decoder_post_ms"])
        bf16 = result["machine"].get("supports_bf16")
        lines.append(f"- **Decoder + postprocessing per prompt at {size} px:** best {_ms(d['decoder_post_ms'])} ms "
                     f"({d['backend']}/{d['precision']}); the goal is <= 15 ms at 1024 px on a CPU with BF16 — this "
                     "CPU " + ("has BF16." if bf16 else "has no BF16, so the bf16 decoder is refused here and the "
                                                       "number is fp32 / int8's.")
                     + " At 1024 px against segment-anything's decoder graph and postprocessing before issue 18: "
                       "[decoder.md](decoder.md) (BF16 CPU) and [decoder-avx2.md](decoder-avx2.md) (AVX2 only), "
                       "`scripts/bench_decoder.py`.")
    for v in result.get("video", []):
        lines.append(f"- **Click-to-mask tracking, {v['label']}:** {v['fps']:.1f} fps through the video pipeline "
                     f"(frame latency p50 {_ms(v['frame_p50_ms'])} ms, {_tracked(v['objects'])} per frame); "
                     + (f"serial encoder + one prompt: {v['click_fps']:.1f} fps." if v.get("click_fps") else ""))
    return lines


def render(result: dict[str, Any], plot_name: str = "speed/routes.png") -> str:
    """The Markdown page of a speed ``result`` (see :func:`main`), showing the plot at ``plot_name``
    (relative to the page)."""
    m = result["machine"]
    lines = ["# Speed routes: input size x windowed attention x precision, against MobileSAM", "",
             f"Made by `{result['command']}` ({result['elapsed_s'] / 60:.0f} min)"
             + (f", with the timings of an earlier `{result['latency_command']}` in the same work folder"
                if result.get("latency_command") and result["latency_command"] != result["command"] else "")
             + "; `python scripts/speed.py` alone does both in one run.", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} logical cores, flags: "
             f"{', '.join(m.get('isa') or []) or 'none of note'}; BF16: {'yes' if m.get('supports_bf16') else 'no'}. "
             f"Load average {result['loadavg_start']} -> {result['loadavg_end']} (start -> end of the timed part: "
             f"{load_note(result['loadavg_start'], result['loadavg_end'], m.get('cores'))}).", "",
             "## Goals (issue 18)", "", *goal_lines(result), "",
             "## Every route", "",
             "Latency: the SlimSAM-77 architecture (random weights) at that input size and attention, click scenario "
             f"on a {result['image']} frame, p50 over {result['repeats']} interleaved repeats in fresh processes. "
             "Accuracy: the route's sam-mini analogue (a quarter of the input side, same attention, same runtime and "
             "precision), point mIoU on the procedural held-out set; kept = that over the teacher's fp32 point mIoU "
             "on the same runtime.", "",
             "| route | encoder p50 ms | x MobileSAM best | decoder + post / prompt ms | click fps (serial) "
             "| analogue point mIoU | kept | both goals |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["routes"]:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        miou = "–" if r["point_miou"] is None else f"{r['point_miou']:.4f}"
        fps = "–" if r["click_fps"] is None else f"{r['click_fps']:.1f}"
        lines.append(f"| {r['label']} | {_ms(r['encoder_ms'])} | {ratio} | {_ms(r['decoder_post_ms'])} | {fps} | "
                     f"{miou} | {_pct(r['kept'])} | {'yes' if r['meets'] else 'no'} |")
    lines += ["", "## MobileSAM (TinyViT-5M encoder, random weights)", "",
              "| runtime/precision | encoder p50 ms | decoder + post / prompt ms |", "|---|---|---|"]
    for r in result["mobilesam"]:
        lines.append(f"| {r['backend']}/{r['precision']} | {_ms(r['encoder_ms'])} | {_ms(r['decoder_post_ms'])} |")
    if result.get("refused"):
        lines += ["", "## Refused on this machine", ""]
        lines += [f"- {x['backend']}/{x['precision']}: {x['reason']}" for x in result["refused"]]
    s = result["settings"]
    lines += ["", "## The sam-mini analogues", "",
              f"`compress` of the shipped sam-mini (256 px teacher) with ratio {s['ratio']}, {s['steps']} steps per "
              f"phase, lr {s['lr']}, alternate slimming + disturbed Taylor{_embedding_target(s)}{_decoder_phase(s)}, "
              f"{result['images']} "
              "procedural images, at "
              "each size (`--image-size`) and attention (`--global-attention`); each exported (fp32 + int8, "
              f"calibrated on procedural images) and evaluated on {result['accuracy_images']} held-out procedural "
              "images through the runtime and precision of the row.", "",
              "| model | runtime/precision | point mIoU | box mIoU |", "|---|---|---|---|"]
    for a in result["accuracy"]:
        name = "teacher (sam-mini)" if a["attention"] == "teacher" else student_name(a["size"], a["attention"])
        lines.append(f"| {name} | {a['backend']}/{a['precision']} | {a['point_miou']:.4f} | {a['box_miou']:.4f} |")
    lines += ["", f"![encoder latency vs point mIoU kept]({plot_name})", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], dest: Path) -> Path:
    """``routes.png``: encoder p50 against point mIoU kept, one point per route, with the goals."""
    from ..bench.plot import headless_pyplot, save_png

    with headless_pyplot() as plt:
        fig, ax = plt.subplots(figsize=(8, 5))
        markers = {1024: "o", 768: "s", 512: "^"}
        for r in (r for r in result["routes"] if r["kept"] is not None and r["encoder_ms"]):
            color = "tab:blue" if r["attention"] == "keep" else "tab:orange"
            ax.scatter([r["encoder_ms"]], [100 * r["kept"]], marker=markers.get(r["size"], "x"), color=color, s=30)
            ax.annotate(f"{r['size']} {r['backend'][:2]}/{r['precision']}", (r["encoder_ms"], 100 * r["kept"]),
                        textcoords="offset points", xytext=(3, 3), fontsize=6)
        best = result.get("mobilesam_best")
        if best:
            ax.axvline(best["encoder_ms"], color="grey", linestyle="--", linewidth=1,
                       label=f"MobileSAM best ({best['label']})")
            ax.axvline(GOAL_RATIO * best["encoder_ms"], color="green", linestyle=":", linewidth=1,
                       label="goal: 0.5x MobileSAM best")
        ax.axhline(100 * GOAL_KEPT, color="green", linestyle="-.", linewidth=1, label="goal: 88 % kept")
        ax.set_xscale("log")
        shapes = ", ".join(f"{m} {size}" for size, m in markers.items())
        ax.set_xlabel(f"encoder p50 (ms, log scale); blue: plain attention, orange: windowed; {shapes}, x other sizes")
        ax.set_ylabel("point mIoU kept by the sam-mini analogue (%)")
        ax.set_title("speed routes vs MobileSAM, same machine, same run", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            return save_png(fig, dest)
        finally:
            plt.close(fig)


# ---------------------------------------------------------------------------------------- main
def _bench_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("model", "peer", "backend", "precision", "scenario", "stages", "extra", "counts")
    return [{k: r.get(k) for k in keep} for r in report["rows"]]


def video_rows(routes: Sequence[dict[str, Any]], mobilesam: dict[str, Any] | None, p77: dict, peer: Path,
               base: Any, repeats: int, objects: int = 1) -> list[dict[str, Any]]:
    """The video scenario for the best route and MobileSAM's best row, interleaved, ``objects``
    tracked per frame (1: click-to-mask tracking, the encoder and one prompt per frame)."""
    from dataclasses import replace

    from ..bench.suite import Subject, bench_suite

    best = pick_best(routes)
    subs = []
    if best:
        subs.append(Subject(best["label"], str(p77[(best["size"], best["attention"])]),
                            pairs=((best["backend"], best["precision"]),), latency_only="latency only"))
    if mobilesam:
        subs.append(Subject(f"MobileSAM {mobilesam['backend']}/{mobilesam['precision']}", str(peer), peer=PEER,
                            pairs=((mobilesam["backend"], mobilesam["precision"]),)))
    if not subs:
        return []
    rep = bench_suite(subs, scenarios=("video",), repeats=repeats, base=replace(base, runs=max(base.runs, 12), objects=objects),
                      accuracy=False, peak=False, progress=lambda d, t, label: _say(f"[video {d}/{t}] {label}"))
    out = []
    for r, s in zip(rep["rows"], subs):
        out.append({"label": s.label, "fps": video_fps(r),
                    "fps_repeats": [x.get("fps") for x in r.get("extra_repeats", [])],
                    "frame_p50_ms": _p50(r, "frame"),
                    "objects": (r.get("counts") or {}).get("objects", 0) // max(r.get("repeats", 1), 1)})
    return out


def _tracked(objects: int) -> str:
    return "1 object tracked" if objects == 1 else f"{objects} objects tracked"


def video_fps(row: dict[str, Any]) -> float:
    """Frames per second of a video row of the bench report: the median over its repeats.

    Example:
        >>> video_fps({"extra_repeats": [{"fps": 4.0}, {"fps": 6.0}, {"fps": 5.0}]})
        5.0
    """
    import statistics

    values = [x["fps"] for x in row.get("extra_repeats") or [] if x.get("fps")]
    if not values and (row.get("extra") or {}).get("fps"):
        values = [row["extra"]["fps"]]
    return round(statistics.median(values), 2) if values else 0.0


def measure_latency(a: argparse.Namespace, ok: Sequence[tuple[str, str]], base: Any) -> dict[str, Any]:
    """Export (or reuse) the SlimSAM-77 routes and MobileSAM, then time every row, interleaved;
    kept in ``WORKDIR/latency.json`` (``--reuse-latency`` takes it back for the same settings)."""
    from ..bench.suite import bench_suite

    record = a.workdir / "latency.json"
    key = {"sizes": list(a.sizes), "attentions": list(a.attentions), "pairs": [list(p) for p in ok],
           "repeats": a.repeats, "runs": a.runs, "prompts": a.prompts, "threads": a.threads}
    if a.reuse_latency and record.exists():
        kept = json.loads(record.read_text(encoding="utf-8"))
        if kept.get("key") == key:
            _say(f"latency: reusing {record}")
            return kept
    p77 = p77_bundles(a.sizes, a.attentions, a.workdir, a.reuse, _say)
    peer = peer_bundle(a.workdir, a.reuse, _say)
    load0 = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rep = bench_suite(_subjects(p77, peer, ok), repeats=a.repeats, base=base, accuracy=False, peak=False,
                      progress=lambda d, t, label: _say(f"[{d}/{t}] {label}"))
    out = {"key": key, "command": _command(a.argv), "rows": _bench_rows(rep), "loadavg_start": load0,
           "loadavg_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
           "bundles": {f"{s}-{att}": str(b) for (s, att), b in p77.items()}, "peer": str(peer)}
    write_text_atomic(record, json.dumps(out, indent=1, default=str))
    return out


def _embedding_target(settings: dict[str, Any]) -> str:
    """The analogues' embedding target in the compress report's words (none: the teacher's own, resized).

    Example:
        >>> _embedding_target({"embedding_target": "regridded"})
        " toward the embedding of the teacher moved to the student's input size (`--embedding-target regridded`)"
    """
    from ..compress.report import embedding_target_words

    words = embedding_target_words(settings)
    return f" toward {words}" if words else ""


def _decoder_phase(settings: dict[str, Any]) -> str:
    """The analogues' decoder phase in the compress report's words (none: the teacher's decoder).

    Example:
        >>> _decoder_phase({"decoder_steps": 200, "decoder_lr": 1e-4, "decoder_trains": "encoder+decoder"})
        ", then (`--decoder-steps`) the encoder and mask decoder tuned on the teacher's masks for 200 steps (lr 0.0001)"
    """
    from ..compress.report import decoder_phase_words

    return f", then (`--decoder-steps`) the {decoder_phase_words(settings)}" if settings.get("decoder_steps") else ""


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry (``python scripts/speed.py --help``)."""
    from ..bench.harness import BenchConfig
    from ..bench.matrix import machine_summary
    from ..devices import detected
    from ..limits import MAX_OBJECTS
    from ..compress.choices import DECODER_PROMPTS, DECODER_TRAINS, EMBEDDING_TARGETS, LATER_DEFAULTS
    from .resolution_report import DEMO_SETTINGS

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="combined speed routes vs MobileSAM -> docs/results/speed.md")
    ap.add_argument("--workdir", type=Path, default=Path("runs/speed"), help="bundles and measurements (kept)")
    ap.add_argument("--students", type=Path, default=Path("runs/resolution"),
                    help="sam-mini compress runs (shared with scripts/resolution.py)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/speed.md"))
    ap.add_argument("--reuse", action="store_true", help="reuse bundles already exported under --workdir")
    ap.add_argument("--reuse-latency", action="store_true",
                    help="reuse WORKDIR/latency.json when measured with the same sizes, pairs and protocol")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--attentions", nargs="+", default=list(ATTENTIONS), choices=ATTENTIONS)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats, each in a fresh process")
    ap.add_argument("--runs", type=int, default=3, help="encoder runs per repeat")
    ap.add_argument("--prompts", type=int, default=10, help="one-point prompts per repeat")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's)")
    ap.add_argument("--ratio", type=float, default=DEMO_SETTINGS["ratio"])
    ap.add_argument("--steps", type=int, default=DEMO_SETTINGS["steps"], help="distillation steps per phase")
    ap.add_argument("--lr", type=float, default=DEMO_SETTINGS["lr"])
    ap.add_argument("--embedding-target", default=LATER_DEFAULTS["embedding_target"], choices=tuple(EMBEDDING_TARGETS),
                    help="what each analogue's encoder phases distil toward (compress --embedding-target)")
    ap.add_argument("--decoder-steps", type=int, default=LATER_DEFAULTS["decoder_steps"],
                    help="steps of each analogue's mask-decoder phase (compress --decoder-steps; 0: the teacher's decoder)")
    ap.add_argument("--decoder-lr", type=float, default=LATER_DEFAULTS["decoder_lr"], help="its peak learning rate (compress --decoder-lr)")
    ap.add_argument("--decoder-trains", default=LATER_DEFAULTS["decoder_trains"], choices=tuple(DECODER_TRAINS),
                    help="what its mask loss trains (compress --decoder-trains)")
    ap.add_argument("--decoder-prompts", default=LATER_DEFAULTS["decoder_prompts"], choices=DECODER_PROMPTS,
                    help="its prompt sets (compress --decoder-prompts)")
    ap.add_argument("--images", type=int, default=1000, help="procedural distillation images")
    ap.add_argument("--accuracy-images", type=int, default=64, help="held-out procedural images per accuracy row")
    ap.add_argument("--video-repeats", type=int, default=3)
    ap.add_argument("--video-objects", type=int, default=1, choices=range(1, MAX_OBJECTS + 1), metavar=f"1..{MAX_OBJECTS}",
                    help="objects tracked per frame in the video rows (1: encoder + one prompt per frame)")
    ap.add_argument("--no-compress", action="store_true",
                    help="use only the sam-mini analogues already compressed under --students (no new compress runs)")
    ap.add_argument("--latency-only", action="store_true",
                    help="only time the routes into WORKDIR/latency.json (join later with --reuse-latency)")
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the page from the JSON next to --out (no measuring)")
    a = ap.parse_args(argv)
    a.argv = argv
    if a.render_only:
        return render_only(a.out, argv)
    try:
        check_sizes(a.sizes)
    except UsageError as err:
        ap.error(str(err))
    t0 = time.perf_counter()
    info = detected()
    ok, refused = runnable(PAIRS, info)
    base = BenchConfig(bundle="", backend="", threads=a.threads, image_hw=(720, 1280), warmup=1, runs=a.runs,
                       prompts=a.prompts, energy="none")
    latency = measure_latency(a, ok, base)
    if a.latency_only:
        _say(f"timed {len(latency['rows'])} rows into {a.workdir / 'latency.json'}")
        return latency
    settings = {**DEMO_SETTINGS, "ratio": a.ratio, "steps": a.steps, "lr": a.lr,
                **({"embedding_target": a.embedding_target} if a.embedding_target != "teacher" else {}),
                **({"decoder_steps": a.decoder_steps, "decoder_lr": a.decoder_lr, "decoder_trains": a.decoder_trains,
                    "decoder_prompts": a.decoder_prompts}
                   if a.decoder_steps else {})}
    minis = students([s * MINI_SIZE // TEACHER_SIZE for s in a.sizes], a.attentions, a.students, a.workdir,
                     settings, a.images, a.threads, a.reuse, _say, compress=not a.no_compress)
    accuracy = measure_accuracy(minis, ok, a.accuracy_images, _say)
    result = derive({"latency_rows": latency["rows"], "accuracy": accuracy, "video": []})
    p77 = {tuple(k.split("-", 1)): Path(v) for k, v in latency["bundles"].items()}
    p77 = {(int(s), att): b for (s, att), b in p77.items()}
    result["video"] = video_rows(result["routes"], result["mobilesam_best"], p77, Path(latency["peer"]), base,
                                 a.video_repeats, a.video_objects)
    result.update({"command": _command(argv), "latency_command": latency.get("command"),
                   "machine": machine_summary(), "loadavg_start": latency["loadavg_start"],
                   "loadavg_end": latency["loadavg_end"], "image": "720x1280", "repeats": a.repeats,
                   "settings": settings, "images": a.images, "accuracy_images": a.accuracy_images,
                   "refused": refused, "elapsed_s": round(time.perf_counter() - t0, 1)})
    return _publish(derive(result), a.out)


def _command(argv: Sequence[str]) -> str:
    return ("python scripts/speed.py " + shlex.join(argv)).strip()


def _publish(result: dict[str, Any], out: Path) -> dict[str, Any]:
    plot(result, out.parent / out.stem / "routes.png")
    publish(out, render(result, f"{out.stem}/routes.png"), result)
    return result


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """Fill in what a result's measurements imply (``latency_rows`` + ``accuracy``): the routes,
    MobileSAM's rows and best row, and the serial click fps of the video rows; returns ``result``.

    Example:
        >>> rows = [{"model": "m", "peer": "mobilesam", "backend": "openvino", "precision": "fp32",
        ...          "scenario": "click", "stages": {"encoder": {"p50_ms": 90.0},
        ...          "decoder_plus_postprocess": {"p50_ms": 10.0}}}]
        >>> r = derive({"latency_rows": rows, "accuracy": [],
        ...             "video": [{"label": "MobileSAM openvino/fp32", "fps": 5.0}]})
        >>> r["mobilesam_best"]["click_fps"], r["video"][0]["click_fps"]
        (10.0, 10.0)
    """
    rows = result["latency_rows"]
    result["routes"] = join(rows, result["accuracy"])
    result["mobilesam"] = [{"backend": r["backend"], "precision": r["precision"], "encoder_ms": _p50(r, "encoder"),
                            "decoder_post_ms": _p50(r, "decoder_plus_postprocess")}
                           for r in rows if r.get("peer") == PEER]
    best = mobilesam_best(rows)
    info = None
    if best:
        enc, dec = _p50(best, "encoder"), _p50(best, "decoder_plus_postprocess")
        info = {"label": f"{best['backend']}/{best['precision']}", "encoder_ms": enc, "decoder_post_ms": dec,
                "backend": best["backend"], "precision": best["precision"],
                "click_fps": round(1000.0 / (enc + dec), 2) if enc and dec else None}
    result["mobilesam_best"] = info
    for v in result.get("video", []):
        route = next((x for x in result["routes"] if x["label"] == v["label"]), None)
        v["click_fps"] = (route or (info if info and v["label"] == f"MobileSAM {info['label']}" else None) or {}
                          ).get("click_fps")
    return result


def render_only(out: Path, argv: Sequence[str]) -> dict[str, Any]:
    """Re-render ``out`` (and its plot) from the JSON next to it, the derived columns recomputed."""
    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    return _publish(derive(result), out)


if __name__ == "__main__":  # python -m slimsam_edge.research.speed_report
    main()
