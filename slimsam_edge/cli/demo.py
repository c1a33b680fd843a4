"""``slimsam-edge demo``: the main job end to end on the built-in model and data.

sam-mini (shipped) → SlimSAM compression (a short schedule) → validated cpu bundle of the compressed
model → mIoU of the teacher (PyTorch) and of the student through PyTorch, ONNX Runtime and OpenVINO
on held-out procedural data → one segmented image → latency per backend. Everything lands in
``--out`` with a JSON and a Markdown report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import emit_json, handle_errors
from .options import JsonOpt


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every artifact and the report.")] = Path("demo-output"),
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Model to use (default: the shipped sam-mini).")] = None,
    images: Annotated[int, typer.Option("--images", min=1, help="Held-out procedural images to evaluate on.")] = 32,
    ratio: Annotated[float, typer.Option("--ratio", help="Pruning ratio of the compression step.")] = 0.5,
    compress_steps: Annotated[int, typer.Option("--compress-steps", min=0, help="Distillation steps per phase (0: skip compression, export the teacher).")] = 40,
    json_out: JsonOpt = False,
) -> None:
    """Run compress → export → eval → segment → bench on the built-in model and data; print where it all is."""
    from rich.console import Console

    from ..assets import require_reference_model
    from ..bench.harness import BenchConfig, run_config
    from ..data.procedural import write_procedural
    from ..eval.evaluate import HELDOUT_SEED, evaluate, open_model
    from ..exporters.bundle_export import export_bundle
    from ..fsutil import write_text_atomic
    from ..models.io import load_model
    from ..visualize import overlay_mask, write_png

    console = Console(stderr=True, quiet=json_out)
    ckpt = checkpoint or require_reference_model()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report: dict = {"checkpoint": str(ckpt), "out": str(out)}

    console.print(f"[bold]1/6[/] held-out procedural data ({images} images, seed {HELDOUT_SEED})")
    data_dir = out / "data"
    write_procedural(data_dir, images, seed=HELDOUT_SEED, size=256)

    teacher, t_spec = load_model(ckpt)
    model, spec, model_id = teacher, t_spec, ckpt.stem
    models = [("teacher (torch)", ckpt, None)]
    if compress_steps:
        console.print(f"[bold]2/6[/] compress: SlimSAM alternate slimming, ratio {ratio}, {compress_steps} steps per phase")
        from ..compress.data import ImageSource
        from ..compress.pipeline import CompressConfig, compress

        cdir = out / "compressed"
        cfg = CompressConfig(ratio=ratio, steps=compress_steps, eval_images=min(images, 16))
        rep = compress(cfg, cdir, teacher=(teacher, t_spec), source=ImageSource.procedural(count=1000, size=t_spec.image_size),
                       teacher_id=str(ckpt), quiet=json_out)
        report["compress"] = {"ratio": ratio, "steps_per_phase": compress_steps, "report": str(cdir / "report.md"),
                              "encoder_params": [rep["teacher"]["params"]["image_encoder"], rep["student"]["params"]["image_encoder"]],
                              "seconds": rep["elapsed_s"]}
        student_path = cdir / "model.safetensors"
        model, spec = load_model(student_path)
        model_id = f"{ckpt.stem}-slim{int(round(ratio * 100))}"
        models.append(("student (torch)", student_path, None))
    else:
        console.print("[bold]2/6[/] compress: skipped (--compress-steps 0)")

    console.print("[bold]3/6[/] export a validated cpu bundle (ONNX Runtime + OpenVINO)")
    bundle = out / "bundle"
    manifest = export_bundle(model, spec, bundle, target="cpu", model_id=model_id)
    report["bundle"] = str(bundle)
    report["validation"] = manifest.validation
    models += [("bundle onnxruntime", bundle, "onnxruntime"), ("bundle openvino", bundle, "openvino")]

    console.print("[bold]4/6[/] mIoU (one point / one box per mask) of the teacher and through each runtime")
    from ..data.auto import open_labelled

    report["eval"] = {}
    for label, target, backend in models:
        predictor, _ = open_model(target, backend=backend)
        res = evaluate(predictor, open_labelled(data_dir), prompt="both")
        report["eval"][label] = {"point_miou": res["point"]["miou"], "box_miou": res["box"]["miou"],
                                 "images": res["n_images"], "annotations": res["n_annotations"]}

    console.print("[bold]5/6[/] segment one image from a point prompt")
    from ..data.procedural import procedural_sample
    from ..predictor import EdgePredictor

    sample = procedural_sample(HELDOUT_SEED, 0, 256)
    image = sample.load_image()
    ann = max(sample.annotations, key=lambda a: a.area)
    from ..eval.evaluate import prompt_point

    x, y = prompt_point(ann, image.shape[:2])
    pred = EdgePredictor.from_bundle(bundle, backend="onnxruntime")
    pred.set_image(image)
    import numpy as np

    masks, scores, _ = pred.predict(np.array([[x, y]]), np.array([1]), multimask_output=False)
    write_png(out / "segment" / "mask.png", masks[0].astype(np.uint8) * 255)
    write_png(out / "segment" / "overlay.png", overlay_mask(image, masks[0], points=[(x, y)], labels=[1])[..., ::-1])
    inter = np.logical_and(masks[0], ann.mask).sum()
    report["segment"] = {"mask": str(out / "segment" / "mask.png"), "overlay": str(out / "segment" / "overlay.png"),
                         "point": [x, y], "iou_with_ground_truth": float(inter / np.logical_or(masks[0], ann.mask).sum())}

    console.print("[bold]6/6[/] latency per backend (1500x2250 photo-sized input)")
    report["bench"] = []
    for backend in ("torch", "onnxruntime", "openvino"):
        r = run_config(BenchConfig(bundle=str(bundle), backend=backend, runs=5, warmup=1, prompts=20))
        report["bench"].append({
            "backend": backend, "cold_start_s": r["cold_start_s"], "encoder_p50_ms": r["encoder"]["p50_ms"],
            "decoder_plus_post_p50_ms": r["decoder_plus_postprocess"]["p50_ms"],
            "preprocess_p50_ms": r["preprocess"]["p50_ms"], "peak_rss_mb": r["peak_rss_mb"],
        })
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    write_text_atomic(out / "report.md", _markdown(report))
    if json_out:
        emit_json(report)
        return
    typer.echo(_markdown(report))
    typer.echo(f"artifacts in {out}/ (compressed/, bundle/, data/, segment/), report: {out / 'report.md'}")


def _markdown(r: dict) -> str:
    lines = [f"# slimsam-edge demo ({r['seconds']} s)", "", f"teacher: `{r['checkpoint']}`, bundle: `{r['bundle']}`", ""]
    if "compress" in r:
        c = r["compress"]
        lines += [f"compressed with ratio {c['ratio']} ({c['steps_per_phase']} steps per phase, {c['seconds']:.0f} s): "
                  f"encoder {c['encoder_params'][0]:,} -> {c['encoder_params'][1]:,} parameters; report `{c['report']}`", ""]
    lines += ["| model / runtime | point mIoU | box mIoU | images | masks |", "|---|---|---|---|---|"]
    for k, v in r["eval"].items():
        lines.append(f"| {k} | {v['point_miou']:.4f} | {v['box_miou']:.4f} | {v['images']} | {v['annotations']} |")
    s = r["segment"]
    lines += ["", f"segment: point {s['point']} → `{s['mask']}` (IoU with ground truth {s['iou_with_ground_truth']:.3f}), overlay `{s['overlay']}`",
              "", "| backend | cold start | preprocess p50 | encoder p50 | decoder+post p50 | peak RSS |", "|---|---|---|---|---|---|"]
    for b in r["bench"]:
        lines.append(f"| {b['backend']} | {b['cold_start_s']:.2f} s | {b['preprocess_p50_ms']:.1f} ms | "
                     f"{b['encoder_p50_ms']:.1f} ms | {b['decoder_plus_post_p50_ms']:.2f} ms | {b['peak_rss_mb']:.0f} MiB |")
    return "\n".join(lines) + "\n"
