"""The compression report: parameters and MACs per part before/after, mIoU, time (JSON + Markdown).

Illustration (not run as a doctest: it needs files or a model)::

    report = write_report(out, cfg, teacher, t_spec, student, s_spec, elapsed=12.0)
    report["student"]["params"]["image_encoder"]
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..fsutil import write_text_atomic
from ..models.stats import count_params, encoder_macs


def model_summary(sam: Any, spec: Any, eval_images: int, size: int | None = None) -> dict[str, Any]:
    """Widths, params per part, encoder MACs and held-out point/box mIoU of one model (measured on
    the model's device) on images of ``size`` (default: the model's input size; a student of a
    smaller input size is measured on its teacher's images, resized)."""
    from ..eval.evaluate import HELDOUT_SEED, evaluate_sam

    e = spec.encoder
    res = evaluate_sam(sam, n_images=eval_images, seed=HELDOUT_SEED, size=size or spec.image_size)
    return {
        "embed_dim": e.embed_dim, "qkv_dims": list(e.qkv_dims), "mlp_dims": list(e.mlp_dims),
        "head_dims": e.head_dims(), "global_attn_indexes": list(e.global_attn_indexes),
        "params": {"image_encoder": count_params(sam.image_encoder),
                   "prompt_encoder": count_params(sam.prompt_encoder),
                   "mask_decoder": count_params(sam.mask_decoder), "total": count_params(sam)},
        "macs_image_encoder": encoder_macs(e),
        "image_size": spec.image_size,
        "miou": {"point": round(float(res["point"]["miou"]), 5), "box": round(float(res["box"]["miou"]), 5),
                 "n_images": res["n_images"], "n_masks": res["n_annotations"], "seed": HELDOUT_SEED},
    }


def embedding_mse(student: Any, teacher: Any, size: int, n_images: int, seed: int = 1001) -> float:
    """Mean squared difference of the image embeddings on held-out procedural images (both
    models on one device; the images are moved there); a student of a smaller input size sees the
    images resized and is compared with the teacher's embedding resized to its grid.

    Illustration (not run as a doctest: it needs files or a model)::

        embedding_mse(sam, sam, 256, 2)
        # -> 0.0
    """
    import torch

    from ..data.procedural import procedural_sample
    from ..models.batch import preprocess
    from ..models.regrid import resize_embedding, resize_input

    total = 0.0
    with torch.no_grad():
        for i in range(n_images):
            x = preprocess(teacher, [procedural_sample(seed, i, size).image])
            s = student.image_encoder(resize_input(x, student.image_encoder.img_size))
            total += float(torch.mean((s - resize_embedding(teacher.image_encoder(x), s.shape[-1])) ** 2))
    return round(total / n_images, 7)


def write_report(out: Path, cfg: Any, teacher: Any, t_spec: Any, student: Any, s_spec: Any, *,
                 elapsed: float, teacher_id: str = "teacher", source: dict | None = None,
                 extra: dict[str, Any] | None = None, teacher_summary: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Evaluate both models, write ``report.json`` and ``report.md`` atomically, return the dict.

    ``extra`` (best checkpoint, validation history, teacher cache, world size, bf16, base) is
    merged into the report; ``teacher_summary`` (:func:`model_summary` of the teacher with the same
    ``eval_images``) skips re-evaluating the teacher (the ablation evaluates it once for 16 runs).
    """
    t = teacher_summary if teacher_summary is not None else model_summary(teacher, t_spec, cfg.eval_images)
    s = model_summary(student, s_spec, cfg.eval_images, size=t_spec.image_size)
    s["embedding_mse"] = embedding_mse(student, teacher, t_spec.image_size, cfg.eval_images)
    enc_t, enc_s = t["params"]["image_encoder"], s["params"]["image_encoder"]
    report = {
        "config": cfg.record() if hasattr(cfg, "record") else asdict(cfg), "teacher_id": teacher_id, "data": source, "teacher": t, "student": s,
        "encoder_params_kept": round(enc_s / enc_t, 5),
        "point_miou_kept": round(s["miou"]["point"] / t["miou"]["point"], 5) if t["miou"]["point"] else None,
        "elapsed_s": round(elapsed, 1), "model": str(Path(out) / "model.safetensors"),
        **(extra or {}),
    }
    write_text_atomic(Path(out) / "report.json", json.dumps(report, indent=2))
    write_text_atomic(Path(out) / "report.md", _markdown(report))
    return report


def _markdown(r: dict[str, Any]) -> str:
    t, s, c = r["teacher"], r["student"], r["config"]
    rows = [("image encoder params", t["params"]["image_encoder"], s["params"]["image_encoder"]),
            ("prompt encoder params", t["params"]["prompt_encoder"], s["params"]["prompt_encoder"]),
            ("mask decoder params", t["params"]["mask_decoder"], s["params"]["mask_decoder"]),
            ("total params", t["params"]["total"], s["params"]["total"]),
            ("encoder MACs (linear/conv)", t["macs_image_encoder"]["linear_conv"], s["macs_image_encoder"]["linear_conv"]),
            ("encoder MACs (attention)", t["macs_image_encoder"]["attention"], s["macs_image_encoder"]["attention"]),
            ("input size (px)", str(t.get("image_size", "?")), str(s.get("image_size", "?"))),
            ("embed dim", t["embed_dim"], s["embed_dim"]),
            ("global-attention blocks", _blocks(t), _blocks(s)),
            ("point mIoU", t["miou"]["point"], s["miou"]["point"]),
            ("box mIoU", t["miou"]["box"], s["miou"]["box"]),
            ("embedding MSE to teacher", 0.0, s["embedding_mse"])]
    lines = [f"# Compression report ({r['teacher_id']})", "",
             f"ratio {c['ratio']}, schedule {c['schedule']}, importance {c['importance']} (sigma {c['sigma']}), "
             f"scope {c['scope']}, {c['steps']} steps per phase, global attention "
             f"{c.get('global_attention', 'keep')}{', ' + decoder_phase_words(c) if c.get('decoder_steps') else ''}, "
             f"{r['elapsed_s']} s", "",
             "| | teacher | student |", "|---|---|---|"]
    lines += [f"| {name} | {a:,} | {b:,} |" if isinstance(a, int) else f"| {name} | {a} | {b} |" for name, a, b in rows]
    lines += ["", f"student MLP widths {s['mlp_dims']}, head dims {s['head_dims']}; "
              f"mIoU on {s['miou']['n_images']} held-out procedural images (seed {s['miou']['seed']})", ""]
    lines += [line for line in _extra_lines(r) if line]
    return "\n".join(lines) + "\n"


def decoder_phase_words(c: dict[str, Any]) -> str:
    """A job's decoder phase in words, from its recorded settings ``c`` (``decoder_steps`` > 0; the
    compress report and the speed report's analogues both say it this way).

    Example:
        >>> decoder_phase_words({"decoder_steps": 30})
        "mask decoder tuned on the teacher's masks for 30 steps (lr 0.0001)"
        >>> decoder_phase_words({"decoder_steps": 30, "decoder_trains": "encoder+decoder"})[:24]
        'encoder and mask decoder'
        >>> decoder_phase_words({"decoder_steps": 30, "decoder_prompts": "random+interior"})[42:]
        "(random points, boxes and the teacher masks' interior points) for 30 steps (lr 0.0001)"
    """
    what = {"encoder+decoder": "encoder and mask decoder"}.get(c.get("decoder_trains", "decoder"), "mask decoder")
    prompts = " (random points, boxes and the teacher masks' interior points)" \
        if c.get("decoder_prompts") == "random+interior" else ""
    return (f"{what} tuned on the teacher's masks{prompts} for {c['decoder_steps']} steps "
            f"(lr {c.get('decoder_lr', 1e-4)})")


def embedding_target_words(c: dict[str, Any]) -> str:
    """What a job's encoder phases distilled toward, from its recorded settings ``c`` ("" for the
    teacher's own embedding, the default).

    Example:
        >>> embedding_target_words({"image_size": 160, "embedding_target": "regridded"})
        'the embedding of the teacher moved to the 160 px input (`--embedding-target regridded`)'
        >>> embedding_target_words({"embedding_target": "regridded"})[42:]
        "student's input size (`--embedding-target regridded`)"
        >>> embedding_target_words({"image_size": 160})
        ''
    """
    if c.get("embedding_target", "teacher") == "teacher":
        return ""
    size = f"{c['image_size']} px input" if c.get("image_size") else "student's input size"
    return f"the embedding of the teacher moved to the {size} (`--embedding-target regridded`)"


def _blocks(summary: dict[str, Any]) -> str:
    g = summary.get("global_attn_indexes")
    return "?" if g is None else (", ".join(map(str, g)) or "none")


def _extra_lines(r: dict[str, Any]) -> list[str]:
    b, v, c = r.get("best"), r.get("validation") or {}, r.get("teacher_cache")
    out = []
    if b:
        out.append(f"- model.safetensors: best validated weights of phase {b['phase'] + 1}, step {b['step']} "
                   f"(point mIoU {b['miou']} on {b['n_images']} images of seed {b['seed']}, every {b['every']} steps)")
    elif v:
        out.append("- model.safetensors: the last step's weights (validation off)")
    target = embedding_target_words(r.get("config") or {})
    if target:
        out.append(f"- encoder phases distilled toward {target}")
    if c and c.get("dir"):
        out.append(f"- teacher-embedding cache {c['dir']}: {c['hits']} hits, {c['misses']} misses (rank 0)")
    rc = r.get("regridded_cache")
    if rc and rc.get("dir"):
        out.append(f"- moved teacher's embeddings in the same cache: {rc['hits']} hits, {rc['misses']} misses (rank 0)")
    if r.get("base"):
        out.append(f"- pruned base {r['base']['id']} (encoder {r['base']['encoder_params']:,} params), "
                   f"teacher's prompt encoder and mask decoder; phase modes {r.get('phase_modes')}")
    if "world_size" in r:
        native = {True: " (native)", False: " (emulated: no AVX512-BF16/AMX)"}.get(r.get("bf16_native"), "")
        out.append(f"- processes: {r['world_size']}, bf16 autocast: {r.get('bf16', False)}{native}")
    if r.get("device"):
        gpu = f" ({r['gpu']}{', TF32 matmuls' if r.get('tf32') else ''})" if r.get("gpu") else ""
        out.append(f"- device: {r['device']}{gpu}")
    return out + [""]
