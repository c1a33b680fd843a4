"""``slimsam-edge compress``: SlimSAM pruning + label-free distillation of a SAM image encoder.

Example:
    $ slimsam-edge compress --preset slimsam-77 --out runs/slim77               # sam-mini, procedural data
    $ slimsam-edge compress --teacher sam_vit_b.pth --data imgs/ --target-params 5.7M --out runs/b77
    $ slimsam-edge compress --ratio 0.5 --out runs/slim50 --resume              # continue a stopped job
    $ slimsam-edge compress --preset slimsam-77 --global-attention windowed --out runs/slim77w  # no global blocks
    $ slimsam-edge compress --preset slimsam-77 --image-size 192 --out runs/slim77-192  # a 192 px student of the 256 px teacher
    $ slimsam-edge compress --teacher sam_vit_h.pth --base sam_vit_b.pth --preset slimsam-77 --out runs/h77
    $ torchrun --nproc_per_node 2 -m slimsam_edge compress --ratio 0.5 --batch 4 --out runs/ddp  # DDP (gloo)
    $ slimsam-edge compress --device cuda --preset slimsam-77 --steps 2000 --batch 16 --out runs/g77  # one GPU
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..compress.choices import DECODER_PROMPTS, DECODER_TRAINS, EMBEDDING_TARGETS, LATER_DEFAULTS
from .common import emit_json, handle_errors
from .options import JsonOpt, TorchThreadsOpt


class Importance(str, Enum):
    disturbed_taylor = "disturbed-taylor"
    taylor = "taylor"
    magnitude = "magnitude"
    random = "random"


class Schedule(str, Enum):
    alternate = "alternate"
    one_step = "one-step"


def _choices(name: str, values) -> type[Enum]:
    """A str Enum of ``values`` (member names with ``+`` as ``_``), the form typer offers as choices."""
    return Enum(name, {v.replace("+", "_"): v for v in values}, type=str)  # type: ignore[return-value]


DecoderTrains = _choices("DecoderTrains", DECODER_TRAINS)
DecoderPrompts = _choices("DecoderPrompts", DECODER_PROMPTS)
EmbeddingTarget = _choices("EmbeddingTarget", EMBEDDING_TARGETS)


class GlobalAttention(str, Enum):
    keep = "keep"
    windowed = "windowed"


class Scope(str, Enum):
    local = "local"
    global_ = "global"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@handle_errors
def compress(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: model.safetensors, report.json/.md, checkpoint.pt, log.jsonl.")],
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="SAM checkpoint to distil from (and to compress, without --base; default: the shipped sam-mini).")] = None,
    base: Annotated[Optional[Path], typer.Option("--base", help="SAM checkpoint to prune when it is not the teacher (e.g. SAM-B toward SAM-H); the result keeps the teacher's prompt encoder and mask decoder.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Folder of unlabelled images (default: procedural images).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="slimsam-50 | slimsam-77 (pruning ratio 0.5 / 0.77).")] = None,
    ratio: Annotated[Optional[float], typer.Option("--ratio", help="Pruning ratio in (0, 1), applied to every width.")] = None,
    target_params: Annotated[Optional[str], typer.Option("--target-params", help="Encoder parameter budget, e.g. 5.7M.")] = None,
    importance: Annotated[Importance, typer.Option("--importance", help="Channel importance criterion.")] = Importance.disturbed_taylor,
    schedule: Annotated[Schedule, typer.Option("--schedule", help="alternate (SlimSAM) or one-step pruning.")] = Schedule.alternate,
    scope: Annotated[Scope, typer.Option("--scope", help="local: uniform widths; global: per-block widths.")] = Scope.local,
    global_attention: Annotated[GlobalAttention, typer.Option("--global-attention", help="keep: SlimSAM's global blocks; windowed: every block attends within windows (faster at 1024 px, trained by distillation; see docs/results/precision.md).")] = GlobalAttention.keep,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="The student's input size in pixels (smaller than the teacher's, a multiple of its patch size whose token grid its windows can tile; a bad size lists those that work): position embedding and relative-position tables are interpolated, windows re-tiled, and it is distilled against the teacher's embeddings resized to its grid. Default: the teacher's size.")] = None,
    embedding_target: Annotated[EmbeddingTarget, typer.Option("--embedding-target", help="With --image-size: what the encoder phases distil the student's embedding toward: teacher = the teacher's embedding resized to the student's grid (SlimSAM's target); regridded = the embedding of the unpruned teacher moved to the student's size, the grid its mask decoder reads (on sam-mini at 160 px the teacher's decoder scores 0.83 point mIoU on that, 0.75 on the resized one).")] = EmbeddingTarget(LATER_DEFAULTS["embedding_target"]),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Distillation steps per phase.")] = 100,
    decoder_steps: Annotated[int, typer.Option("--decoder-steps", min=0, help="Steps of a last phase that tunes the student's mask decoder on the teacher's masks for random point and box prompts (label-free, encoder frozen; from the best validated encoder). Worth it with --image-size or --global-attention windowed, where the teacher's decoder reads a grid it was not trained on. 0: keep the teacher's decoder.")] = LATER_DEFAULTS["decoder_steps"],
    decoder_lr: Annotated[float, typer.Option("--decoder-lr", help="Peak AdamW learning rate of the decoder phase (cosine schedule).")] = LATER_DEFAULTS["decoder_lr"],
    decoder_trains: Annotated[DecoderTrains, typer.Option("--decoder-trains", help="What the decoder phase's mask loss trains: the mask decoder alone, or the image encoder too (it then learns from the teacher's masks through the decoder).")] = DecoderTrains(LATER_DEFAULTS["decoder_trains"]),
    decoder_prompts: Annotated[DecoderPrompts, typer.Option("--decoder-prompts", help="The decoder phase's prompts: random points and the boxes around the teacher's masks for them; random+interior adds a click in the middle of each of those masks (where users click).")] = DecoderPrompts(LATER_DEFAULTS["decoder_prompts"]),
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per micro-batch (global: split over torchrun processes).")] = 2,
    accum: Annotated[int, typer.Option("--accum", min=1, help="Gradient accumulation micro-batches per step.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate (cosine schedule).")] = 1e-4,
    sigma: Annotated[float, typer.Option("--sigma", help="Noise std of disturbed Taylor importance.")] = 0.01,
    importance_images: Annotated[int, typer.Option("--importance-images", min=1, help="Images whose gradients are accumulated for importance.")] = 16,
    images: Annotated[int, typer.Option("--images", min=0, help="Distillation images (procedural count; 0 = all of --data).")] = 1000,
    eval_images: Annotated[int, typer.Option("--eval-images", min=1, help="Held-out procedural images for the mIoU report.")] = 32,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Checkpoint interval (steps).")] = 50,
    val_every: Annotated[int, typer.Option("--val-every", min=0, help="Validate (point mIoU) every K steps; the best weights of the final phase become model.safetensors (0: off, last weights).")] = 50,
    val_images: Annotated[int, typer.Option("--val-images", min=1, help="Held-out procedural images per validation.")] = 8,
    val_seed: Annotated[int, typer.Option("--val-seed", min=0, help="Procedural seed of the validation images (apart from the report's seed 1001).")] = 1002,
    cache_teacher: Annotated[Optional[Path], typer.Option("--cache-teacher", help="Folder caching the teacher's image embeddings (fp16, one file per image).")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="bf16 autocast for the distillation forwards.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of importance noise and sampling.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt (same configuration).")] = False,
    engine: Annotated[str, typer.Option("--engine", help="Embedding pruning: slice | torch-pruning (same weights).")] = "slice",
    threads: TorchThreadsOpt = None,
    device: Annotated[Device, typer.Option("--device", help="Where to run: cuda (cuda:LOCAL_RANK under torchrun; TF32 matmuls, nccl), cpu, or auto (cuda when a CUDA GPU is visible, else cpu). Not part of what --resume checks.")] = Device.auto,
    json_out: JsonOpt = False,
) -> None:
    """Prune a SAM image encoder (SlimSAM alternate slimming) and distil it from its teacher.

    Example: slimsam-edge compress --preset slimsam-77 --steps 200 --out runs/slim77
    """
    from ..compress.job import CompressRequest, run_request

    settings = dict(importance=importance.value, sigma=sigma, importance_images=importance_images,
                    scope=scope.value, schedule=schedule.value, steps=steps, batch=batch, accum=accum, lr=lr,
                    decoder_steps=decoder_steps, decoder_lr=decoder_lr, decoder_trains=decoder_trains.value,
                    decoder_prompts=decoder_prompts.value,
                    checkpoint_every=checkpoint_every, seed=seed, eval_images=eval_images, engine=engine,
                    val_every=val_every, val_images=val_images, val_seed=val_seed, bf16=bf16,
                    global_attention=global_attention.value, embedding_target=embedding_target.value,
                    **({"image_size": image_size} if image_size is not None else {}))
    report = run_request(CompressRequest(
        out, teacher=teacher, base=base, data=data, preset=preset, ratio=ratio, target_params=target_params,
        images=images, cache_teacher=cache_teacher, resume=resume, threads=threads, device=device.value,
        settings=settings), quiet=json_out)
    if report is None:  # another torchrun process: rank 0 reports
        return
    if json_out:
        emit_json(report)
        return
    t, s = report["teacher"], report["student"]
    typer.echo(f"wrote {report['model']}: encoder {t['params']['image_encoder']:,} -> {s['params']['image_encoder']:,} "
               f"params (embed {s['embed_dim']}, MLP {s['mlp_dims'][0]}, head dim {s['head_dims'][0]}); "
               f"point mIoU {t['miou']['point']:.4f} -> {s['miou']['point']:.4f}, box {t['miou']['box']:.4f} -> "
               f"{s['miou']['box']:.4f}; {report['elapsed_s'] / 60:.1f} min on {report['device']}; "
               f"report: {out / 'report.md'}")
    if s.get("image_size") != t.get("image_size"):
        typer.echo(f"input {t['image_size']} px -> {s['image_size']} px (mIoU of both on the teacher's {t['image_size']} px images)")
    if report.get("best"):
        typer.echo(f"best validated step {report['best']['step']} (point mIoU {report['best']['miou']:.4f})")


if __name__ == "__main__":  # python -m slimsam_edge.cli.compress
    typer.run(compress)
