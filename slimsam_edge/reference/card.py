"""Publish a trained reference run as the shipped model: weights + a model card with measured numbers.

``publish(run_dir)`` takes ``run_dir/best.safetensors`` (written by :func:`train`), stores it as
fp16 in ``slimsam_edge/assets/sam_mini.safetensors`` (loaders upcast to fp32), evaluates it with the
same protocol as ``slimsam-edge eval`` on three procedural splits that training never saw, and writes
``MODEL_CARD.md`` plus ``MODEL_CARD.json`` (the numbers the tests reproduce). The card's headline is
the split that never chose a checkpoint (``test``), beside the one that did (``heldout``) and a seed
used for nothing else (``unseen``). Every file is written atomically. :func:`refresh` re-measures
and re-renders the shipped card without the run folder. The command line is
:mod:`slimsam_edge.research.card` (``python -m slimsam_edge.research.card runs/sam-mini``).

Illustration (not run as a doctest: it needs files or a model)::

    card = publish("runs/sam-mini")
    card["splits"]["heldout"]["point_miou"] > 0.8
    # -> True
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..eval.evaluate import HELDOUT_SEED, TEST_SEED, UNSEEN_SEED

#: Procedural splits on the card. ``heldout`` is what ``slimsam-edge eval`` uses by default (its
#: first ``Recipe.eval_images`` images also chose the best checkpoint); ``test`` never chose
#: anything (the headline); ``unseen`` is a seed used for nothing but this card.
SPLITS = {"heldout": HELDOUT_SEED, "test": TEST_SEED, "unseen": UNSEEN_SEED}
#: what each split is, in the card's words
SPLIT_ROLES = {"heldout": "selection: chose the shipped step", "test": "never chose a checkpoint",
               "unseen": "a seed used for nothing else"}
CARD_IMAGES = 64
TARGETS = {"point_miou": 0.80, "box_miou": 0.90}
#: the command that publishes a run (``research/card.py``)
PUBLISH = "python -m slimsam_edge.research.card"


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``log.jsonl`` events (empty when there is no log)."""
    log = run_dir / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def start_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's (latest) ``start`` record (recipe, spec, device, init); empty when the log has none."""
    starts = [e for e in events if e.get("event") == "start"]
    return starts[-1] if starts else {}


def _on_gpu(device: str) -> bool:
    """Whether a log's device string (``"cpu, 2 thread(s)"`` or a GPU's name) names a GPU; logs
    older than the field say nothing and ran on the CPU."""
    return bool(device) and not device.startswith(("cpu", "2 CPU"))


def _training_facts(events: list[dict[str, Any]], meta: dict[str, str]) -> dict[str, Any]:
    steps = [e for e in events if e.get("event") == "step"]
    resumes = [e["step"] for e in events if e.get("event") == "resume"]
    start = start_event(events)
    return {
        "device": start.get("device", "2 CPU cores"),
        "recipe": json.loads(meta.get("recipe", "{}")),
        "best_step": int(meta.get("best_step", "0")),
        "selection": json.loads(meta.get("eval_json", "{}")),
        "steps_run": steps[-1]["step"] if steps else None,
        "training_minutes": round(steps[-1]["elapsed_s"] / 60, 1) if steps else None,
        "resumed_at_steps": resumes,
        "steps_changed": _steps_changed(events, meta),
        "steps_planned": start.get("recipe", {}).get("steps"),
        "init_sha256": json.loads(meta.get("recipe", "{}")).get("init_sha256", ""),
        "lineage": json.loads(meta.get("lineage", "[]")),
        **({"regrid": start["init"]["regrid"]} if "regrid" in start.get("init", {}) else {}),
    }


def _final_steps(events: list[dict[str, Any]], meta: dict[str, str]) -> int | None:
    """The run's step count after its last resume (logs older than the resume's ``steps`` field
    fall back to the recipe stored with the best weights)."""
    resumed = [e["steps"] for e in events if e.get("event") == "resume" and "steps" in e]
    return resumed[-1] if resumed else json.loads(meta.get("recipe", "{}")).get("steps")


def _steps_changed(events: list[dict[str, Any]], meta: dict[str, str]) -> bool:
    """Whether a resume changed the run's ``--steps`` (which stretches or compresses its cosine schedule)."""
    first, final = start_event(events).get("recipe", {}).get("steps"), _final_steps(events, meta)
    return first is not None and final is not None and final != first


def _resume_sentence(training: dict[str, Any]) -> str:
    at = training["resumed_at_steps"]
    if not at:
        return ""
    if training.get("steps_changed"):
        first, final = training.get("steps_planned"), training.get("recipe", {}).get("steps")
        lowered = first is not None and final is not None and final < first
        return (f" The run was resumed at steps {at} (the step count was {'lowered' if lowered else 'raised'} on "
                + (f"resume, {first} -> {final}, " if lowered else "resume, ")
                + f"so the cosine schedule was {'compressed' if lowered else 'stretched'} from that step on).")
    return (f" The run was interrupted and resumed from its checkpoint at step(s) {at}; the schedule, the data "
            "stream and the random state carry on, so the result is that of an uninterrupted run up to float rounding.")


def evaluate_splits(weights: Path, count: int = CARD_IMAGES) -> dict[str, dict[str, Any]]:
    """Point / box mIoU of ``weights`` (PyTorch) on each of :data:`SPLITS`, ``count`` images each."""
    from ..eval.evaluate import default_eval_data, evaluate, open_model

    predictor, _ = open_model(weights)
    out = {}
    for name, seed in SPLITS.items():
        res = evaluate(predictor, default_eval_data(count, seed=seed), prompt="both")
        out[name] = {"seed": seed, "images": res["n_images"], "annotations": res["n_annotations"],
                     "point_miou": round(float(res["point"]["miou"]), 4),
                     "box_miou": round(float(res["box"]["miou"]), 4),
                     "by_size": {kind: {b: {"miou": None if v["miou"] is None else round(float(v["miou"]), 4), "n": v["n"]}
                                        for b, v in res[kind]["buckets"].items()} for kind in ("point", "box")}}
    return out


def targets_met(splits: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Whether each split meets every target of :data:`TARGETS`.

    Example:
        >>> targets_met({"test": {"point_miou": 0.87, "box_miou": 0.887}, "heldout": {"point_miou": 0.89, "box_miou": 0.905}})
        {'test': False, 'heldout': True}
    """
    return {name: all(s[k] >= v for k, v in TARGETS.items()) for name, s in splits.items()}


def unseen_command(count: int = CARD_IMAGES) -> str:
    """The CLI commands that measure the ``unseen`` split (the same numbers as :func:`evaluate_splits`)."""
    return (f"slimsam-edge data procedural --out unseen --count {count} --seed {UNSEEN_SEED} && "
            "slimsam-edge eval --data unseen --json")


#: measurements of the shipped weights made outside the card's splits (reported beside them)
OTHER_CHECKS = [{"what": "issue 15's review, procedural data of another seed used for nothing else",
                 "point_miou": 0.841, "box_miou": 0.870}]


def _headline_lines(card: dict[str, Any]) -> list[str]:
    """What a user should expect: the split that never chose a checkpoint first, then the others."""
    splits = card["splits"]
    order = [n for n in ("test", "heldout", "unseen") if n in splits] + [n for n in splits if n not in ("test", "heldout", "unseen")]
    met = card["targets_met"]
    lines = ["## What to expect", "",
             "| split | seed | role | point mIoU | box mIoU | targets met |", "|---|---|---|---|---|---|"]
    for name in order:
        s = splits[name]
        lines.append(f"| {name} | {s['seed']} | {SPLIT_ROLES.get(name, '')} | {s['point_miou']:.4f} | {s['box_miou']:.4f} "
                     f"| {'yes' if met.get(name) else 'no'} |")
    others = card.get("other_checks", [])
    lines += [f"| ({c['what']}) | – | – | {c['point_miou']:.3f} | {c['box_miou']:.3f} | "
              f"{'yes' if all(c[k] >= v for k, v in TARGETS.items()) else 'no'} |" for c in others]
    unselected = [splits[n] for n in order if n != "heldout"] + others
    lines.append("")
    if unselected:
        lo = {k: min(s[k] for s in unselected) for k in TARGETS}
        hi = {k: max(s[k] for s in unselected) for k in TARGETS}
        lines.append(f"On procedural images that chose no checkpoint, expect point mIoU {lo['point_miou']:.2f}-"
                     f"{hi['point_miou']:.2f} and box mIoU {lo['box_miou']:.2f}-{hi['box_miou']:.2f} (64-image "
                     "samples differ by a few hundredths).")
    for k, v in TARGETS.items():
        missed = [s for s in unselected if s[k] < v]
        what = k.split("_")[0]
        lines.append(f"The {what} target ({v}) is met on every split." if not missed else
                     f"The {what} target ({v}) is met on the selection split but missed on {len(missed)} of "
                     f"{len(unselected)} measurements that chose nothing (lowest {min(s[k] for s in missed):.3f}): "
                     "it is not robustly met.")
    return lines + ["", f"The unseen split, from the command line: `{unseen_command()}`", ""]


def _architecture_line(card: dict[str, Any]) -> str:
    """The card's description of the encoder and decoder (cards older than the ``architecture``
    field describe the preset)."""
    from ..models.spec import PRESETS

    preset = PRESETS["sam_mini"]
    e = card.get("architecture", {}).get("encoder") or asdict(preset.encoder)
    d = card.get("architecture", {}).get("decoder") or asdict(preset.decoder)
    grid, regrid = e["img_size"] // e["patch_size"], card["training"].get("regrid")
    moved = (f" (moved to this grid from patch {regrid['patch_size'][0]} / window {regrid['window_size'][0]} "
             "weights at the start of the last stage: models/regrid.py)") if regrid else ""
    return (f"ViT image encoder: {e['img_size']}x{e['img_size']} input, patch {e['patch_size']} ({grid}x{grid} tokens), "
            f"{len(e['qkv_dims'])} blocks, embed {e['embed_dim']}, {e['num_heads']} heads, MLP {e['mlp_dims'][0]}, "
            f"window {e['window_size']}{moved}, global attention in blocks {', '.join(map(str, e['global_attn_indexes']))}, "
            f"decomposed relative position embeddings, neck to {e['out_chans']} channels. SAM's prompt encoder and a "
            f"mask decoder with transformer dim {e['out_chans']} (MLP {d['transformer_mlp_dim']}); low-resolution masks {4 * grid}x{4 * grid}.")


def render_card(card: dict[str, Any]) -> str:
    """The Markdown model card for ``card`` (the dict :func:`publish` returns)."""
    t, r = card["training"], card["training"]["recipe"]
    lines = [
        "# sam-mini — the reference SAM shipped with slimsam-edge", "",
        "A Segment-Anything-architecture model trained from scratch on procedural shapes, so that",
        "compression, quantization and benchmarks report real accuracy without downloading weights.",
        "It is **not** a general-purpose segmenter: it has only seen the procedural images.", "",
        *_headline_lines(card),
        "## Architecture", "",
        _architecture_line(card) + " Parameters: " + ", ".join(f"{k} {v:,}" for k, v in card["params"].items()) + ".",
        "", "## Training", "",
        "```", *card["commands"], "```", "",
        f"Seed {r.get('seed')}, procedural training data seed {r.get('data_seed')}, {t['steps_run']} steps of "
        f"{r.get('batch_images')} images x up to {r.get('masks_per_image')} masks, AdamW lr {r.get('lr')} with "
        f"{r.get('warmup_steps')} warm-up steps and cosine decay, focal {r.get('focal_weight')} + dice "
        f"{r.get('dice_weight')} + IoU-MSE {r.get('iou_weight')}, {int(100 * r.get('box_fraction', 0))}% box prompts, "
        f"{r.get('corrective_rounds')} corrective click round(s). Training time: {t['training_minutes']} min on "
        f"{t.get('device', '2 CPU cores')}." + _resume_sentence(t),
        *(["On a GPU the corrective clicks are drawn on the device (batch.corrective_clicks: chessboard "
           "instead of Euclidean interior distance), so the same command on a CPU trains different weights."]
          if _on_gpu(str(t.get("device", ""))) else []),
        f"The shipped weights are those of step {t['best_step']}, the best held-out {_selected_by(r)} on "
        f"{r.get('eval_images')} images of seed {r.get('eval_seed')}; stored as fp16.",
        *_lineage_lines(t), "",
        "## Evaluation", "",
        "SlimSAM's protocol (`slimsam-edge eval`): one prompt per mask (the most interior point, or the",
        "tight box), single-mask output, IoU averaged per image and then over images.", "",
        "| split | seed | images | masks | point mIoU | box mIoU |", "|---|---|---|---|---|---|",
    ]
    for name, s in card["splits"].items():
        lines.append(f"| {name} | {s['seed']} | {s['images']} | {s['annotations']} | {s['point_miou']:.4f} | {s['box_miou']:.4f} |")
    lines += _size_lines(card["splits"])
    met = ", ".join(f"{name}: {'yes' if ok else 'no'}" for name, ok in card["targets_met"].items())
    lines += ["", f"Targets: point mIoU >= {TARGETS['point_miou']}, box mIoU >= {TARGETS['box_miou']} "
              f"(met: {met}).", "",
              f"Reproduce: `slimsam-edge eval --json` (held-out split, {CARD_IMAGES} images by default).", ""]
    return "\n".join(lines)


def _size_lines(splits: dict[str, dict[str, Any]]) -> list[str]:
    """A table of mIoU by object size (COCO buckets: small < 32², medium < 96² pixels), one row per
    split and prompt; empty for cards made before the card kept sizes."""
    rows = [(name, kind, s["by_size"][kind]) for name, s in splits.items() if "by_size" in s for kind in ("point", "box")]
    if not rows:
        return []

    def cell(v: dict[str, Any]) -> str:
        return "–" if v["miou"] is None else f"{v['miou']:.4f} ({v['n']})"

    lines = ["", "By object size (mean IoU over the masks of each size, their count in brackets; small < 32², medium < 96² pixels):", "",
             "| split | prompt | small | medium | large |", "|---|---|---|---|---|"]
    return lines + [f"| {name} | {kind} | {cell(b['small'])} | {cell(b['medium'])} | {cell(b['large'])} |"
                    for name, kind, b in rows]


def _lineage_lines(training: dict[str, Any]) -> list[str]:
    """Card lines naming the earlier stages a continued run started from (none for a run from scratch)."""
    stages = training.get("lineage") or []
    if not stages:
        return []
    lines = ["", f"This run continued training the weights with sha256 `{training.get('init_sha256', '')[:16]}…` "
             f"(`--init`), made in {len(stages)} earlier stage(s); the commands above rebuild them one from the other:", ""]
    for k, st in enumerate(stages, 1):
        r = st.get("recipe", {})
        grid = f", patch {r['patch_size']} / window {r.get('window_size')}" if r.get("patch_size") else ""
        lines.append(f"{k}. {r.get('steps')} steps of {r.get('batch_images')} images (data seed {r.get('data_seed')}, "
                     f"lr {r.get('lr')}{grid}), {st.get('minutes')} min on {st.get('device') or '2 CPU cores'}; "
                     f"best step {st.get('best_step')}.")
    chain = [(st.get("best_step", 0), st.get("recipe", {})) for st in stages] + [(training["best_step"], training["recipe"])]
    total = sum(step * r.get("batch_images", 0) for step, r in chain)
    lines += ["", f"Training images behind the shipped weights, all stages: {total:,}."]
    return lines


def fp16_copy(src: Path | str, dst: Path | str) -> dict[str, str]:
    """Write ``src``'s tensors as fp16 to ``dst`` (atomically), metadata kept; returns the metadata.

    Illustration (not run as a doctest: it needs files or a model)::

        meta = fp16_copy("runs/sam-mini/best.safetensors", "/tmp/best16.safetensors")
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..fsutil import atomic_path

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k).to(torch.float16) for k in f.keys()}
    with atomic_path(Path(dst)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return meta


def publish(run_dir: Path | str, assets_dir: Path | None = None, *, count: int = CARD_IMAGES) -> dict[str, Any]:
    """Copy ``run_dir/best.safetensors`` into the package as fp16 and write the model card."""
    from ..assets import ASSETS
    from ..models.io import load_model
    from ..models.stats import model_report

    run_dir, assets_dir = Path(run_dir), Path(assets_dir or ASSETS)
    best = run_dir / "best.safetensors"
    if not best.is_file():
        raise CheckpointError(f"{best} not found; run `slimsam-edge train-reference --out {run_dir}` first")
    weights = assets_dir / "sam_mini.safetensors"
    meta = fp16_copy(best, weights)
    events = read_log(run_dir)
    sam, spec = load_model(weights)
    report = model_report(sam, spec)
    card = {
        "model": "sam_mini", "weights": weights.name, "dtype": "float16",
        "params": {k: v for k, v in report["params"].items()},
        "architecture": {"encoder": asdict(spec.encoder), "decoder": asdict(spec.decoder)},
        "training": _training_facts(events, meta),
        "splits": evaluate_splits(weights, count),
        "commands": _commands(run_dir, events, meta),
    }
    return _write_card(card, assets_dir)


def _write_card(card: dict[str, Any], assets_dir: Path) -> dict[str, Any]:
    from ..fsutil import write_text_atomic

    card["targets_met"] = targets_met(card["splits"])
    card["other_checks"] = OTHER_CHECKS
    write_text_atomic(assets_dir / "MODEL_CARD.json", json.dumps(card, indent=2) + "\n")
    write_text_atomic(assets_dir / "MODEL_CARD.md", render_card(card))
    return card


def refresh(assets_dir: Path | None = None, *, count: int = CARD_IMAGES) -> dict[str, Any]:
    """Re-measure the shipped weights on every split of :data:`SPLITS` and re-render the card from
    ``MODEL_CARD.json`` (training facts and commands kept; the run folder is not needed).

    Illustration (not run as a doctest: it needs files or a model)::

        card = refresh()
        sorted(card["splits"])
        # -> ['heldout', 'test', 'unseen']
    """
    from ..assets import ASSETS

    assets_dir = Path(assets_dir or ASSETS)
    path = assets_dir / "MODEL_CARD.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; publish a run first ({PUBLISH} RUN_DIR)")
    card = json.loads(path.read_text())
    card["splits"] = evaluate_splits(assets_dir / card["weights"], count)
    *made, last = card["commands"]
    if last.startswith("python -m slimsam_edge.") and ".card " in last:  # cards written before research/
        card["commands"] = made + [f"{PUBLISH} {last.split()[-1]}"]
    return _write_card(card, assets_dir)


#: recipe fields that ``train-reference`` takes as options
RECIPE_FLAGS = ("seed", "batch_images", "masks_per_image", "lr", "warmup_steps", "eval_every", "data_seed",
                "box_fraction", "select", "patch_size", "window_size")


def _recipe_flags(start: dict[str, Any], init: str | None = None) -> str:
    """The options that reproduce a run's non-default recipe and its device, and ``--init init``."""
    from .recipe import Recipe

    default, recipe = Recipe().to_dict(), start.get("recipe", {})
    flags = [f" --{k.replace('_', '-')} {recipe[k]}" for k in RECIPE_FLAGS if k in recipe and recipe[k] != default[k]]
    if _on_gpu(start.get("device", "")):
        flags.append(" --device cuda")
    if init:
        flags.append(f" --init {init}")
    return "".join(flags)


def _selected_by(recipe: dict[str, Any]) -> str:
    """What picked a run's best step, in words (recipes before ``select`` existed picked by point)."""
    return {"box": "box mIoU", "mean": "mean of point and box mIoU"}.get(recipe.get("select", "point"), "point mIoU")


def _stage_dir(k: int) -> str:
    """The run folder the card's commands give stage ``k`` of a lineage."""
    return f"runs/sam-mini-stage{k}"


def _stage_commands(stages: list[dict[str, Any]]) -> list[str]:
    """Commands that would redo the earlier stages of a lineage, each from the one before."""
    cmds = []
    for k, st in enumerate(stages, 1):
        start = {"recipe": st.get("recipe", {}), "device": st.get("device") or ""}
        init = _stage_dir(k - 1) + "/best.safetensors" if k > 1 else None
        cmds.append(f"slimsam-edge train-reference --out {_stage_dir(k)}{_recipe_flags(start, init)} "
                    f"--steps {st.get('recipe', {}).get('steps')}   # stage {k}")
    return cmds


def _commands(run_dir: Path, events: list[dict[str, Any]], meta: dict[str, str]) -> list[str]:
    """The commands that made the run, read from its log (a raised ``--steps`` shows as a resume);
    a run started with ``--init`` is preceded by the stages that made its starting weights."""
    start, lineage = start_event(events), json.loads(meta.get("lineage", "[]"))
    # the commands form a chain: this run starts from the last stage rebuilt above it
    init = _stage_dir(len(lineage)) + "/best.safetensors" if lineage else (start.get("init") or {}).get("path")
    first, final = start.get("recipe", {}).get("steps"), _final_steps(events, meta)
    base = f"slimsam-edge train-reference --out {run_dir}" + _recipe_flags(start, init)
    cmds = _stage_commands(lineage) + [f"{base} --steps {first or final}"]
    if _steps_changed(events, meta):
        at = [e["step"] for e in events if e.get("event") == "resume"]
        cmds.append(f"{base} --steps {final}   # resumed (from step {at[-1] if at else '?'})")
    return cmds + [f"{PUBLISH} {run_dir}"]
