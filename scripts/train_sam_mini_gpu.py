"""Train sam-mini on one CUDA GPU within a wall-clock budget (the run behind the shipped weights).

A short probe measures the step time of the recipe on this GPU; the full run then gets as many
steps as fit ``--budget-s`` (rounded down to 100), so its cosine schedule ends inside the budget.
What comes back: ``OUT/best.safetensors`` (fp16, with the run's metadata) and ``OUT/log.jsonl``,
the two files ``python -m slimsam_edge.research.card RUN`` publishes from, plus ``OUT/probe.json``.

With ``--init sam-mini --data-seed S`` the run continues training the shipped weights on images it
has not seen (seed ``S``) instead of starting from scratch, so that short GPU loans add up.

Example:
    $ python scripts/train_sam_mini_gpu.py --out runs/sam-mini-gpu --copy-to $OUT --budget-s 300
    $ python scripts/train_sam_mini_gpu.py --init sam-mini --data-seed 4 --lr 3e-4 --warmup-steps 100 --budget-s 420
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sam-mini-gpu"))
    ap.add_argument("--copy-to", type=Path, default=None, help="also write fp16 best + log here")
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--batch-images", type=int, default=16)
    ap.add_argument("--masks-per-image", type=int, default=8)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--warmup-steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--probe-steps", type=int, default=40)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--init", default=None, help="start from these weights ('sam-mini': the shipped ones)")
    ap.add_argument("--data-seed", type=int, default=None, help="procedural training seed (new images for a continued run)")
    ap.add_argument("--patch-size", type=int, default=None, help="encoder patch (8 with --window-size 16: the 2x finer grid)")
    ap.add_argument("--window-size", type=int, default=None)
    ap.add_argument("--box-fraction", type=float, default=None)
    ap.add_argument("--select", default=None, help="point | box | mean: the held-out score that picks best.safetensors")
    args = ap.parse_args()

    import torch

    from slimsam_edge.reference.card import fp16_copy
    from slimsam_edge.reference.recipe import Recipe
    from slimsam_edge.reference.train import BEST, LOG, train

    recipe = Recipe().with_(batch_images=args.batch_images, masks_per_image=args.masks_per_image, lr=args.lr,
                            warmup_steps=args.warmup_steps, eval_every=args.eval_every, data_seed=args.data_seed,
                            patch_size=args.patch_size, window_size=args.window_size, box_fraction=args.box_fraction,
                            select=args.select)
    stamps: list[float] = []
    probe_dir = args.out.with_name(args.out.name + "-probe")
    shutil.rmtree(probe_dir, ignore_errors=True)
    train(recipe.with_(steps=args.probe_steps, eval_every=10**6), probe_dir, resume=False, quiet=True,
          device=args.device, workers=args.workers, init=args.init, on_step=lambda s, l: stamps.append(time.time()))
    skip = min(10, (len(stamps) - 1) // 2)  # leave at least one timed step
    step_s = (stamps[-1] - stamps[skip]) / max(1, len(stamps) - 1 - skip)
    evals = max(1, int(args.budget_s / step_s) // args.eval_every)
    steps = max(100, int(args.budget_s / (step_s * 1.04)) // 100 * 100)  # ~4% for evaluations
    probe = {"step_s": round(step_s, 4), "steps": steps, "evals": evals, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else args.device,
             "recipe": recipe.with_(steps=steps).to_dict()}
    print(json.dumps(probe), flush=True)
    result = train(recipe.with_(steps=steps), args.out, resume=False, quiet=False, device=args.device,
                   workers=args.workers, init=args.init)
    print(json.dumps({"best": result["best"], "elapsed_s": round(result["elapsed_s"], 1)}), flush=True)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        fp16_copy(args.out / BEST, args.copy_to / BEST)
        shutil.copy(args.out / LOG, args.copy_to / LOG)
        (args.copy_to / "probe.json").write_text(json.dumps(probe, indent=1))


if __name__ == "__main__":
    main()
