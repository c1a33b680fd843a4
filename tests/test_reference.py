"""The reference-model trainer: losses, prompt sampling, recipe, a tiny training run and resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from slimsam_edge.data.prompts import corrective_point, error_regions, mask_box, noisy_box, random_point
from slimsam_edge.errors import DataError, UsageError
from slimsam_edge.models.build import build_sam
from slimsam_edge.models.io import load_model
from slimsam_edge.models.losses import dice_loss, mask_iou_from_logits, mask_losses, sigmoid_focal_loss
from slimsam_edge.models.spec import PRESETS, ModelSpec
from slimsam_edge.reference.recipe import Recipe


def _square(h: int = 32, w: int = 32) -> tuple[np.ndarray, torch.Tensor]:
    m = np.zeros((h, w), bool)
    m[8:20, 4:24] = True
    return m, torch.from_numpy(m).float()[None]


# ---------------------------------------------------------------- losses
def test_losses_zero_for_perfect_prediction() -> None:
    _, t = _square()
    perfect = (t * 2 - 1) * 40
    assert float(sigmoid_focal_loss(perfect, t)) < 1e-6
    assert float(dice_loss(perfect, t)) < 1e-6
    out = mask_losses(perfect[:, None], t, torch.ones(1, 1))
    assert float(out["mask"]) < 1e-5 and float(out["iou"]) == 0.0


def test_focal_and_dice_known_values() -> None:
    t = torch.ones(1, 2, 2)
    # logits 0 -> p = 0.5: focal = alpha * (1 - 0.5)^2 * ln 2
    assert float(sigmoid_focal_loss(torch.zeros(1, 2, 2), t)) == pytest.approx(0.25 * 0.25 * np.log(2), rel=1e-5)
    # dice with p = 0.5 everywhere on an all-ones target: 1 - (2*2 + 1) / (2 + 4 + 1)
    assert float(dice_loss(torch.zeros(1, 2, 2), t)) == pytest.approx(1 - 5 / 7, rel=1e-5)
    # wrong predictions cost more than right ones
    assert float(sigmoid_focal_loss(-5 * torch.ones(1, 2, 2), t)) > float(sigmoid_focal_loss(5 * torch.ones(1, 2, 2), t))


def test_mask_losses_shapes_and_iou_target() -> None:
    _, t = _square()
    logits = torch.stack([(t * 2 - 1) * 40, -40 * torch.ones_like(t)], 1)  # (1, 2, H, W)
    out = mask_losses(logits, t, torch.tensor([[1.0, 1.0]]))
    assert out["mask"].shape == (1, 2)
    assert float(out["mask"][0, 0]) < float(out["mask"][0, 1])
    assert float(out["iou"][0, 0]) == pytest.approx(0.0) and float(out["iou"][0, 1]) == pytest.approx(1.0)
    assert mask_iou_from_logits(torch.full((1, 2, 2), -1.0), torch.zeros(1, 2, 2)).tolist() == [1.0]


# ---------------------------------------------------------------- prompts
def test_random_points_inside_mask() -> None:
    m, _ = _square()
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = random_point(m, rng)
        assert m[int(y), int(x)]


def test_noisy_boxes_within_image_and_near_mask() -> None:
    m, _ = _square(40, 30)
    m[:, :] = False
    m[0:39, 2:29] = True  # touches the borders: noise must be clipped
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = mask_box(m)
    for _ in range(100):
        b = noisy_box(m, rng, noise=0.1)
        assert 0 <= b[0] < b[2] <= 30 and 0 <= b[1] < b[3] <= 40
        assert abs(b[0] - x0) <= 20 and abs(b[3] - y1) <= 20
    assert noisy_box(m, None) == (x0, y0, x1, y1)


def test_corrective_points_from_larger_error_region() -> None:
    gt, _ = _square()
    missed = gt.copy()
    missed[8:20, 14:24] = False  # false negatives only
    (x, y), label = corrective_point(missed, gt)
    assert label == 1 and gt[int(y), int(x)] and not missed[int(y), int(x)]
    spill = gt.copy()
    spill[20:30, 0:30] = True  # false positives larger than the few false negatives
    spill[8, 4] = False
    (x, y), label = corrective_point(spill, gt, np.random.default_rng(0))
    assert label == 0 and spill[int(y), int(x)] and not gt[int(y), int(x)]
    (x, y), label = corrective_point(gt, gt)
    assert label == 1 and gt[int(y), int(x)]
    fn, fp = error_regions(spill, gt)
    assert fp.sum() > fn.sum() == 1


def test_batched_corrective_clicks_fall_in_the_larger_error_region() -> None:
    from slimsam_edge.models.batch import corrective_clicks, interior_depth

    gt = torch.zeros(3, 32, 32, dtype=torch.bool)
    gt[:, 4:20, 4:20] = True
    pred = torch.zeros_like(gt)
    pred[0, 4:20, 4:10] = True          # mostly missed: a positive click in the missed part
    pred[1, 0:32, 0:32] = True          # mostly spilled: a negative click outside the truth
    pred[2] = gt[2]                     # perfect: a positive click inside the truth
    xy, lab = corrective_clicks(pred, gt, torch.Generator().manual_seed(3))
    assert lab.tolist() == [1, 0, 1]
    (x0, y0), (x1, y1), (x2, y2) = (tuple(int(v) for v in p) for p in xy)
    assert gt[0, y0, x0] and not pred[0, y0, x0]
    assert pred[1, y1, x1] and not gt[1, y1, x1]
    assert gt[2, y2, x2]
    depth = interior_depth(gt[2:])
    assert depth[0, y2, x2] >= 0.5 * depth.max()           # away from the border
    again, _ = corrective_clicks(pred, gt, torch.Generator().manual_seed(3))
    assert torch.equal(xy, again)                           # seeded: reproducible


def test_prompt_errors_are_typed() -> None:
    with pytest.raises(DataError):
        random_point(np.zeros((4, 4), bool), np.random.default_rng(0))
    with pytest.raises(DataError):
        error_regions(np.zeros((4, 4)), np.zeros((5, 4)))


# ---------------------------------------------------------------- recipe
def test_recipe_validation_and_schedule() -> None:
    r = Recipe(steps=100, warmup_steps=10, lr=1e-3)
    assert Recipe.from_json(r.to_json()) == r
    assert r.lr_at(0) < r.lr_at(9) == pytest.approx(1e-3)
    assert r.lr_at(99) < r.lr_at(50) < r.lr_at(10)
    for bad in (dict(steps=0), dict(eval_seed=1), dict(schedule="step"), dict(box_fraction=2.0), dict(select="iou")):
        with pytest.raises(UsageError):
            replace(r, **bad).validate()
    with pytest.raises(UsageError):
        Recipe.from_dict({"nope": 1})


# ---------------------------------------------------------------- training
def _tiny_spec() -> ModelSpec:
    base = PRESETS["sam_mini"]
    enc = replace(base.encoder, img_size=128, embed_dim=48, num_heads=4, window_size=4,
                  qkv_dims=(48, 48), mlp_dims=(96, 96), global_attn_indexes=(1,), out_chans=32)
    dec = replace(base.decoder, transformer_mlp_dim=64, iou_head_hidden_dim=32)
    return ModelSpec("custom", enc, dec)


def _tiny_recipe(steps: int) -> Recipe:
    return Recipe(steps=steps, batch_images=2, masks_per_image=3, lr=2e-3, warmup_steps=2,
                  image_size=128, loss_size=64, eval_images=2, eval_every=3, checkpoint_every=2,
                  log_every=1)


def test_tiny_training_run_writes_loadable_weights(tmp_path) -> None:
    from slimsam_edge.reference.train import BEST, CHECKPOINT, LOG, train

    losses: list[float] = []
    result = train(_tiny_recipe(6), tmp_path, spec=_tiny_spec(), quiet=True,
                   on_step=lambda s, l: losses.append(l["loss"]))
    assert result["steps"] == 6 and len(losses) == 6 and all(np.isfinite(losses))
    assert min(losses[3:]) < losses[0]  # the loss falls on a tiny model with a high LR
    assert (tmp_path / CHECKPOINT).exists()
    model, spec = load_model(tmp_path / BEST)
    assert spec.encoder == _tiny_spec().encoder
    records = [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6] and 0 <= evals[-1]["point"] <= 1
    assert result["best"]["point"] == max(e["point"] for e in evals)


def test_select_picks_best_weights_by_the_chosen_score(tmp_path) -> None:
    from slimsam_edge.reference.card import publish
    from slimsam_edge.reference.train import LOG, train

    recipe = replace(_tiny_recipe(6), eval_every=1, select="mean", box_fraction=0.7)
    result = train(recipe, tmp_path / "run", spec=_tiny_spec(), quiet=True)
    evals = [json.loads(x) for x in (tmp_path / "run" / LOG).read_text().splitlines()]
    evals = [e for e in evals if e["event"] == "eval"]
    means = [(e["point"] + e["box"]) / 2 for e in evals]
    assert result["best"]["step"] == evals[int(np.argmax(means))]["step"]
    # the card's command reproduces both options and says what picked the weights
    card = publish(tmp_path / "run", tmp_path / "assets", count=1)
    assert "--box-fraction 0.7 --select mean" in card["commands"][0]
    text = (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    assert "70% box prompts" in text and "the best held-out mean of point and box mIoU" in text


def test_resume_continues_from_checkpoint(tmp_path) -> None:
    from slimsam_edge.reference.train import CHECKPOINT, LOG, train

    spec = _tiny_spec()
    full = train(_tiny_recipe(4), tmp_path / "full", spec=spec, quiet=True)
    train(_tiny_recipe(2), tmp_path / "split", spec=spec, quiet=True)
    seen: list[int] = []
    resumed = train(_tiny_recipe(4), tmp_path / "split", spec=spec, quiet=True, resume=True,
                    on_step=lambda s, l: seen.append(s))
    assert seen == [3, 4]
    assert resumed["final"]["loss"] == pytest.approx(full["final"]["loss"], rel=1e-4)
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=False)
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        torch.testing.assert_close(v, b["model"][k], rtol=1e-4, atol=1e-5)
    assert any(json.loads(x)["event"] == "resume" for x in (tmp_path / "split" / LOG).read_text().splitlines())
    # the card tells a run whose --steps was raised on resume from one interrupted and resumed as it was
    from slimsam_edge.reference.card import publish

    raised = publish(tmp_path / "split", tmp_path / "assets", count=1)
    assert raised["training"]["steps_changed"] and raised["commands"][-2].endswith("--steps 4   # resumed (from step 2)")
    assert "cosine schedule was stretched" in (tmp_path / "assets" / "MODEL_CARD.md").read_text()

    def crash(step: int, _: dict) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_tiny_recipe(4), tmp_path / "cut", spec=spec, quiet=True, on_step=crash)
    # a resume without --steps (the CLI's keep_planned_steps) trains to the checkpoint's plan, not the recipe's
    kept = train(_tiny_recipe(50), tmp_path / "cut", spec=spec, quiet=True, resume=True, keep_planned_steps=True)
    assert kept["steps"] == 4
    same = publish(tmp_path / "cut", tmp_path / "assets", count=1)
    assert same["training"]["resumed_at_steps"] == [2] and not same["training"]["steps_changed"]
    assert not any("# resumed" in c for c in same["commands"])
    text = (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    assert "interrupted and resumed from its checkpoint at step(s) [2]" in text and "stretched" not in text


def test_init_continues_from_weights_and_records_lineage(tmp_path) -> None:
    from safetensors import safe_open

    from slimsam_edge.errors import ModelTypeError
    from slimsam_edge.fsutil import sha256_file
    from slimsam_edge.reference.train import BEST, LOG, load_init, train

    spec = _tiny_spec()
    train(_tiny_recipe(3), tmp_path / "a", spec=spec, quiet=True)
    parent = tmp_path / "a" / BEST
    # the start of a continued run is exactly the parent's weights
    sam = build_sam(spec)
    info = load_init(sam, parent)
    ref, _ = load_model(parent)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(sam.state_dict()[k], v)
    assert info["sha256"] == sha256_file(parent)
    assert [s["best_step"] for s in info["lineage"]] == [3] and info["lineage"][0]["recipe"]["steps"] == 3
    # a second stage names its parent in the recipe, and its weights carry the lineage on
    child = _tiny_recipe(3).with_(data_seed=7)
    train(child, tmp_path / "b", spec=spec, quiet=True, init=parent)
    start = json.loads((tmp_path / "b" / LOG).read_text().splitlines()[0])
    assert start["init"]["sha256"] == info["sha256"] and start["recipe"]["init_sha256"] == info["sha256"]
    with safe_open(str(tmp_path / "b" / BEST), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["lineage"]) == info["lineage"] and json.loads(meta["recipe"])["data_seed"] == 7
    third = load_init(build_sam(spec), tmp_path / "b" / BEST)
    assert [s["recipe"]["data_seed"] for s in third["lineage"]] == [1, 7]
    # weights of another architecture are refused in one line
    with pytest.raises(ModelTypeError, match="architecture differs"):
        load_init(build_sam(replace(spec, encoder=replace(spec.encoder, embed_dim=32, qkv_dims=(32, 32)))), parent)
    with pytest.raises(UsageError, match="not a .safetensors"):
        load_init(build_sam(spec), tmp_path / "a" / "checkpoint.pt")
    with pytest.raises(ModelTypeError, match="sam_mini.safetensors: its architecture differs"):
        load_init(build_sam(spec), "sam-mini")  # the name resolves to the shipped weights


def test_card_of_a_continued_run_lists_its_stages(tmp_path) -> None:
    from slimsam_edge.reference.card import PUBLISH, SPLITS, publish, refresh, targets_met, unseen_command
    from slimsam_edge.research.card import main as card_main
    from slimsam_edge.reference.train import BEST, train

    spec = _tiny_spec()
    train(_tiny_recipe(2), tmp_path / "a", spec=spec, quiet=True)
    train(_tiny_recipe(3).with_(data_seed=5, lr=1e-3), tmp_path / "b", spec=spec, quiet=True, init=tmp_path / "a" / BEST)
    card = publish(tmp_path / "b", tmp_path / "assets", count=2)
    cmds = card["commands"]
    assert len(cmds) == 3 and cmds[0].endswith("--steps 2   # stage 1") and "--init" not in cmds[0]
    # the chain: the last command starts from the stage the card rebuilds, not from a path on this machine
    assert "--init runs/sam-mini-stage1/best.safetensors" in cmds[1] and "--data-seed 5" in cmds[1] and "--lr 0.001" in cmds[1]
    assert [s["recipe"]["steps"] for s in card["training"]["lineage"]] == [2]
    text = (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    assert "made in 1 earlier stage(s)" in text and f"all stages: {(2 + card['training']['best_step']) * 2:,}." in text
    assert card["training"]["init_sha256"][:16] in text
    # mIoU by object size: every mask of the split falls in one bucket, and the card prints the table
    for split in card["splits"].values():
        for kind in ("point", "box"):
            assert sum(b["n"] for b in split["by_size"][kind].values()) == split["annotations"]
    assert "| heldout | box |" in text and "| test | point |" in text
    # the headline comes first: the split that never chose a checkpoint, then the selection split
    head = text.split("## What to expect", 1)[1].split("## Architecture", 1)[0]
    assert text.index("## What to expect") < text.index("## Architecture")
    assert head.index("| test | 2002 |") < head.index("| heldout | 1001 |") < head.index("| unseen | 7777 |")
    assert card["targets_met"] == targets_met(card["splits"]) and set(card["targets_met"]) == set(SPLITS)
    assert unseen_command(64) in head and "expect point mIoU" in head and "0.841" in head
    # refresh re-measures the shipped card without the run folder; an older publish command is renamed
    old = json.loads((tmp_path / "assets" / "MODEL_CARD.json").read_text())
    old["commands"][-1] = "python -m slimsam_edge.reference.card runs/x"
    (tmp_path / "assets" / "MODEL_CARD.json").write_text(json.dumps(old))
    again = refresh(tmp_path / "assets", count=2)
    assert again["splits"] == card["splits"] and again["commands"][-1] == f"{PUBLISH} runs/x"
    assert f"{PUBLISH} runs/x" in (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    with pytest.raises(SystemExit):
        card_main([])  # neither a run folder nor --refresh


def test_card_says_whether_a_resume_raised_or_lowered_the_steps() -> None:
    from slimsam_edge.reference.card import _resume_sentence

    facts = {"resumed_at_steps": [100], "steps_changed": True, "steps_planned": 400, "recipe": {"steps": 300}}
    assert "lowered on resume, 400 -> 300, so the cosine schedule was compressed" in _resume_sentence(facts)
    assert "raised on resume, so the cosine schedule was stretched" in _resume_sentence({**facts, "recipe": {"steps": 500}})
    assert _resume_sentence({**facts, "resumed_at_steps": []}) == ""


def test_recipe_refuses_the_card_test_seed() -> None:
    with pytest.raises(UsageError, match="test split"):
        Recipe(data_seed=2002).validate()


def _workers_match_inline(out: Path) -> None:
    from slimsam_edge.reference.train import CHECKPOINT, step_images, train

    r = _tiny_recipe(3)
    inline = list(step_images(r, start=1))
    ahead = list(step_images(r, start=1, workers=2))
    assert len(inline) == len(ahead) == 2
    for a, b in zip(inline, ahead):
        assert [np.array_equal(x.image, y.image) for x, y in zip(a, b)] == [True] * r.batch_images
    spec = _tiny_spec()
    train(r, out / "inline", spec=spec, quiet=True)
    train(r, out / "workers", spec=spec, quiet=True, workers=2)
    a = torch.load(out / "inline" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(out / "workers" / CHECKPOINT, weights_only=True)["model"]
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=0, atol=0)


def test_worker_processes_feed_the_same_images(tmp_path) -> None:
    """Images generated ahead in worker processes train exactly the weights inline generation does.

    Runs in its own interpreter: after a DataLoader with spawned workers has run in the pytest
    process, a later subprocess call there crashed (heap corruption in CPython's allocator, seen
    only with the other reference tests before and tests/test_runtimes.py after); the training
    CLI runs in a process of its own too.
    """
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_reference as t; t._workers_match_inline(Path(sys.argv[2])); print('same weights')")
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "same weights" in proc.stdout, proc.stderr[-3000:]


def test_batch_loss_with_device_clicks_runs_on_cpu_tensors() -> None:
    """The GPU's click path (a torch generator) on CPU tensors: finite loss, gradients everywhere."""
    from slimsam_edge.data.procedural import procedural_sample
    from slimsam_edge.models.build import build_sam
    from slimsam_edge.models.batch import batch_loss

    torch.manual_seed(0)
    sam = build_sam(_tiny_spec()).train()
    r = _tiny_recipe(1)
    samples = [procedural_sample(1, i, r.image_size) for i in range(2)]
    out = batch_loss(sam, r, [s.image for s in samples], [[a.mask for a in s.annotations] for s in samples],
                     np.random.default_rng(0), torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert np.isfinite(float(out["loss"])) and 0 <= float(out["train_iou"]) <= 1
    assert sam.mask_decoder.iou_token.weight.grad is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from slimsam_edge.cli.train_reference import train_reference
    from slimsam_edge.compress.device import resolve_device

    assert resolve_device("auto") == "cpu"
    with pytest.raises(UsageError, match="no CUDA GPU"):
        resolve_device("cuda")
    app = typer.Typer()
    app.command()(train_reference)
    res = CliRunner().invoke(app, ["--out", str(tmp_path / "run"), "--steps", "1", "--device", "cuda"])
    assert res.exit_code == 2 and "no CUDA GPU" in res.output and "Traceback" not in res.output


@pytest.mark.gpu
def test_training_on_cuda_matches_cpu_start(tmp_path) -> None:
    """A tiny run on the GPU learns (finite, falling loss) and writes CPU-loadable weights."""
    from slimsam_edge.reference.train import BEST, LOG, train

    losses: list[float] = []
    result = train(_tiny_recipe(6), tmp_path, spec=_tiny_spec(), quiet=True, device="cuda", workers=2,
                   on_step=lambda s, l: losses.append(l["loss"]))
    assert len(losses) == 6 and all(np.isfinite(losses)) and min(losses[3:]) < losses[0]
    model, _ = load_model(tmp_path / BEST)
    assert next(model.parameters()).device.type == "cpu" and 0 <= result["best"]["point"] <= 1
    start = json.loads((tmp_path / LOG).read_text().splitlines()[0])
    assert start["device"] == torch.cuda.get_device_name(0)


def test_cli_rejects_a_file_as_out(tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from slimsam_edge.cli.train_reference import train_reference

    app = typer.Typer()
    app.command()(train_reference)
    f = tmp_path / "file"
    f.write_text("x")
    res = CliRunner().invoke(app, ["--out", str(f), "--steps", "1"])
    assert res.exit_code == 2 and "not a folder" in res.output
    for args, text in ((["--init", str(f)], "not a .safetensors weights file"), (["--data-seed", "2002"], "test split"),
                       (["--select", "iou"], "select 'iou': choose one of point, box, mean")):
        res = CliRunner().invoke(app, ["--out", str(tmp_path / "run"), "--steps", "1", *args])
        assert res.exit_code == 2 and text in res.output and "Traceback" not in res.output, res.output


def test_cli_resume_without_steps_keeps_the_plan(tmp_path, monkeypatch) -> None:
    """`train-reference` without --steps asks train() for the checkpoint's planned steps; with it, for --steps."""
    import typer
    from typer.testing import CliRunner

    import slimsam_edge.reference.train as train_mod
    from slimsam_edge.cli.train_reference import train_reference

    calls: list[tuple[int, bool]] = []

    def fake_train(recipe, out, **kw):
        calls.append((recipe.steps, kw["keep_planned_steps"]))
        return {"steps": recipe.steps, "best": None, "final": {}, "elapsed_s": 0.0, "out": str(out)}

    monkeypatch.setattr(train_mod, "train", fake_train)
    app = typer.Typer()
    app.command()(train_reference)
    for args in ([], ["--steps", "7"]):
        res = CliRunner().invoke(app, ["--out", str(tmp_path / "run"), *args])
        assert res.exit_code == 0, res.output
    assert calls[0][1] is True and calls[1] == (7, False)


def test_batched_evaluation_matches_predictor_api() -> None:
    """Training-time evaluation (prompts batched per image) agrees with `slimsam-edge eval`'s
    per-prompt path through EdgePredictor: one evaluator, two ways to call the model."""
    from slimsam_edge.eval.evaluate import default_eval_data, evaluate, evaluate_sam
    from slimsam_edge.models.batch import BatchPredictor
    from slimsam_edge.models.build import build_sam, random_init_
    from slimsam_edge.predictor import EdgePredictor

    sam = random_init_(build_sam(_tiny_spec()), seed=3, std=0.2).train()
    fast = evaluate_sam(sam, n_images=2, seed=1001, size=128, point_multi=True)
    assert sam.training  # evaluated in eval mode, then put back
    slow = evaluate(EdgePredictor.from_model(sam), default_eval_data(2, seed=1001, size=128), prompt="both",
                    point_multi=True)
    assert fast["n_annotations"] == slow["n_annotations"] > 0
    for k in ("point", "box", "point_multi"):
        assert fast[k]["miou"] == pytest.approx(slow[k]["miou"], abs=0.02)
    # the batched path is the per-prompt path, prompt for prompt
    p = BatchPredictor(sam.eval())

    class OnePrompt:  # the same model answering one prompt at a time through `predict`
        set_image = p.set_image

        def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=False):
            m, s, low = p.predict_batch(None if point_coords is None else point_coords[None],
                                        None if point_labels is None else point_labels[None],
                                        None if box is None else box[None], multimask_output)
            return m[0], s[0], low[0]

    one = evaluate(OnePrompt(), default_eval_data(2, seed=1001, size=128), prompt="both", point_multi=True)
    for k in ("point", "box", "point_multi"):
        assert one[k]["miou"] == fast[k]["miou"]
    # another image size is resized to the model's and answered at the image's size (compress --image-size)
    other = evaluate_sam(sam, n_images=1, size=64)
    assert 0.0 <= other["point"]["miou"] <= 1.0


def test_batch_recipe_defaults_are_the_training_recipe_s() -> None:
    """`batch_loss` takes a training Recipe or a BatchRecipe; both carry the same defaults."""
    from dataclasses import asdict

    from slimsam_edge.models.batch import BatchRecipe

    assert {k: getattr(Recipe(), k) for k in asdict(BatchRecipe())} == asdict(BatchRecipe())
