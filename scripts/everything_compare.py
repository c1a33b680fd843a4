"""Segment everything: our torch-free MaskGenerator (ONNX Runtime bundle) vs segment-anything's
SamAutomaticMaskGenerator on the same weights (the bundle's model.safetensors): agreement and time.

Runs are interleaved (ours, SAM's, ours, ...) so machine load hits both alike; the best of the
repeats is reported. Not a test: a measurement.

    PYTHONPATH=. python scripts/everything_compare.py BUNDLE [--size 480x640] [--pps 16 32] [--repeats 3]
        [--pred-iou-thresh 0.88] [--stability-thresh 0.95] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def match(ours: list[np.ndarray], theirs: list[np.ndarray], thresh: float = 0.9) -> tuple[int, list[float]]:
    """Greedy 1:1 matching by mask IoU (best pairs first); returns (pairs with IoU >= thresh, their IoUs)."""
    if not ours or not theirs:
        return 0, []
    a = np.stack([m.ravel() for m in ours]).astype(np.float32)
    b = np.stack([m.ravel() for m in theirs]).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < thresh:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i); used_b.add(j); pairs.append(float(iou[i, j]))
    return len(pairs), pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--size", default="480x640", help="HxW of the procedural test image")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--pps", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.88)
    ap.add_argument("--stability-thresh", type=float, default=0.95)
    args = ap.parse_args()

    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from slimsam_edge.apps.everything import MaskGenerator
    from slimsam_edge.data.procedural import generate_sample
    from slimsam_edge.models.io import load_model
    from slimsam_edge.predictor import EdgePredictor

    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    image = generate_sample(args.seed, (h, w))[0]
    sam, _ = load_model(args.bundle / "model.safetensors")
    predictor = EdgePredictor.from_bundle(args.bundle, backend="onnxruntime", threads=args.threads)
    report = {"image": [h, w], "torch_threads": torch.get_num_threads(),
              "predict_batch": hasattr(predictor, "predict_batch"), "runs": []}
    for pps in args.pps:
        settings = dict(points_per_side=pps, pred_iou_thresh=args.pred_iou_thresh,
                        stability_score_thresh=args.stability_thresh, output_mode="binary_mask")
        ours_gen = MaskGenerator(predictor, **settings)
        sam_gen = SamAutomaticMaskGenerator(sam, **settings)
        t_ours, t_sam = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter(); ours = ours_gen.generate(image); t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); theirs = sam_gen.generate(image); t_sam.append(time.perf_counter() - t0)
        n, ious = match([r["segmentation"] for r in ours], [r["segmentation"] for r in theirs])
        run = {"points_per_side": pps, "ours_s": round(min(t_ours), 3), "sam_s": round(min(t_sam), 3),
               "speedup": round(min(t_sam) / min(t_ours), 2), "n_ours": len(ours), "n_sam": len(theirs),
               "matched_iou_0.9": n, "matched_fraction": round(n / max(len(ours), len(theirs), 1), 3),
               "mean_matched_iou": round(float(np.mean(ious)), 4) if ious else None}
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
