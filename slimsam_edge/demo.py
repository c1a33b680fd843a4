"""The main job end to end on the built-in model and data (``slimsam-edge demo``, ``make demo``).

sam-mini (shipped) → SlimSAM compression (a short schedule) → validated cpu bundle of the
compressed model → mIoU of the teacher (PyTorch) and of the student through PyTorch, ONNX Runtime
and OpenVINO on held-out procedural data → one segmented image → latency per backend. Everything
lands in ``out`` with ``report.json`` and ``report.md``. Each step is one phase function below;
:func:`run_demo` runs them in order.

Illustration (not run as a doctest: it needs files or a model)::

    report = run_demo("demo-output", compress_steps=0, images=4)
    sorted(report.eval)
    # -> ['bundle onnxruntime', 'bundle openvino', 'teacher (torch)']
    print(report.markdown())
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: ``progress(step, steps, what)`` before each of the demo's steps
DemoProgress = Callable[[int, int, str], None]
STEPS = 7
#: the demo's video: a procedural clip (3 objects; one leaves and comes back) the tracker never tuned on
VIDEO_SEED, VIDEO_FRAMES = 21, 48
#: the compression's learning rate: at 40 steps per phase 1e-3 keeps more than the default 1e-4
DEMO_LR = 1e-3
#: labels of the two torch models in the report's mIoU table
TEACHER, STUDENT = "teacher (torch)", "student (torch)"
#: what SlimSAM's full schedule keeps, for the report's comparison with the demo's short run
FULL_SCHEDULE = ("SlimSAM's full schedule (1600 steps per phase, batch 4, about 80 times the work) kept 99.3% at "
                 "ratio 0.5 and 92.3% at 0.77 (docs/results/ablation-long.md, measured with an earlier, weaker "
                 "stage of sam-mini as the teacher).")
BENCH_BACKENDS = ("torch", "onnxruntime", "openvino")


@dataclass
class DemoReport:
    """What the demo did and measured; :meth:`to_dict` is ``report.json``, :meth:`markdown` is
    ``report.md``.

    Example:
        >>> r = DemoReport("sam_mini.safetensors", "out", bundle="out/bundle", seconds=1.5,
        ...                segment={"point": [3.0, 4.0], "mask": "m.png", "overlay": "o.png",
        ...                         "iou_with_ground_truth": 0.9})
        >>> list(r.to_dict())
        ['checkpoint', 'out', 'bundle', 'validation', 'eval', 'segment', 'video', 'bench', 'seconds']
        >>> r.markdown().splitlines()[0]
        '# slimsam-edge demo (1.5 s)'
    """

    checkpoint: str
    out: str
    compress: dict[str, Any] | None = None
    bundle: str = ""
    validation: Any = None
    eval: dict[str, dict[str, Any]] = field(default_factory=dict)
    segment: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)
    bench: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``compress`` only when the demo compressed)."""
        d: dict[str, Any] = {"checkpoint": self.checkpoint, "out": self.out}
        if self.compress is not None:
            d["compress"] = self.compress
        d.update(bundle=self.bundle, validation=self.validation, eval=self.eval, segment=self.segment,
                 video=self.video, bench=self.bench, seconds=self.seconds)
        return d

    def markdown(self) -> str:
        """The Markdown report: compression, mIoU per model/runtime, the segmented image, latency."""
        lines = [f"# slimsam-edge demo ({self.seconds} s)", "",
                 f"teacher: `{self.checkpoint}`, bundle: `{self.bundle}`", ""]
        if self.compress is not None:
            c = self.compress
            lines += [f"compressed with ratio {c['ratio']} ({c['steps_per_phase']} steps per phase, {c['seconds']:.0f} s): "
                      f"encoder {c['encoder_params'][0]:,} -> {c['encoder_params'][1]:,} parameters; report `{c['report']}`", ""]
            lines += self._kept_lines()
        lines += ["| model / runtime | point mIoU | box mIoU | images | masks |", "|---|---|---|---|---|"]
        for k, v in self.eval.items():
            lines.append(f"| {k} | {v['point_miou']:.4f} | {v['box_miou']:.4f} | {v['images']} | {v['annotations']} |")
        s = self.segment
        lines += ["", f"segment: point {s['point']} → `{s['mask']}` (IoU with ground truth {s['iou_with_ground_truth']:.3f}), overlay `{s['overlay']}`"]
        if self.video:
            v = self.video
            model = "the compressed student" if self.compress is not None else "the teacher"
            lines += ["", f"video: {v['objects']} objects clicked once and tracked through {v['frames']} frames "
                          f"({model}, {v['backend']}; the shipped sam-mini scores J&F 0.83 on such clips, "
                          f"docs/results/video.md): J&F {v['JF']:.3f} (J {v['J']:.3f}, F {v['F']:.3f}), {v['fps']:.1f} fps "
                          f"({v['pipeline_fps']:.1f} fps through the threaded pipeline, overlay written), "
                          f"{v['reacquisitions']} re-acquisitions → `{v['out']}`"]
        lines += ["", "| backend | cold start | preprocess p50 | encoder p50 | decoder+post p50 | peak RSS |", "|---|---|---|---|---|---|"]
        for b in self.bench:
            lines.append(f"| {b['backend']} | {b['cold_start_s']:.2f} s | {b['preprocess_p50_ms']:.1f} ms | "
                         f"{b['encoder_p50_ms']:.1f} ms | {b['decoder_plus_post_p50_ms']:.2f} ms | {b['peak_rss_mb']:.0f} MiB |")
        return "\n".join(lines) + "\n"


    def _kept_lines(self) -> list[str]:
        """What the short compression kept, said next to what SlimSAM's full schedule keeps."""
        teacher, student = self.eval.get(TEACHER), self.eval.get(STUDENT)
        if not (teacher and student and teacher["point_miou"] > 0):
            return []
        kept = student["point_miou"] / teacher["point_miou"]
        return [f"The student keeps {kept:.1%} of the teacher's point mIoU. This is a short run, sized for a demo: "
                f"{FULL_SCHEDULE} Longer runs keep more: 81% at 120 and 87.5% at 240 steps per phase (12.5 and 23 "
                "minutes on 2 cores; docs/results/demo-compression.md).", ""]


def run_demo(
    out: Path | str = "demo-output",
    *,
    checkpoint: Path | str | None = None,
    images: int = 32,
    ratio: float = 0.5,
    compress_steps: int = 40,
    quiet: bool = False,
    progress: DemoProgress | None = None,
) -> DemoReport:
    """Compress → export → eval → segment → track → bench on the built-in model and data; write the reports.

    Arguments:
        out: folder for every artifact (``compressed/``, ``bundle/``, ``data/``, ``segment/``, ``video/``) and
            ``report.json`` / ``report.md``.
        checkpoint: the teacher; None: the shipped sam-mini.
        images: held-out procedural images evaluated (seed
            :data:`~slimsam_edge.eval.evaluate.HELDOUT_SEED`).
        ratio: pruning ratio of the compression.
        compress_steps: distillation steps per phase; 0 skips compression and exports the teacher.
        quiet: silence the compression's own progress output.
        progress: told ``(step, 7, what)`` before each step.

    Illustration (not run as a doctest: it exports and benchmarks, about half a minute)::

        steps = []
        report = run_demo("demo", compress_steps=0, images=2,
                          progress=lambda i, n, what: steps.append(i))
        steps, report.compress  # -> ([1, 2, 3, 4, 5, 6, 7], None)
    """
    from .assets import require_reference_model
    from .fsutil import write_text_atomic

    say = progress or (lambda step, steps, what: None)
    ckpt = Path(checkpoint) if checkpoint is not None else require_reference_model()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report = DemoReport(str(ckpt), str(out))
    data_dir = _heldout_data(out, images, say)
    models, (model, spec, model_id) = _compress(report, ckpt, out, images, ratio, compress_steps, quiet, say)
    bundle = _export(report, model, spec, model_id, out, say)
    models += [("bundle onnxruntime", bundle, "onnxruntime"), ("bundle openvino", bundle, "openvino")]
    _evaluate(report, models, data_dir, say)
    _segment(report, bundle, out, say)
    _video(report, bundle, out, say)
    _bench(report, bundle, say)
    report.seconds = round(time.perf_counter() - t_start, 1)
    write_text_atomic(out / "report.json", json.dumps(report.to_dict(), indent=2))
    write_text_atomic(out / "report.md", report.markdown())
    return report


_Model = tuple[str, Path, "str | None"]  # (label, checkpoint or bundle, backend)


def _heldout_data(out: Path, images: int, say: DemoProgress) -> Path:
    """Step 1: the held-out procedural images, written to ``out/data``."""
    from .data.procedural import write_procedural
    from .eval.evaluate import HELDOUT_SEED

    say(1, STEPS, f"held-out procedural data ({images} images, seed {HELDOUT_SEED})")
    data_dir = out / "data"
    write_procedural(data_dir, images, seed=HELDOUT_SEED, size=256)
    return data_dir


def _compress(report: DemoReport, ckpt: Path, out: Path, images: int, ratio: float, steps: int, quiet: bool,
              say: DemoProgress) -> tuple[list[_Model], tuple[Any, Any, str]]:
    """Step 2: compress the teacher into ``out/compressed`` (skipped for 0 steps); the models to
    evaluate so far and ``(model, spec, id)`` of the one to export."""
    from .models.io import load_model

    teacher, t_spec = load_model(ckpt)
    models: list[_Model] = [(TEACHER, ckpt, None)]
    if not steps:
        say(2, STEPS, "compress: skipped (--compress-steps 0)")
        return models, (teacher, t_spec, ckpt.stem)
    say(2, STEPS, f"compress: SlimSAM alternate slimming, ratio {ratio}, {steps} steps per phase")
    from .compress.data import ImageSource
    from .compress.pipeline import CompressConfig, compress

    cdir = out / "compressed"
    # lr 1e-3 and the teacher-embedding cache: measured in docs/results/demo-compression.md
    # (40 steps per phase keep 72% of the teacher's point mIoU with them, 69.5% at lr 1e-4)
    cfg = CompressConfig(ratio=ratio, steps=steps, eval_images=min(images, 16), lr=DEMO_LR)
    rep = compress(cfg, cdir, teacher=(teacher, t_spec), source=ImageSource.procedural(count=1000, size=t_spec.image_size),
                   teacher_id=str(ckpt), quiet=quiet, cache_dir=cdir / "teacher-cache")
    report.compress = {"ratio": ratio, "steps_per_phase": steps, "report": str(cdir / "report.md"),
                       "encoder_params": [rep["teacher"]["params"]["image_encoder"], rep["student"]["params"]["image_encoder"]],
                       "seconds": rep["elapsed_s"]}
    student_path = cdir / "model.safetensors"
    model, spec = load_model(student_path)
    models.append((STUDENT, student_path, None))
    return models, (model, spec, f"{ckpt.stem}-slim{int(round(ratio * 100))}")


def _export(report: DemoReport, model: Any, spec: Any, model_id: str, out: Path, say: DemoProgress) -> Path:
    """Step 3: a validated cpu bundle in ``out/bundle``."""
    from .exporters.bundle_export import export_bundle

    say(3, STEPS, "export a validated cpu bundle (ONNX Runtime + OpenVINO)")
    bundle = out / "bundle"
    manifest = export_bundle(model, spec, bundle, target="cpu", model_id=model_id)
    report.bundle = str(bundle)
    report.validation = manifest.validation
    return bundle


def _evaluate(report: DemoReport, models: list[_Model], data_dir: Path, say: DemoProgress) -> None:
    """Step 4: point and box mIoU of each model / runtime on the held-out data."""
    from .data.auto import open_labelled
    from .eval.evaluate import evaluate, open_model

    say(4, STEPS, "mIoU (one point / one box per mask) of the teacher and through each runtime")
    for label, target, backend in models:
        predictor, _ = open_model(target, backend=backend)
        res = evaluate(predictor, open_labelled(data_dir), prompt="both")
        report.eval[label] = {"point_miou": res["point"]["miou"], "box_miou": res["box"]["miou"],
                              "images": res["n_images"], "annotations": res["n_annotations"]}


def _segment(report: DemoReport, bundle: Path, out: Path, say: DemoProgress) -> None:
    """Step 5: segment the largest object of one held-out image from its point prompt."""
    import numpy as np

    from .data.procedural import procedural_sample
    from .eval.evaluate import HELDOUT_SEED, prompt_point
    from .eval.metrics import mask_iou
    from .predictor import EdgePredictor
    from .visualize import overlay_mask, write_png

    say(5, STEPS, "segment one image from a point prompt")
    sample = procedural_sample(HELDOUT_SEED, 0, 256)
    image = sample.load_image()
    ann = max(sample.annotations, key=lambda a: a.area)
    x, y = prompt_point(ann, image.shape[:2])
    pred = EdgePredictor.from_bundle(bundle, backend="onnxruntime")
    pred.set_image(image)
    masks, _, _ = pred.predict(np.array([[x, y]]), np.array([1]), multimask_output=False)
    mask_png, overlay_png = out / "segment" / "mask.png", out / "segment" / "overlay.png"
    write_png(mask_png, masks[0].astype(np.uint8) * 255)
    write_png(overlay_png, overlay_mask(image, masks[0], points=[(x, y)], labels=[1])[..., ::-1])
    report.segment = {"mask": str(mask_png), "overlay": str(overlay_png), "point": [x, y],
                      "iou_with_ground_truth": mask_iou(masks[0], ann.mask)}


def _video(report: DemoReport, bundle: Path, out: Path, say: DemoProgress) -> None:
    """Step 6: click each object of a procedural clip once and track it (J&F against the exact
    masks, with the oracle re-acquisition of ``eval-video``); write the overlay video through the
    threaded pipeline (``slimsam-edge video``'s job)."""
    from .apps.tracker import interior_point
    from .apps.video import Target, run_video
    from .apps.video_eval import evaluate_video
    from .data.synth_video import ProceduralVideo, write_video_dataset
    from .predictor import EdgePredictor

    say(6, STEPS, f"track {VIDEO_FRAMES} frames of a procedural video from one click per object")
    video = ProceduralVideo(seed=VIDEO_SEED, frames=VIDEO_FRAMES)
    predictor = EdgePredictor.from_bundle(bundle)
    scores = evaluate_video(predictor, video)
    clip = out / "video" / "clip"
    write_video_dataset(video, clip)
    first = video[0]
    targets = [Target(points=((*interior_point(first.mask(k)), 1.0),)) for k in video.object_ids if first.mask(k).any()]
    tracked = out / "video" / "tracked.mp4"
    piped = run_video(str(clip / "frames"), bundle, tracked, targets=targets, backend=predictor.backend,
                      precision=predictor.precision, fps=24.0)
    report.video = {"out": str(tracked), "clip": str(clip), "frames": scores["frames"],
                    "objects": len(video.object_ids), "backend": predictor.backend, "J": scores["J"],
                    "F": scores["F"], "JF": scores["JF"], "fps": scores["fps"],
                    "reacquisitions": scores["reacquisitions"], "pipeline_fps": piped["fps"]}


def _bench(report: DemoReport, bundle: Path, say: DemoProgress) -> None:
    """Step 7: cold start, per-stage latency and peak memory per backend (photo-sized input)."""
    from .bench.harness import BenchConfig, run_config

    say(7, STEPS, "latency per backend (1500x2250 photo-sized input)")
    for backend in BENCH_BACKENDS:
        r = run_config(BenchConfig(bundle=str(bundle), backend=backend, runs=5, warmup=1, prompts=20))
        report.bench.append({
            "backend": backend, "cold_start_s": r["cold_start_s"], "encoder_p50_ms": r["encoder"]["p50_ms"],
            "decoder_plus_post_p50_ms": r["decoder_plus_postprocess"]["p50_ms"],
            "preprocess_p50_ms": r["preprocess"]["p50_ms"], "peak_rss_mb": r["peak_rss_mb"],
        })
