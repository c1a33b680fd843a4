#!/usr/bin/env python
"""Decoder + postprocessing per prompt (issue 18 item 4): what each faster path saves.

No downloads: ``sam-mini`` (256 px, the shipped trained weights) and ``p77`` (the SlimSAM-77
architecture at 1024 px with random weights; its prompt encoder and mask decoder are SAM's at 1024). Only the low-res decoder is
exported (ONNX, cached in ``--workdir``) and run on a fixed random image embedding, as
``slimsam-edge bench`` runs it after the encoder: one-point prompts on a photo-sized image
(``--image-hw``, 1500x2250 by default). Every table is a median over ``--rounds`` rounds in
which the configurations run interleaved (the order rotates each round).

1. postprocessing alone: the plain path (all C masks channel-last, upsampled to the full padded
   SxS input, cropped, resized, transposed back, thresholded) vs ``transforms.upscale_masks``
   (what ``EdgePredictor`` runs), for C = 1 (``multimask_output=False``) and C = 3, with the
   agreement of their binary masks;
2. the decoder graph alone: the factored graph the exports run (``models/factored_decoder.py``, its
   layer-norm means as products with a 1/C row;
   OpenVINO: its mask inputs folded for prompts without one, its upscaling in bands and its last
   product computed channel-last, as ``EdgePredictor.from_bundle`` opens it) vs segment-anything's
   ``predict_masks`` as it is (the graph and runner before issue 18)
   (``openvino/...:dynamic``: OpenVINO without its static axis-0 compiles, as before issue 18);
3. ``EdgePredictor.predict`` per prompt (decoder + postprocessing) for each runtime/precision,
   single- and multi-mask, next to segment-anything's graph + the plain postprocessing;
4. batched prompts: ``predict_batch`` of ``--batch`` prompts per prompt vs one ``predict`` each;
5. (sam-mini, the shipped trained weights) mask agreement of every runtime/precision and graph
   with segment-anything's graph on openvino/fp32 on real embeddings.

    python scripts/bench_decoder.py --models sam-mini p77 --rounds 7 --json /tmp/bench-decoder.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from slimsam_edge.bench.schedule import quiet_rounds
from slimsam_edge.devices import detected
from slimsam_edge.fsutil import write_text_atomic
from slimsam_edge.models.graph_spec import DECODER_LOWRES, ONNX_SPECS
from slimsam_edge.predictor import MASK_FEEDS, EdgePredictor, ImageEmbedding
from slimsam_edge.runtimes import RunnerOptions, open_runner
from slimsam_edge.transforms import ResizeLongestSide, postprocess_masks, upscale_masks

PRESETS = {"sam-mini": "sam_mini", "p77": "vit_p77"}
FACTORED, SAM = "factored", "segment-anything"


def lowres_spec(factored: bool):
    """The low-res decoder graph factored (:mod:`slimsam_edge.models.factored_decoder`, what SAM-sized
    exports run) or as before issue 18 (segment-anything's ``predict_masks`` as it is)."""
    from slimsam_edge.models import graphs

    name = "FactoredLowResDecoder" if factored else "SamLowResDecoder"
    setattr(graphs, name, type(name, (graphs.LowResDecoder,), {"factored": factored}))  # make_wrapper looks here
    return replace(ONNX_SPECS[DECODER_LOWRES], wrapper=name)  # same I/O and name


def export(model: str, workdir: Path) -> tuple[dict[str, Path], object, object]:
    import torch

    from slimsam_edge.exporters.onnx_export import export_onnx
    from slimsam_edge.models.build import build_sam, random_init_
    from slimsam_edge.models.spec import PRESETS as SPECS

    graphs = {FACTORED: lowres_spec(True), SAM: lowres_spec(False)}
    paths = {name: workdir / f"{model}-{g.wrapper}.onnx" for name, g in graphs.items()}
    if model == "sam-mini":  # the shipped trained weights: masks worth comparing
        from slimsam_edge.assets import require_reference_model
        from slimsam_edge.models.io import load_model

        sam, spec = load_model(require_reference_model())
    else:
        spec = SPECS[PRESETS[model]]
        torch.manual_seed(0)
        sam = random_init_(build_sam(spec), seed=0)
    if not all(p.is_file() for p in paths.values()):
        for name, g in graphs.items():
            export_onnx(sam, g, paths[name])
    return paths, spec, sam


def timed(fn, out: list[float]) -> None:
    t0 = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t0)


def median_ms(values: list[float]) -> float:
    return round(1000 * float(np.median(values)), 2)


def interleave(configs: dict[str, object], rounds: int, reps: int, all_rounds: dict | None = None) -> dict[str, float]:
    """Median ms per call of each config's callable, interleaved (rotating order) over ``rounds``,
    over the quietest third of the rounds (``bench.schedule.quiet_rounds``: this shared host's
    neighbours slow whole stretches of rounds by up to half); ``all_rounds`` gets the medians over
    every round."""
    names = list(configs)
    for name in names:  # warm-up, twice: OpenVINO compiles a prompt count static when fed twice
        configs[name]()
        configs[name]()
    per_round: list[dict[str, list[float]]] = []
    for r in range(rounds):
        per_round.append({n: [] for n in names})
        for name in names[r % len(names):] + names[: r % len(names)]:
            for _ in range(reps):
                timed(configs[name], per_round[-1][name])
    quiet = quiet_rounds([{n: float(np.median(v)) for n, v in times.items()} for times in per_round])
    if all_rounds is not None:
        all_rounds.update({n: median_ms([t for times in per_round for t in times[n]]) for n in names})
    return {n: median_ms([t for i in quiet for t in per_round[i][n]]) for n in names}


def smooth_logits(c: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((c, side // 8 + 1, side // 8 + 1)).astype(np.float32)
    return np.stack([cv2.resize(n, (side, side), interpolation=cv2.INTER_CUBIC) * 8 for n in noise])


def bench_postprocess(size: int, side: int, hw: tuple[int, int], rounds: int) -> dict[str, object]:
    input_size = ResizeLongestSide(size).target_size(*hw)
    res: dict[str, object] = {}
    for c in (1, 3):
        low = smooth_logits(c, side, seed=c)
        masks = np.empty((c, *hw), bool)
        scratch = np.empty(hw, np.float32)

        def plain() -> None:
            np.greater(postprocess_masks(low, input_size, hw, size), 0.0, out=masks)

        def new() -> None:
            upscale_masks(low, input_size, hw, size, masks, threshold=0.0, scratch=scratch)

        res[f"C={c}"] = interleave({"plain": plain, "upscale_masks": new}, rounds, 3)
        want = postprocess_masks(low, input_size, hw, size) > 0
        got = upscale_masks(low, input_size, hw, size, np.empty((c, *hw), bool), threshold=0.0)
        union = np.logical_or(got, want).sum((1, 2))
        res[f"C={c}"]["agreement"] = {  # type: ignore[index]
            "identical_pixels": float((got == want).mean()),
            "min_mask_iou": float((np.logical_and(got, want).sum((1, 2)) / np.maximum(union, 1)).min()),
            "differing_pixels": int((got != want).sum()),
        }
    return res


def open_decoder(path: Path, pair: str, fold: bool = True):
    """``backend/precision``, ``:dynamic`` = OpenVINO without its static axis-0 compiles; ``fold``: the
    runner as ``EdgePredictor.from_bundle`` opens decoders (OpenVINO: mask inputs folded for prompts
    without one, channel means as ReduceMean, the upscaling in bands and the last product channel-last);
    else as before issue 18 (none of those)."""
    pair, _, mode = pair.partition(":")
    backend, precision = pair.split("/")
    extra: dict[str, object] = {} if fold else {"channel_means": False, "channel_last": False, "banded": False}
    extra.update({"static_axis0": False} if mode == "dynamic" else {"fold_zeros": MASK_FEEDS} if fold else {})
    return open_runner(path, backend=backend, options=RunnerOptions(precision=precision, extra=extra)).activate()


def runnable(pairs: list[str], path: Path, fold: bool = True) -> tuple[dict[str, object], dict[str, str]]:
    runners, skipped = {}, {}
    for pair in pairs:
        try:
            runners[pair] = open_decoder(path, pair, fold)
        except Exception as err:  # a precision the machine lacks is refused: report, go on
            skipped[pair] = f"{type(err).__name__}: {err}"
    return runners, skipped


def bench_model(model: str, args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths, spec, sam = export(model, workdir)
    size = spec.image_size
    hw = tuple(args.image_hw)
    result: dict[str, object] = {"image_size": size, "image_hw": list(hw),
                                 "postprocess_ms": bench_postprocess(size, 4 * spec.embed_grid, hw, args.rounds)}
    grid = spec.embed_grid
    rng = np.random.default_rng(0)
    emb = ImageEmbedding(rng.standard_normal((1, spec.prompt_embed_dim, grid, grid)).astype(np.float32), hw,
                         ResizeLongestSide(size).target_size(*hw))
    decoders: dict[str, dict[str, object]] = {}
    skipped: dict[str, str] = {}
    for variant, path in paths.items():
        decoders[variant], miss = runnable(args.pairs, path, fold=variant == FACTORED)  # SAM: as before issue 18
        skipped.update(miss)
    result["skipped"] = skipped
    def predictor(runner) -> EdgePredictor:
        p = EdgePredictor(None, runner, image_size=size, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
        p.set_embedding(emb)
        return p

    preds = {pair: predictor(r) for pair, r in decoders[FACTORED].items()}
    plain_preds = {pair: predictor(r) for pair, r in decoders[SAM].items()}
    pts = [np.array([[rng.uniform(0, hw[1]), rng.uniform(0, hw[0])]]) for _ in range(args.prompts)]
    feed = next(iter(preds.values())).prompt_feed(pts[0], np.ones(1))

    # 2. the decoder graph alone, one prompt
    configs = {f"{pair} {variant}": (lambda r=r: r.infer(feed))
               for variant, runners in decoders.items() for pair, r in runners.items()}
    result["decoder_graph_ms"] = interleave(configs, args.rounds, args.prompts,
                                            result.setdefault("decoder_graph_all_rounds_ms", {}))

    # 3. predict() per prompt, next to the decoder + the plain postprocessing
    def cycle(fn):
        it = iter(range(1 << 60))
        return lambda: fn(pts[next(it) % len(pts)])

    def plain_predict(p: EdgePredictor, multimask: bool):
        sel = slice(1, None) if multimask else slice(0, 1)

        def run(pt):
            out = p.decoder.infer(p.prompt_feed(pt, np.ones(1)))
            low = out["low_res_masks"][0, sel]
            return postprocess_masks(low, p.input_size, p.original_size, p.image_size) > p.mask_threshold
        return run

    configs = {}
    for pair, p in preds.items():
        for mm in (False, True):
            tag = "3 masks" if mm else "1 mask"
            configs[f"{pair} {tag} predict"] = cycle(lambda pt, p=p, mm=mm: p.predict(pt, np.ones(1), multimask_output=mm))
            if pair in plain_preds:
                configs[f"{pair} {tag} decoder + plain postprocess"] = cycle(plain_predict(plain_preds[pair], mm))
    result["predict_ms"] = interleave(configs, args.rounds, args.prompts, result.setdefault("predict_all_rounds_ms", {}))

    # 4. batched prompts vs one by one (single mask), per prompt
    batch = np.stack(pts[: args.batch]) if args.prompts >= args.batch else np.stack((pts * args.batch)[: args.batch])
    configs = {}
    for pair, p in preds.items():
        configs[f"{pair} predict_batch"] = lambda p=p: p.predict_batch(batch, np.ones(batch.shape[:2]), multimask_output=False)
        configs[f"{pair} {args.batch} x predict"] = lambda p=p: [p.predict(b, np.ones(1), multimask_output=False) for b in batch]
    per_call = interleave(configs, args.rounds, 1)
    result["batch_per_prompt_ms"] = {k: round(v / args.batch, 2) for k, v in per_call.items()}
    if model == "sam-mini":
        result["agreement"] = agreement(sam, spec, decoders, args.agree_images)
    return result


def agreement(sam, spec, decoders: dict[str, dict[str, object]], images: int) -> dict[str, float]:
    """Mean / min mask IoU against segment-anything's graph on openvino/fp32, on real embeddings (the
    trained model's torch encoder on procedural images), 8 one-point prompts per image, all 4 tokens'
    masks at the original size, through predict()'s postprocessing."""
    import torch

    from slimsam_edge.data.procedural import generate_sample
    from slimsam_edge.transforms import preprocess

    base = decoders[SAM].get("openvino/fp32") or next(iter(decoders[SAM].values()))
    ious: dict[str, list[float]] = {}
    for i in range(images):
        img = generate_sample(100 + i, (480, 640))[0]
        x, input_size = preprocess(img, spec.image_size, spec.pixel_mean, spec.pixel_std)
        with torch.no_grad():
            feats = sam.image_encoder(torch.from_numpy(x)).numpy()
        p = EdgePredictor(None, base, image_size=spec.image_size, pixel_mean=spec.pixel_mean, pixel_std=spec.pixel_std)
        p.set_embedding(ImageEmbedding(feats, img.shape[:2], input_size))
        rng = np.random.default_rng(i)
        for _ in range(8):
            feed = p.prompt_feed(np.array([[rng.uniform(0, 640), rng.uniform(0, 480)]]), np.ones(1))
            ref = base.infer(feed)["low_res_masks"][0]
            want = upscale_masks(ref, input_size, img.shape[:2], spec.image_size,
                                 np.empty((ref.shape[0], *img.shape[:2]), bool), threshold=0.0)
            for variant, runners in decoders.items():
                for pair, r in runners.items():
                    low = r.infer(feed)["low_res_masks"][0]
                    got = upscale_masks(low, input_size, img.shape[:2], spec.image_size,
                                        np.empty((low.shape[0], *img.shape[:2]), bool), threshold=0.0)
                    for a, b in zip(got, want):
                        u = np.logical_or(a, b).sum()
                        ious.setdefault(f"{pair} {variant}", []).append(1.0 if u == 0 else float((a & b).sum() / u))
    return {k: {"mean_iou": round(float(np.mean(v)), 4), "min_iou": round(float(np.min(v)), 4), "masks": len(v)}
            for k, v in ious.items()}


def cell(quiet: dict, every: dict, key: str) -> str:
    """``quiet (all rounds)`` of one configuration, ``–`` where it was not measured."""
    if key not in quiet:
        return "–"
    return f"{quiet[key]} ({every[key]})" if key in every else str(quiet[key])


def render(out: dict, command: str) -> str:
    """docs/results/decoder.md from the JSON result."""
    cpu = out["cpu"]
    lines = ["# Decoder + postprocessing per prompt", "",
             f"Generated by `{command}`.", "",
             f"Machine: {cpu.get('cpu_model')}, {cpu.get('cores_logical')} logical cores, "
             f"{', '.join(cpu.get('cpu_features') or [])}; cv2 threads {out['cv2_threads']}; 1-minute load "
             f"average {' -> '.join(str(v) for v in out.get('load_avg', []))} (start -> end: above the core "
             "count, other work shared the CPU and only the ratios within a table mean much). Medians over "
             "interleaved rounds, ms per prompt (one-point prompts), masks resized to the image size given: over the "
             "quietest third of the rounds (`bench.schedule.quiet_rounds`: every configuration runs in every round, so "
             "a neighbour's burst slows all of a round alike; this host's load moves a 1024-px decoder call between "
             "~14 and ~25 ms within a minute), in parentheses over all rounds.", ""]
    for model, res in out["models"].items():
        h, w = res["image_hw"]
        lines += [f"## {model} ({res['image_size']} px input, image {h}x{w})", "",
                  "Postprocessing alone (binary masks):", "",
                  "| masks | plain path | upscale_masks | identical pixels | min mask IoU |", "|---|---|---|---|---|"]
        for c, r in res["postprocess_ms"].items():
            a = r["agreement"]
            lines.append(f"| {c} | {r['plain']} | {r['upscale_masks']} | {a['identical_pixels']:.6f} | {a['min_mask_iou']:.4f} |")
        lines += ["", "Decoder graph alone (one prompt; factored = `models/factored_decoder.py`, what exports of "
                  "SAM-sized decoders run, on OpenVINO with the mask inputs folded to constants for this prompt without "
                  "one (`fold_zeros`), its channel means as ReduceMean, the upscaling in cache-sized bands and the last "
                  "product computed channel-last "
                  "(`runtimes/openvino/rewrite.py`); "
                  "segment-anything = its `predict_masks` as it is, the graph and runner before "
                  "issue 18):", "",
                  "| runtime/precision | segment-anything | factored | ratio |", "|---|---|---|---|"]
        g, g_all = res["decoder_graph_ms"], res.get("decoder_graph_all_rounds_ms", {})
        for pair in dict.fromkeys(k.split(" ")[0] for k in g):
            old, new = g.get(f"{pair} {SAM}"), g.get(f"{pair} {FACTORED}")
            ratio = f"{old / new:.2f}x" if old and new else "–"
            lines.append(f"| {pair} | {cell(g, g_all, f'{pair} {SAM}')} | {cell(g, g_all, f'{pair} {FACTORED}')} | {ratio} |")
        lines += ["", "`predict()` per prompt, decoder + postprocessing (plain = segment-anything's decoder graph + "
                  "the postprocessing before issue 18):", "",
                  "| runtime/precision | 1 mask | 1 mask, plain | 3 masks | 3 masks, plain |", "|---|---|---|---|---|"]
        pr, pr_all = res["predict_ms"], res.get("predict_all_rounds_ms", {})
        for pair in dict.fromkeys(k.split(" ")[0] for k in pr):
            cells = [cell(pr, pr_all, f"{pair} {n} mask{'s' if n == 3 else ''}{tail}") for n in (1, 3)
                     for tail in (" predict", " decoder + plain postprocess")]
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
        lines += ["", "Batched prompts (1 mask each), ms per prompt:", "", "| runtime/precision | predict_batch | one predict each |",
                  "|---|---|---|"]
        bp = res["batch_per_prompt_ms"]
        for pair in dict.fromkeys(k.split(" ")[0] for k in bp):
            one = next((v for k, v in bp.items() if k.startswith(pair + " ") and k.endswith("x predict")), "–")
            lines.append(f"| {pair} | {bp.get(pair + ' predict_batch', '–')} | {one} |")
        if res.get("skipped"):
            lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items())]
        if "agreement" in res:
            lines += ["", "Mask agreement with segment-anything's graph on openvino/fp32 on real embeddings (trained weights, "
                      "procedural 480x640 images, 8 one-point prompts each):", "",
                      "| graph / runtime | mean IoU | min IoU | masks |", "|---|---|---|---|"]
            for k, v in res["agreement"].items():
                lines.append(f"| {k} | {v['mean_iou']} | {v['min_iou']} | {v['masks']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--models", nargs="+", default=["sam-mini", "p77"], choices=sorted(PRESETS))
    ap.add_argument("--pairs", nargs="+", default=["openvino/fp32", "openvino/fp32:dynamic", "openvino/bf16",
                                                   "openvino/bf16:dynamic", "onnxruntime/fp32"],
                    help="backend/precision[:dynamic] (dynamic: OpenVINO without the static one-prompt compile)")
    ap.add_argument("--image-hw", nargs=2, type=int, default=[1500, 2250])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--prompts", type=int, default=5, help="calls per configuration and round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workdir", default="/tmp/bench-decoder")
    ap.add_argument("--agree-images", type=int, default=8, help="images of the sam-mini agreement check")
    ap.add_argument("--json")
    ap.add_argument("--markdown", help="write the tables here (docs/results/decoder.md)")
    args = ap.parse_args()
    info = detected()
    out = {"cpu": {k: info.get(k) for k in ("cpu_model", "cpu_features", "cores_logical", "supports_bf16")},
           "cv2_threads": cv2.getNumThreads(), "models": {}, "load_avg": [round(os.getloadavg()[0], 1)]}
    for model in args.models:
        out["models"][model] = bench_model(model, args)
        print(json.dumps({model: out["models"][model]}, indent=1), flush=True)
    out["load_avg"].append(round(os.getloadavg()[0], 1))
    if args.json:
        write_text_atomic(args.json, json.dumps(out, indent=1))
    if args.markdown:
        import sys

        write_text_atomic(args.markdown, render(out, "python " + " ".join(sys.argv)))


if __name__ == "__main__":
    main()
