"""Latency and accuracy of one model on every runtime x precision: the table of docs/results/precision.md.

For each model, :func:`run_matrix` exports one ``--target cpu`` bundle per reduced precision
(the pairs come from the cpu profile, :func:`target_pairs`)
(each also holds the fp32 artifacts, the reference of its accuracy gate), benchmarks every
``(backend, precision)`` pair in its own process (:func:`~slimsam_edge.bench.harness.run_config`)
and takes the agreement with fp32 (and mIoU where the gate images have labels) from the bundle
manifest. A pair a machine cannot run (bf16 without AVX512-BF16/AMX, a missing runtime) becomes a
row saying why instead of a number. :func:`render_markdown` writes the table.

Illustration (not run as a doctest: it needs files or a model)::

    cfg = MatrixConfig(workdir="/tmp/m", runs=2, prompts=5)
    result = run_matrix([MatrixModel("sam-mini", load)], cfg)
    print(render_markdown(result))
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import SlimSamEdgeError, UsageError

#: the target every model is exported to
MATRIX_TARGET = "cpu"


def target_pairs(target: str = MATRIX_TARGET) -> tuple[tuple[str, str], ...]:
    """Every (backend, precision) pair of ``target``'s profile, in table order (backends in
    preference order; fp32, then bf16, fp16, int8, int8-bf16).

    Example:
        >>> target_pairs("onnx")
        (('onnxruntime', 'fp32'), ('onnxruntime', 'fp16'), ('onnxruntime', 'int8'))
    """
    from ..devices import load_profile

    order = ("fp32", "bf16", "fp16", "int8", "int8-bf16")
    profile = load_profile(target)
    return tuple((b, p) for b in profile.backends for p in sorted(profile.precisions[b], key=order.index))


#: (backend, precision) pairs measured by default, in table order
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = target_pairs()


@dataclass(frozen=True)
class MatrixModel:
    """One model of the table.

    Arguments:
        name: row label ("SlimSAM-77 @1024, random weights").
        load: returns ``(sam, spec)``; called once.
        trained: whether mIoU against labels means anything (random weights: agreement only).
        pairs: the (backend, precision) pairs to measure (default :data:`DEFAULT_PAIRS`).
        note: a sentence printed under the table.
        key: identifies the weights (e.g. a file hash); bundles are reused only for the same key.
    """

    name: str
    load: Callable[[], tuple[Any, Any]]
    trained: bool = True
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS
    note: str = ""
    key: str = ""


@dataclass(frozen=True)
class MatrixConfig:
    """Benchmark and export settings shared by every model."""

    workdir: str
    runs: int = 5
    warmup: int = 1
    prompts: int = 20
    threads: int | None = None
    image_hw: tuple[int, int] = (1500, 2250)
    calib_images: int = 32
    gate_images: int = 8
    resize: str = "fast"
    reuse: bool = False  # take bundles already under workdir (verified) instead of exporting again
    export_only: bool = False  # export (and gate) now, benchmark in a later run with reuse on a quiet machine


def export_cached(sam: Any, spec: Any, key: str, out: Path, precision: str, cfg: MatrixConfig,
                  say: Callable[[str], None]) -> Any:
    """Export ``sam`` (of ``spec``) as a CPU bundle with ``precision`` artifacts into ``out``; its
    manifest. With ``cfg.reuse`` a bundle already in ``out`` made from the same model id ``key``
    and spec is reused, not re-exported. int8 is calibrated on ``cfg.calib_images`` procedural
    images and gated on ``cfg.gate_images`` (a drop is recorded, not fatal: latency studies).

    Illustration (not run as a doctest: it exports a model)::

        manifest = export_cached(sam, spec, "vit_p77:random", Path("runs/p77"), "int8",
                                 MatrixConfig(workdir="runs", reuse=True), print)
    """
    from ..exporters.bundle_export import export_bundle
    from ..exporters.precision import PrecisionOptions

    if cfg.reuse and (out / "manifest.json").exists():
        from ..bundle import load_bundle

        manifest = load_bundle(out).manifest
        if manifest.model.get("id") == key and manifest.model.get("spec") == json.loads(spec.to_json()):
            say(f"{out.name}: reusing {out}")
            return manifest

    opts = PrecisionOptions(calib_images=cfg.calib_images, gate_images=cfg.gate_images, allow_accuracy_drop=True)
    return export_bundle(sam, spec, out, target=MATRIX_TARGET, precision=precision, precision_options=opts, model_id=key,
                         progress=lambda m: say(f"{out.name}: {m}"))


def _bundle_for(precision: str) -> str:
    """fp32 runs on the fp16 bundle's fp32 artifacts (every bundle holds them)."""
    return "fp16" if precision == "fp32" else precision


def measure_model(model: MatrixModel, cfg: MatrixConfig, say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Export, benchmark and gate ``model``; returns ``{"name", "spec", "rows", "export_s"}``."""
    from .harness import BenchConfig, run_config

    root = Path(cfg.workdir) / "".join(c if c.isalnum() else "-" for c in model.name.lower()).strip("-")
    sam, spec = model.load()
    manifests: dict[str, Any] = {}
    export_s: dict[str, float] = {}
    for precision in sorted({_bundle_for(p) for _, p in model.pairs}):
        t0 = time.perf_counter()
        try:
            manifests[precision] = export_cached(sam, spec, model.key or model.name, root / precision, precision, cfg, say)
        except (SlimSamEdgeError, MemoryError) as err:
            manifests[precision] = err
        export_s[precision] = round(time.perf_counter() - t0, 1)
    rows = []
    for backend, precision in () if cfg.export_only else model.pairs:
        row: dict[str, Any] = {"backend": backend, "precision": precision}
        manifest = manifests[_bundle_for(precision)]
        if isinstance(manifest, Exception):
            rows.append({**row, "error": f"export failed: {manifest}"})
            continue
        say(f"{model.name}: bench {backend}/{precision}")
        bench = BenchConfig(bundle=str(root / _bundle_for(precision)), backend=backend, precision=precision,
                            threads=cfg.threads, image_hw=cfg.image_hw, warmup=cfg.warmup, runs=cfg.runs,
                            prompts=cfg.prompts, resize=cfg.resize)
        try:
            res = run_config(bench)
        except (UsageError, SlimSamEdgeError) as err:
            rows.append({**row, "error": str(err)})
            continue
        row.update(encoder_p50_ms=res["encoder"]["p50_ms"], encoder_p90_ms=res["encoder"]["p90_ms"],
                   decoder_p50_ms=res["decoder_plus_postprocess"]["p50_ms"], peak_rss_mb=res["peak_rss_mb"],
                   notes=res.get("notes", []))
        acc = manifest.accuracy.get(f"{backend}/{precision}") if precision != "fp32" else None
        if acc and acc.get("measured"):
            row.update(agreement=acc["agreement"], agreement_min=acc["agreement_min"],
                       embedding_rel_err=acc.get("embedding_rel_err"),
                       miou=acc.get("miou"), miou_fp32=acc.get("miou_reference"))
        elif acc:
            row["agreement_note"] = acc.get("reason", "not measured")
        rows.append(row)
    return {"name": model.name, "trained": model.trained, "note": model.note, "rows": rows,
            "export_s": export_s, "image_size": spec.image_size,
            "encoder": {"embed_dim": spec.encoder.embed_dim, "head_dims": spec.encoder.head_dims()[:1],
                        "global_attn_indexes": list(spec.encoder.global_attn_indexes)}}


def machine_summary() -> dict[str, Any]:
    """CPU model, core count and the ISA flags that decide bf16 / VNNI (from
    :func:`slimsam_edge.devices.profile.detect`)."""
    from ..devices.profile import detect

    info = detect()
    return {"cpu": info["cpu_model"], "cores": info["cores_logical"],
            "isa": [f for f, present in info["cpu_flags"].items() if present],
            "supports_bf16": info["supports_bf16"], "python": info["python"]}


def run_matrix(models: list[MatrixModel], cfg: MatrixConfig, say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Measure every model; returns ``{"machine", "config", "models", "elapsed_s"}``.

    Example:
        >>> run_matrix([], MatrixConfig(workdir="/tmp/m"))["models"]
        []
    """
    if cfg.runs < 1 or cfg.prompts < 1:
        raise UsageError("runs and prompts must be >= 1")
    t0 = time.perf_counter()
    out = [measure_model(m, cfg, say) for m in models]
    return {"machine": machine_summary(), "config": asdict(cfg), "models": out,
            "elapsed_s": round(time.perf_counter() - t0, 1)}


def _num(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(result: dict[str, Any], *, command: str = "", extra: list[str] | None = None) -> str:
    """The markdown report of :func:`run_matrix`'s result (one table per model).

    Example:
        >>> r = {"machine": {"cpu": "x", "cores": 2, "isa": ["avx2"]}, "config": {"runs": 1}, "models": [
        ...     {"name": "m", "trained": False, "note": "", "export_s": {}, "rows": [
        ...         {"backend": "openvino", "precision": "fp32", "encoder_p50_ms": 10.0, "decoder_p50_ms": 2.0}]}]}
        >>> "| openvino | fp32 | 10.0 |" in render_markdown(r)
        True
    """
    m = result["machine"]
    lines = ["# Runtime x precision: latency and agreement with fp32", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa']) or 'unknown'}. "
             f"Encoder and decoder(+postprocessing, one point prompt) p50 over {result['config']['runs']} encoder "
             f"runs and {result['config'].get('prompts', '?')} prompts, each configuration in its own process; "
             "image 1500x2250 resized with cv2. Agreement: mean mask IoU between the precision's masks and fp32's "
             "on held-out procedural images (the export's accuracy gate); embedding rel. error: mean "
             "||e - e_fp32|| / ||e_fp32|| of the image embeddings there (telling where random weights give "
             "near-constant masks); mIoU against the labels of those images.",
             ""]
    if command:
        lines += [f"Regenerate: `{command}`", ""]
    for model in result["models"]:
        lines += [f"## {model['name']}", ""]
        if model.get("note"):
            lines += [model["note"], ""]
        lines += ["| runtime | precision | encoder p50 ms | decoder+post p50 ms | agreement (min) | embedding rel. error "
                  "| mIoU (fp32) | note |", "|---|---|---|---|---|---|---|---|"]
        fp32_miou = {r["backend"]: r["miou_fp32"] for r in model["rows"] if r.get("miou_fp32") is not None}
        for r in model["rows"]:
            if "error" in r:
                lines.append(f"| {r['backend']} | {r['precision']} | – | – | – | – | – | {r['error']} |")
                continue
            agree = "1 (reference)" if r["precision"] == "fp32" else (
                f"{r['agreement']:.4f} ({r['agreement_min']:.3f})" if "agreement" in r else "–")
            miou = "–"
            if model.get("trained") and r.get("miou") is not None:
                miou = f"{r['miou']:.4f} ({r['miou_fp32']:.4f})"
            elif model.get("trained") and r["precision"] == "fp32" and r["backend"] in fp32_miou:
                miou = f"{fp32_miou[r['backend']]:.4f}"
            note = r.get("agreement_note", "")
            err = "0" if r["precision"] == "fp32" else _num(r.get("embedding_rel_err"), 4)
            lines.append(f"| {r['backend']} | {r['precision']} | {_num(r.get('encoder_p50_ms'))} | "
                         f"{_num(r.get('decoder_p50_ms'))} | {agree} | {err} | {miou} | {note} |")
        lines.append("")
    lines += list(extra or [])
    return "\n".join(lines).rstrip() + "\n"
