"""``slimsam-edge train-reference``: train the shipped reference model (sam-mini) from scratch.

Example:
    $ slimsam-edge train-reference --out runs/sam-mini --steps 2400
    $ slimsam-edge train-reference --out runs/sam-mini --resume     # continue after a stop
    $ slimsam-edge train-reference --out runs/sam-mini-2 --init sam-mini --data-seed 3   # train the shipped model further
    $ slimsam-edge train-reference --out runs/sam-mini-p8 --init sam-mini --patch-size 8 --window-size 16  # on a 2x finer grid
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import emit_json, handle_errors
from .options import JsonOpt, TorchThreadsOpt


@handle_errors
def train_reference(
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoint.pt, best.safetensors, log.jsonl.")] = Path("runs/sam-mini"),
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Optimiser steps (default: the recipe's).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Initialisation / prompt-sampling seed.")] = None,
    batch_images: Annotated[Optional[int], typer.Option("--batch-images", min=1, help="Images per step.")] = None,
    masks_per_image: Annotated[Optional[int], typer.Option("--masks-per-image", min=1, help="Masks prompted per image.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="Peak learning rate.")] = None,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", min=1, help="Held-out evaluation interval (steps).")] = None,
    threads: TorchThreadsOpt = 2,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda (auto: cuda when a GPU is visible).")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Processes generating training images ahead of the model (0: inline).")] = 0,
    warmup_steps: Annotated[Optional[int], typer.Option("--warmup-steps", min=0, help="Linear LR warm-up steps.")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from these weights (a run's best.safetensors, or 'sam-mini' for the shipped model) instead of random ones.")] = None,
    data_seed: Annotated[Optional[int], typer.Option("--data-seed", min=0, help="Procedural training-data seed (a continued run should see new images: pick an unused one).")] = None,
    box_fraction: Annotated[Optional[float], typer.Option("--box-fraction", min=0.0, max=1.0, help="Fraction of training masks prompted with a box (the rest: one point).")] = None,
    select: Annotated[Optional[str], typer.Option("--select", help="Held-out score that picks best.safetensors: point | box | mean.")] = None,
    patch_size: Annotated[Optional[int], typer.Option("--patch-size", min=1, help="Encoder patch side (default: the preset's, 16). With --init of a coarser model, its weights move to the finer grid.")] = None,
    window_size: Annotated[Optional[int], typer.Option("--window-size", min=1, help="Attention window in tokens (default: the preset's, 8); keep patch x window constant to cover the same pixels.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/checkpoint.pt when present.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Train sam-mini on procedural data; keep the best held-out score (``--select``) in OUT/best.safetensors.

    Illustration (not run as a doctest: it needs files or a model)::

        train_reference(out=Path("runs/tiny"), steps=10)
    """
    import os

    # Sleep instead of spinning in OpenMP barriers: on a shared 2-core machine, spinning threads
    # of concurrent processes slow each other down ten-fold. Only effective before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..errors import UsageError
    from ..reference.recipe import Recipe
    from ..reference.train import CHECKPOINT, train

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if not resume and (out / CHECKPOINT).exists():
        (out / CHECKPOINT).unlink()
    recipe = Recipe().with_(steps=steps, seed=seed, batch_images=batch_images,
                            masks_per_image=masks_per_image, lr=lr, eval_every=eval_every,
                            warmup_steps=warmup_steps, data_seed=data_seed, box_fraction=box_fraction,
                            select=select, patch_size=patch_size, window_size=window_size)
    result = train(recipe, out, resume=resume, quiet=json_out, threads=threads, device=device, workers=workers,
                   init=init, keep_planned_steps=steps is None)  # a resume without --steps keeps the run's plan
    if json_out:
        emit_json(result)
        return
    best = result["best"] or {}
    typer.echo(f"trained {result['steps']} steps in {result['elapsed_s'] / 60:.1f} min; best held-out "
               f"point mIoU {best.get('point')} / box mIoU {best.get('box')} at step {best.get('step')}; "
               f"weights: {out / 'best.safetensors'}")


if __name__ == "__main__":  # python -m slimsam_edge.cli.train_reference
    typer.run(train_reference)
