"""SlimSAM compression: pruning, importance, distillation, resume, CLI (tiny models, fast)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from slimsam_edge.compress.data import ImageSource
from slimsam_edge.compress.distill import DistillSpec, distill, distill_loss
from slimsam_edge.compress.importance import (CRITERIA, accumulate_grads, choose_keep, make_criterion,
                                              unit_scores)
from slimsam_edge.compress.pipeline import MODEL, CompressConfig, compress, importance_keep
from slimsam_edge.compress.prune import prune_embedding_tp, prune_sam, prune_state_dict, pruned_spec
from slimsam_edge.compress.widths import (encoder_params, parse_count, ratio_for_params,
                                          uniform_encoder)
from slimsam_edge.errors import CheckpointError, UsageError
from slimsam_edge.models.build import build_sam, random_init_
from slimsam_edge.models.io import build_sam_meta, check_shapes, save_model
from slimsam_edge.models.spec import PRESETS
from slimsam_edge.models.stats import count_params
from slimsam_edge.models.batch import preprocess

from helpers import assert_one_line_error, run_command, tiny_compress_spec

torch.set_num_threads(1)
M = PRESETS["sam_mini"]
#: 3 blocks (block 1 global), 64x64 input, 4x4 token grid, windows of 2
SPEC = tiny_compress_spec(64, 2)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    sam = random_init_(build_sam(SPEC), seed=0)
    for p in sam.parameters():
        p.requires_grad_(False)
    return sam


@pytest.fixture(scope="module")
def source():
    return ImageSource.procedural(count=8, size=64)


def _x(sam, source, n=2):
    return preprocess(sam, source.images(range(n)))


def _all(e):
    keep = {("head", i): torch.arange(h) for i, h in enumerate(e.head_dims())}
    keep.update({("mlp", i): torch.arange(m) for i, m in enumerate(e.mlp_dims)})
    keep["embed"] = torch.arange(e.embed_dim)
    return keep


def test_keeping_everything_is_exact(teacher, source):
    x = _x(teacher, source)
    same, spec = prune_sam(teacher, SPEC, _all(SPEC.encoder))
    assert spec.encoder == SPEC.encoder
    with torch.no_grad():
        assert torch.equal(same.image_encoder(x), teacher.image_encoder(x))


def test_bottleneck_slicing_keeps_rel_pos_columns(teacher, source):
    kept = torch.tensor([0, 2, 5, 7, 9, 11])  # head dim 12 -> 6, same positions in every head
    keep = {("head", i): kept for i in range(3)} | {("mlp", i): torch.arange(0, 96, 2) for i in range(3)}
    small, spec = prune_sam(teacher, SPEC, keep)
    assert spec.encoder.qkv_dims == (24, 24, 24) and spec.encoder.mlp_dims == (48, 48, 48)
    b0, t0 = small.image_encoder.blocks[1].attn, teacher.image_encoder.blocks[1].attn
    assert torch.equal(b0.rel_pos_h, t0.rel_pos_h[:, kept]) and torch.equal(b0.rel_pos_w, t0.rel_pos_w[:, kept])
    q_rows = torch.cat([s * 48 + h * 12 + kept for s in range(3) for h in range(4)])
    assert torch.equal(b0.qkv.weight, t0.qkv.weight[q_rows])
    assert torch.equal(b0.proj.weight, t0.proj.weight[:, torch.cat([h * 12 + kept for h in range(4)])])
    fresh = build_sam(spec)
    fresh.load_state_dict(small.state_dict(), strict=True)
    with torch.no_grad():
        assert fresh.image_encoder(_x(teacher, source)).shape == (2, 32, 4, 4)


def test_embedding_pruning_torch_pruning_equals_slicing(teacher, source):
    kept = torch.randperm(48, generator=torch.Generator().manual_seed(1))[:24].sort().values
    a, sa = prune_sam(teacher, SPEC, {"embed": kept})
    b, sb = prune_embedding_tp(teacher, SPEC, kept)
    assert sa == sb and sa.encoder.embed_dim == 24
    sdb = b.state_dict()
    for k, v in a.state_dict().items():
        assert torch.equal(v, sdb[k]), k
    assert torch.equal(a.image_encoder.pos_embed, teacher.image_encoder.pos_embed[..., kept])


def test_vit_b_presets_exact_params():
    e = PRESETS["vit_b"].encoder
    p77, p50 = uniform_encoder(e, 0.77), uniform_encoder(e, 0.5)
    assert (p77.embed_dim, p77.mlp_dims[0], p77.head_dims()[0], p77.num_heads) == (168, 696, 14, 12)
    assert (p50.embed_dim, p50.mlp_dims[0], p50.head_dims()[0]) == (384, 1536, 32)
    assert p77 == PRESETS["vit_p77"].encoder and p50 == PRESETS["vit_p50"].encoder
    n77 = count_params(build_sam_meta(replace(PRESETS["vit_b"], encoder=p77)).image_encoder)
    assert n77 == encoder_params(p77) == 5_658_968 and round(n77 / 1e6, 2) == 5.66
    assert round(encoder_params(p50) / 1e6, 1) == 23.9
    # slicing a SAM-B-shaped state dict (meta tensors: no memory) gives tensors of the preset
    spec = PRESETS["vit_b"]
    sd = build_sam_meta(spec).state_dict()
    keep = {"embed": torch.arange(168)} | {(k, i): torch.arange(n) for i in range(12)
                                           for k, n in (("head", 14), ("mlp", 696))}
    new = pruned_spec(spec, keep)
    assert new.encoder == p77
    check_shapes(new, {k: tuple(v.shape) for k, v in prune_state_dict(sd, spec.encoder, keep).items()})
    assert ratio_for_params(e, parse_count("5.7M")) == pytest.approx(0.77, abs=0.01)


def test_target_params_and_ratio_errors():
    e = SPEC.encoder
    with pytest.raises(UsageError, match="unreachable"):
        ratio_for_params(e, encoder_params(e) + 1)
    with pytest.raises(UsageError, match="unreachable"):
        ratio_for_params(e, 10)
    with pytest.raises(UsageError, match="outside"):
        uniform_encoder(e, 1.0)
    with pytest.raises(UsageError):
        parse_count("lots")
    r = ratio_for_params(e, encoder_params(e) // 2)
    assert encoder_params(uniform_encoder(e, r)) <= encoder_params(e) // 2


def test_importance_registry(teacher):
    assert {"random", "magnitude", "taylor", "disturbed-taylor"} <= set(CRITERIA)
    with pytest.raises(UsageError, match="unknown importance"):
        make_criterion("hessian-ish")
    s = unit_scores(teacher, SPEC, make_criterion("magnitude"))
    assert s["embed"].shape == (48,) and s[("head", 1)].shape == (12,) and s[("mlp", 2)].shape == (96,)
    assert all(bool((v > 0).all()) for v in s.values())
    r1 = unit_scores(teacher, SPEC, make_criterion("random", seed=3))
    r2 = unit_scores(teacher, SPEC, make_criterion("random", seed=3))
    assert all(torch.equal(r1[u], r2[u]) for u in r1)


def test_disturbed_taylor_needs_the_noise(teacher, source):
    import copy

    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    x = _x(teacher, source)
    with torch.no_grad():
        t = teacher.image_encoder(x)

    def scores(sigma):
        crit = make_criterion("disturbed-taylor", sigma=sigma)
        gen = torch.Generator().manual_seed(0)
        grads = accumulate_grads(student, [lambda: crit.embedding_loss(student.image_encoder(x), t, gen)])
        return unit_scores(student, SPEC, crit, grads)

    plain, disturbed = scores(0.0), scores(0.01)
    assert all(float(v.abs().sum()) == 0.0 for v in plain.values())
    assert all(float(v.sum()) > 0 for v in disturbed.values())


def test_global_scope_gives_per_block_widths(teacher, source):
    cfg = CompressConfig(ratio=0.5, importance="magnitude", scope="global")
    target = replace(SPEC, encoder=uniform_encoder(SPEC.encoder, 0.5))
    scores = unit_scores(teacher, SPEC, make_criterion("magnitude"))
    # block 0: 24 units matter, the rest are dead; block 2: every unit alike (scores are
    # normalised by each block's mean, so only the shape of a block's scores counts)
    scores[("mlp", 0)] = torch.cat([torch.full((24,), 10.0), torch.full((72,), 1e-6)])
    scores[("mlp", 2)] = torch.ones(96) + torch.linspace(0, 1e-3, 96)
    keep = choose_keep(scores, SPEC, target, cfg.scope)
    small, spec = prune_sam(teacher, SPEC, keep)
    assert sum(spec.encoder.mlp_dims) == 3 * 48 and spec.encoder.mlp_dims[0] == 24
    assert keep[("mlp", 0)].tolist() == list(range(24))
    assert sum(spec.encoder.qkv_dims) == 3 * 24 and spec.encoder.embed_dim == 24
    build_sam(spec).load_state_dict(small.state_dict(), strict=True)


def test_taylor_uses_labels(teacher, source):
    import copy

    cfg = CompressConfig(ratio=0.5, importance="taylor", importance_images=2)
    target = replace(SPEC, encoder=uniform_encoder(SPEC.encoder, 0.5))
    keep = importance_keep(copy.deepcopy(teacher).requires_grad_(True), SPEC, target, cfg, ["embed"], source, teacher)
    assert len(keep["embed"]) == 24


def test_distillation_reduces_the_loss(teacher, source):
    student, spec = prune_sam(teacher, SPEC, {"embed": torch.arange(0, 48, 2)})
    x = _x(teacher, source, 4)
    ds = DistillSpec("bottleneck", steps=15, lr=3e-3, batch=2)

    def loss():
        with torch.no_grad():
            return float(distill_loss(student, x, ds, 0, teacher=teacher)["loss"])

    before = loss()
    distill(student, ds, teacher=teacher, source=ImageSource.procedural(count=4, size=64))
    assert loss() < 0.7 * before


def _cfg(**kw):
    base = dict(ratio=0.5, steps=3, batch=1, importance_images=2, eval_images=1, checkpoint_every=1)
    return CompressConfig(**(base | kw))


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


class Stop(Exception):
    pass


@pytest.mark.parametrize("kill_at", [(0, 2), (1, 1)])
def test_kill_and_resume_is_exact(tmp_path, teacher, source, kill_at):
    cfg = _cfg(val_every=1, val_images=2)  # validation history and best weights resume too
    ref = compress(cfg, tmp_path / "ref", teacher=(teacher, SPEC), source=source)

    def killer(phase, step, _losses):
        if (phase, step) == kill_at:
            raise Stop

    with pytest.raises(Stop):
        compress(cfg, tmp_path / "run", teacher=(teacher, SPEC), source=source, on_step=killer)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    again = compress(cfg, tmp_path / "run", teacher=(teacher, SPEC), source=source, resume=True)
    assert again["best"] == ref["best"] and again["validation"] == ref["validation"]
    a, b = _weights(tmp_path / "ref" / "model.safetensors"), _weights(tmp_path / "run" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again["student"]["embed_dim"] == ref["student"]["embed_dim"] == 24
    with pytest.raises(CheckpointError, match="another configuration"):
        compress(replace(cfg, sigma=0.5), tmp_path / "run", teacher=(teacher, SPEC), source=source, resume=True)
    retrained = random_init_(build_sam(SPEC), seed=1)  # same architecture and id, other weights
    with pytest.raises(CheckpointError, match="another configuration"):
        compress(cfg, tmp_path / "run", teacher=(retrained, SPEC), source=source, resume=True)


def test_report_and_one_step(tmp_path, teacher, source):
    import json

    from slimsam_edge.models.io import load_model

    rep = compress(_cfg(schedule="one-step", steps=1, engine="torch-pruning"), tmp_path,
                   teacher=(teacher, SPEC), source=source)
    assert rep["student"]["embedding_mse"] > 0
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["student"]["params"] == rep["student"]["params"]
    assert rep["student"]["params"]["image_encoder"] < rep["teacher"]["params"]["image_encoder"]
    assert "point mIoU" in (tmp_path / "report.md").read_text()
    model, spec = load_model(tmp_path / "model.safetensors")
    assert spec.encoder.embed_dim == 24 and spec.encoder.qkv_dims == (24, 24, 24)


# --- CLI -------------------------------------------------------------------------------------

def _run(*args):
    from slimsam_edge.cli.compress import compress as cmd

    return run_command(cmd, *args)




@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, teacher):
    path = tmp_path_factory.mktemp("teacher") / "tiny.safetensors"
    save_model(teacher, SPEC, path)
    return path


def test_cli_bad_input(tmp_path, teacher_ckpt):
    assert_one_line_error(_run("--out", tmp_path / "o", "--ratio", 1.5), "outside (0, 1)")
    assert_one_line_error(_run("--out", tmp_path / "o", "--ratio", 0), "outside (0, 1)")
    assert_one_line_error(_run("--out", tmp_path / "o"), "exactly one of")
    assert_one_line_error(_run("--out", tmp_path / "o", "--teacher", teacher_ckpt, "--target-params", "90M"), "unreachable")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(_run("--out", tmp_path / "o", "--ratio", 0.5, "--data", tmp_path / "empty"), "no images")
    assert_one_line_error(_run("--out", tmp_path / "o", "--ratio", 0.5, "--resume"), "no checkpoint")


def test_cli_runs_and_refuses_resume_of_another_config(tmp_path, teacher_ckpt):
    import json

    args = ["--out", tmp_path / "o", "--teacher", teacher_ckpt, "--steps", 1, "--images", 4,
            "--importance-images", 2, "--eval-images", 1, "--batch", 1]
    res = _run(*args, "--preset", "slimsam-50", "--json", "--cache-teacher", tmp_path / "cache", "--bf16",
               "--val-every", 1, "--val-images", 1, "--val-seed", 1002)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "model.safetensors").exists()
    rep = json.loads(res.stdout)
    assert rep["bf16"] and rep["teacher_cache"]["misses"] > 0 and rep["best"]["seed"] == 1002
    assert_one_line_error(_run(*args, "--ratio", 0.6, "--resume"), "another configuration")


# --- best checkpoint, teacher cache, base != teacher, DDP, bf16 --------------------------------

def test_validator_keeps_the_best_weights_of_the_final_phase(teacher):
    from slimsam_edge.compress.validate import Validator

    v = Validator(every=2, n_images=1, size=64)
    scores = iter([0.9, 0.3, 0.6, 0.5])
    v.measure = lambda sam: next(scores)
    model = torch.nn.Linear(2, 2)
    v(model, 0, 2, final_phase=False)  # phase 0 never selected
    for step, value in ((2, 1.0), (4, 2.0), (6, 3.0)):
        with torch.no_grad():
            model.weight.fill_(value)
        v(model, 1, step, final_phase=True)
    assert v.best["step"] == 4 and [h["miou"] for h in v.history] == [0.9, 0.3, 0.6, 0.5]
    restored = Validator(every=2, n_images=1)
    restored.load_state_dict(v.state_dict())
    summary = restored.select(model, 1)
    assert summary["step"] == 4 and float(model.weight.detach()[0, 0]) == 2.0
    assert v.due(2, 5) and v.due(5, 5) and not v.due(3, 5)


def test_best_checkpoint_is_the_model(tmp_path, teacher, source):
    from slimsam_edge.compress.validate import Validator
    from slimsam_edge.models.io import load_model

    rep = compress(_cfg(schedule="one-step", val_every=1, val_images=2), tmp_path, teacher=(teacher, SPEC),
                   source=source)
    final = [h for h in rep["validation"]["history"] if h["phase"] == 0]
    assert [h["step"] for h in final] == [1, 2, 3]
    best = max(final, key=lambda h: (h["miou"], -h["step"]))
    assert rep["best"]["step"] == best["step"] and rep["best"]["miou"] == best["miou"]
    model, _ = load_model(tmp_path / "model.safetensors")
    assert Validator(1, 2, size=64).measure(model) == best["miou"]
    assert f"step {best['step']}" in (tmp_path / "report.md").read_text()


def test_teacher_cache_hits_and_same_result(tmp_path, teacher, source):
    from safetensors.torch import load_file

    cfg = _cfg(val_every=0)
    cold = compress(cfg, tmp_path / "a", teacher=(teacher, SPEC), source=source, cache_dir=tmp_path / "cache")
    files = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert cold["teacher_cache"]["misses"] == len(files) == 6 and cold["teacher_cache"]["hits"] > 0
    assert load_file(str(files[0]))["embedding"].dtype == torch.float16
    warm = compress(cfg, tmp_path / "b", teacher=(teacher, SPEC), source=source, cache_dir=tmp_path / "cache")
    assert warm["teacher_cache"]["misses"] == 0 and warm["teacher_cache"]["hits"] > 0
    a, b = _weights(tmp_path / "a" / "model.safetensors"), _weights(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "0 misses" in (tmp_path / "b" / "report.md").read_text()


def _spec_with(depth, out_chans=32, mlp=96):
    enc = replace(SPEC.encoder, global_attn_indexes=(1,), qkv_dims=(48,) * depth, mlp_dims=(mlp,) * depth,
                  out_chans=out_chans)
    return replace(SPEC, encoder=enc, decoder=replace(SPEC.decoder, transformer_mlp_dim=32))


def test_base_other_than_teacher(tmp_path, teacher, source):
    import json

    from slimsam_edge.models.io import load_model

    base_spec = _spec_with(2, mlp=72)  # shallower and narrower than the teacher, another decoder
    base = random_init_(build_sam(base_spec), seed=5)
    rep = compress(_cfg(val_every=0), tmp_path, teacher=(teacher, SPEC), base=(base, base_spec), source=source,
                   base_id="tiny-base")
    model, spec = load_model(tmp_path / "model.safetensors")
    assert spec.encoder.depth == 2 and spec.encoder.embed_dim == 24 and spec.encoder.mlp_dims == (36, 36)
    assert spec.decoder == SPEC.decoder and rep["phase_modes"] == ["final", "embedding"]
    t_sd, s_sd = teacher.state_dict(), model.state_dict()
    heads = [k for k in t_sd if not k.startswith("image_encoder.")]
    assert heads and all(torch.equal(t_sd[k], s_sd[k]) for k in heads)  # pairs with the teacher's decoder
    assert rep["base"]["id"] == "tiny-base" and rep["student"]["miou"]["point"] >= 0
    losses = [r["embed"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
              if r["event"] == "step"]
    assert len(losses) == 6
    with pytest.raises(UsageError, match="differs from the base's"):
        bad = _spec_with(2, out_chans=16)
        compress(_cfg(), tmp_path / "bad", teacher=(teacher, SPEC), base=(build_sam(bad), bad), source=source)


def test_cli_base_embedding_shape_mismatch(tmp_path, teacher_ckpt):
    bad = _spec_with(2, out_chans=16)
    path = tmp_path / "bad.safetensors"
    save_model(random_init_(build_sam(bad), seed=1), bad, path)
    assert_one_line_error(_run("--out", tmp_path / "o", "--teacher", teacher_ckpt, "--base", path, "--ratio", 0.5),
                    "differs from the base's")


def test_ddp_two_processes_match_one(tmp_path, teacher, teacher_ckpt):
    import json
    import os
    import subprocess
    import sys

    args = dict(ratio=0.5, steps=3, batch=2, importance_images=3, eval_images=1, checkpoint_every=1, val_every=3,
                val_images=1)
    one = compress(CompressConfig(**args), tmp_path / "one", teacher=(teacher, SPEC),
                   source=ImageSource.procedural(count=8, size=64))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "slimsam_edge.cli.compress", "--teacher", str(teacher_ckpt), "--out", str(tmp_path / "two"),
           "--images", "8", "--threads", "1", "--device", "cpu", "--json"]  # gloo, as the one-process run
    for k, v in args.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    two = json.loads(res.stdout[res.stdout.index("{"):])
    assert two["world_size"] == 2 and one["world_size"] == 1
    a, b = _weights(tmp_path / "one" / "model.safetensors"), _weights(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst
    log_a = [json.loads(r) for r in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(r) for r in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    steps_a = [r["loss"] for r in log_a if r["event"] == "step"]
    steps_b = [r["loss"] for r in log_b if r["event"] == "step"]
    assert steps_b == pytest.approx(steps_a, rel=1e-4)
    assert not list((tmp_path / "two").glob(".*tmp*"))


def test_bf16_autocast_runs(tmp_path, teacher, source):
    from slimsam_edge.compress.runtime import autocast

    with autocast(True):
        y = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert y.dtype == torch.bfloat16
    rep = compress(_cfg(bf16=True, steps=2, val_every=0), tmp_path, teacher=(teacher, SPEC), source=source)
    assert rep["bf16"] is True and rep["student"]["embedding_mse"] > 0 and isinstance(rep["bf16_native"], bool)
    w = _weights(tmp_path / "model.safetensors")
    assert all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in w.values())
    ds = DistillSpec("bottleneck", steps=4, bf16=True)
    student, _ = prune_sam(teacher, SPEC, {"embed": torch.arange(0, 48, 2)})
    res = distill_loss(student, _x(teacher, source), ds, 0, teacher=teacher)
    assert res["loss"].dtype == torch.float32 and float(res["inter"]) > 0


def test_ablation_smoke(tmp_path, teacher_ckpt):
    import json

    from slimsam_edge.research.ablation import main

    results = tmp_path / "results" / "ablation.md"
    argv = ["--teacher", str(teacher_ckpt), "--out", str(tmp_path / "runs"), "--results", str(results),
            "--steps", "1", "--batch", "1", "--images", "4", "--importance-images", "2", "--eval-images", "1",
            "--val-every", "1", "--val-images", "1", "--threads", "1"]
    summary = main(argv)
    assert len(summary["rows"]) == 16
    text = results.read_text()
    for name in ("random", "magnitude", "| taylor", "disturbed-taylor", "alternate", "one-step", "50%", "77%",
                 "Command: `python scripts/ablation.py --teacher", "Machine:", "Time:", "Teacher"):
        assert name in text, name
    assert json.loads(results.with_suffix(".json").read_text())["rows"][0]["ratio"] == 0.5
    t0 = (tmp_path / "runs" / "r50-alternate-random" / "report.json").stat().st_mtime
    assert len(main(argv)["rows"]) == 16  # finished runs are reused
    assert (tmp_path / "runs" / "r50-alternate-random" / "report.json").stat().st_mtime == t0


def test_cache_survives_write_errors(tmp_path, teacher, source, monkeypatch):
    import slimsam_edge.compress.cache as cache_mod

    emb = cache_mod.TeacherEmbeddings(teacher, tmp_path / "c", key="k")
    images = source.images([0, 1])
    x = preprocess(teacher, images)

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "atomic_path", full_disk)
    out = emb(images, x)
    assert out.shape == (2, 32, 4, 4) and emb.stats()["write_errors"] == 2
    assert not list((tmp_path / "c").iterdir())
    with torch.no_grad():
        assert torch.allclose(out, teacher.image_encoder(x), atol=1e-2)


# --- --global-attention windowed (the trained fast-attention route) -----------------------------

def test_windowed_global_keeps_the_centre_of_the_tables(teacher, source):
    from slimsam_edge.compress.attention import GLOBAL_ATTENTION, global_attention

    small, spec = GLOBAL_ATTENTION["windowed"].apply(teacher, SPEC)
    assert spec.encoder.global_attn_indexes == () and small is not teacher
    t_attn, s_attn = teacher.image_encoder.blocks[1].attn, small.image_encoder.blocks[1].attn
    assert t_attn.rel_pos_h.shape[0] == 7 and s_attn.rel_pos_h.shape[0] == 3  # grid 4 -> window 2
    assert torch.equal(s_attn.rel_pos_h, t_attn.rel_pos_h[2:5]) and torch.equal(s_attn.rel_pos_w, t_attn.rel_pos_w[2:5])
    assert torch.equal(s_attn.qkv.weight, t_attn.qkv.weight)
    assert GLOBAL_ATTENTION["keep"].apply(teacher, SPEC) == (teacher, SPEC)
    with pytest.raises(UsageError, match="choose one of: keep, windowed"):
        global_attention("pooled")


def test_windowed_global_is_exact_when_one_window_covers_the_grid(source):
    from slimsam_edge.compress.attention import GLOBAL_ATTENTION

    spec = replace(SPEC, encoder=replace(SPEC.encoder, window_size=4))  # grid 4: one window = the grid
    sam = random_init_(build_sam(spec), seed=3)
    small, small_spec = GLOBAL_ATTENTION["windowed"].apply(sam, spec)
    x = _x(sam, source)
    with torch.no_grad():
        torch.testing.assert_close(small.image_encoder(x), sam.image_encoder(x), rtol=1e-5, atol=1e-5)


def test_cli_global_attention_windowed(tmp_path, teacher_ckpt):
    import json

    from slimsam_edge.models.io import load_model

    res = _run("--out", tmp_path / "o", "--teacher", teacher_ckpt, "--ratio", 0.5, "--steps", 1, "--images", 4,
               "--importance-images", 2, "--eval-images", 1, "--batch", 1, "--val-every", 0,
               "--global-attention", "windowed", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["config"]["global_attention"] == "windowed"
    assert rep["student"]["global_attn_indexes"] == [] and rep["teacher"]["global_attn_indexes"] == [1]
    assert rep["student"]["macs_image_encoder"]["attention"] < rep["teacher"]["macs_image_encoder"]["attention"]
    _, spec = load_model(tmp_path / "o" / "model.safetensors")
    assert spec.encoder.global_attn_indexes == ()
    assert "| global-attention blocks | 1 | none |" in (tmp_path / "o" / "report.md").read_text()
    bad = _run("--out", tmp_path / "p", "--ratio", 0.5, "--global-attention", "pooled")
    assert bad.exit_code == 2 and "pooled" in bad.output


def test_full_disk_while_checkpointing_corrupts_nothing(tmp_path, teacher_ckpt, monkeypatch):
    from slimsam_edge.compress.distill import load_checkpoint

    real_save, calls = torch.save, []

    def filling_disk(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 1:
            return real_save(obj, f, *a, **k)
        with open(f, "wb") as fh:  # part of a file, then the disk is full
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", filling_disk)
    args = ["--out", tmp_path / "o", "--teacher", teacher_ckpt, "--ratio", 0.5, "--steps", 2, "--images", 4,
            "--importance-images", 2, "--eval-images", 1, "--batch", 1, "--val-every", 0, "--checkpoint-every", 1]
    res = _run(*args)
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]  # after the progress bar: one error line, no traceback
    assert last.startswith("error: No space left on device") and "--resume" in last
    assert "Traceback" not in res.stderr
    state = load_checkpoint(tmp_path / "o" / "checkpoint.pt")  # the first checkpoint, whole
    assert state["step"] == 1 and state["phase"] == 0
    assert not [p.name for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no temp files left
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the job continues from step 1
    res = _run(*args, "--resume")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "model.safetensors").exists()


# --- --device auto|cpu|cuda ------------------------------------------------------------------------

def test_device_is_not_part_of_the_job_identity():
    from slimsam_edge.compress.device import resolve_device

    cfg = _cfg()
    assert cfg.device == "cpu" and "device" not in cfg.identity()
    assert replace(cfg, device="cuda").identity() == cfg.identity() != replace(cfg, seed=1).identity()
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        replace(cfg, device="tpu").validate()
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def _resumed_on(device, cfg, tmp_path, teacher, source, kill_at=(1, 1)):
    """``(reference report, resumed report, reference weights, resumed weights)``: ``cfg`` run whole,
    and run again killed at ``kill_at`` (phase, step; default in phase 2) then resumed with ``device``."""
    ref = compress(cfg, tmp_path / "ref", teacher=(teacher, SPEC), source=source)

    def killer(phase, step, _losses):
        if (phase, step) == kill_at:
            raise Stop

    with pytest.raises(Stop):
        compress(cfg, tmp_path / "run", teacher=(teacher, SPEC), source=source, on_step=killer)
    again = compress(replace(cfg, device=device), tmp_path / "run", teacher=(teacher, SPEC), source=source,
                     resume=True)
    return ref, again, _weights(tmp_path / "ref" / MODEL), _weights(tmp_path / "run" / MODEL)


def test_resume_under_another_device_choice(tmp_path, teacher, source):
    # auto is this machine's device; the checkpoint's job all the same
    ref, again, a, b = _resumed_on("auto", _cfg(steps=2, val_every=0), tmp_path, teacher, source)
    assert again["config"]["device"] == "auto" and again["device"] == ref["device"]
    if again["device"] == "cpu":
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_string_threads_through_the_job(tmp_path, teacher, source):
    """The device as a plain string through config, importance, pruning, cache, distillation,
    validation and report; what a GPU run does with ``cuda`` instead of ``cpu``."""
    from slimsam_edge.compress.device import on_device

    rep = compress(_cfg(steps=1, val_every=1, val_images=1, device="cpu"), tmp_path, teacher=(teacher, SPEC),
                   source=source, cache_dir=tmp_path / "cache")
    assert (rep["device"], rep["gpu"], rep["tf32"], rep["config"]["device"]) == ("cpu", None, False, "cpu")
    assert "- device: cpu" in (tmp_path / "report.md").read_text()
    w = _weights(tmp_path / "model.safetensors")
    assert all(v.device.type == "cpu" and bool(torch.isfinite(v).all()) for v in w.values())
    assert on_device(teacher, "cpu") is teacher


def test_cli_device_choice(tmp_path, teacher_ckpt):
    import json

    if not torch.cuda.is_available():
        assert_one_line_error(_run("--out", tmp_path / "o", "--ratio", 0.5, "--device", "cuda"),
                        "no CUDA GPU is visible")
    bad = _run("--out", tmp_path / "o", "--ratio", 0.5, "--device", "tpu")
    assert bad.exit_code == 2 and "tpu" in bad.output
    res = _run("--out", tmp_path / "c", "--teacher", teacher_ckpt, "--ratio", 0.5, "--steps", 1, "--images", 4,
               "--importance-images", 2, "--eval-images", 1, "--batch", 1, "--val-every", 0, "--device", "cpu",
               "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["device"] == "cpu" and rep["config"]["device"] == "cpu"


def test_ablation_device_choice(tmp_path, capsys):
    from slimsam_edge.research.ablation import Plan, main

    assert Plan(device="cuda").config(0.5, "alternate", "random").device == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            main(["--device", "cuda", "--out", str(tmp_path)])
        assert exc.value.code == 2 and "no CUDA GPU is visible" in capsys.readouterr().err


@pytest.mark.gpu
def test_compress_on_cuda(tmp_path, teacher, source, teacher_ckpt):
    """One tiny job per path on the GPU: alternate + disturbed Taylor + cache + validation,
    one-step + Taylor (CPU copy) + torch-pruning + bf16, a CPU checkpoint resumed on CUDA, the CLI."""
    import json

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    rep = compress(_cfg(val_every=1, val_images=1, device="cuda"), tmp_path / "a", teacher=(teacher, SPEC),
                   source=source, cache_dir=tmp_path / "cache")
    assert rep["device"] == "cuda:0" and rep["gpu"] and rep["tf32"] is True and rep["best"] is not None
    assert rep["teacher_cache"]["misses"] > 0 and rep["student"]["embedding_mse"] > 0
    assert "- device: cuda:0 (" in (tmp_path / "a" / "report.md").read_text()
    assert torch.backends.cuda.matmul.allow_tf32 == tf32_before  # restored after the job
    assert next(teacher.parameters()).device.type == "cpu"  # the caller's teacher stays where it was
    w = _weights(tmp_path / "a" / "model.safetensors")
    assert all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in w.values())
    rep = compress(_cfg(schedule="one-step", importance="taylor", engine="torch-pruning", bf16=True, steps=2,
                        val_every=0, device="cuda"), tmp_path / "b", teacher=(teacher, SPEC), source=source)
    assert rep["device"] == "cuda:0" and rep["bf16_native"] is True and rep["student"]["embed_dim"] == 24
    w = _weights(tmp_path / "b" / "model.safetensors")
    assert all(bool(torch.isfinite(v).all()) for v in w.values())
    # started on the CPU, killed, resumed on the GPU: the same up to float rounding (TF32)
    ref, again, a, b = _resumed_on("cuda", _cfg(val_every=0), tmp_path / "c", teacher, source)
    assert again["device"] == "cuda:0" and again["student"]["embed_dim"] == ref["student"]["embed_dim"]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 2e-3
    res = _run("--out", tmp_path / "cli", "--teacher", teacher_ckpt, "--ratio", 0.5, "--steps", 1, "--images", 4,
               "--importance-images", 2, "--eval-images", 1, "--batch", 2, "--val-every", 1, "--device", "cuda",
               "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["device"] == "cuda:0"


# --- the mask-decoder phase (--decoder-steps) ---------------------------------------------------

def test_decoder_phase_starts_from_the_best_encoder_and_tunes_only_the_decoder(tmp_path, teacher, source):
    """The encoder of a run with a decoder phase is the best validated encoder of the same run
    without it; the decoder phase records its untuned start as step 0; only the decoder changed."""
    plain = compress(_cfg(val_every=1, val_images=2), tmp_path / "plain", teacher=(teacher, SPEC), source=source)
    tuned = compress(_cfg(val_every=1, val_images=2, decoder_steps=2), tmp_path / "tuned", teacher=(teacher, SPEC),
                     source=source)
    assert tuned["phase_modes"] == ["bottleneck", "embedding", "decoder"]
    phase2 = [h for h in tuned["validation"]["history"] if h["phase"] == 2]
    assert [h["step"] for h in phase2] == [0, 1, 2] and phase2[0]["miou"] == plain["best"]["miou"]
    assert tuned["best"]["phase"] == 2
    a, b = _weights(tmp_path / "plain" / MODEL), _weights(tmp_path / "tuned" / MODEL)
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("mask_decoder."):
            assert torch.equal(a[k], b[k]), k
    if tuned["best"]["step"] > 0:  # a tuned step won: its decoder is not the teacher's
        assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("mask_decoder."))
    assert "mask decoder tuned on the teacher's masks for 2 steps (lr 0.0001)" in (tmp_path / "tuned" / "report.md").read_text()


def test_kill_and_resume_inside_the_decoder_phase_is_exact(tmp_path, teacher, source):
    cfg = _cfg(schedule="one-step", steps=2, decoder_steps=3, val_every=1, val_images=1, image_size=32)
    ref, again, a, b = _resumed_on("cpu", cfg, tmp_path, teacher, source, kill_at=(1, 2))
    assert again["best"] == ref["best"] and again["validation"] == ref["validation"]
    assert again["phase_modes"] == ["final", "decoder"] and not (tmp_path / "run" / "step1.safetensors").exists()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_decoder_steps(tmp_path, teacher_ckpt):
    """(A negative --decoder-steps is one line, exit 2 through the app: tests/hardening/test_cli_fuzz.py.)"""
    import json

    args = ["--out", tmp_path / "o", "--teacher", teacher_ckpt, "--ratio", 0.5, "--steps", 1, "--images", 4,
            "--importance-images", 2, "--eval-images", 1, "--batch", 1, "--val-images", 1]
    res = _run(*args, "--decoder-steps", 1, "--decoder-trains", "encoder+decoder", "--decoder-prompts",
               "random+interior", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["config"]["decoder_steps"] == 1 and rep["phase_modes"][-1] == "decoder"
    assert rep["config"]["decoder_trains"] == "encoder+decoder"
    assert rep["config"]["decoder_prompts"] == "random+interior"
    assert_one_line_error(_run(*args, "--decoder-steps", 2, "--resume"), "another configuration")
    with pytest.raises(UsageError, match="decoder_steps"):
        CompressConfig(0.5, decoder_steps=-1).validate()
    with pytest.raises(UsageError, match="choose one of: decoder, encoder"):
        CompressConfig(0.5, decoder_trains="prompt").validate()
    with pytest.raises(UsageError, match="choose one of: random, random"):
        CompressConfig(0.5, decoder_prompts="grid").validate()
    for bad in ({"decoder_lr": float("nan")}, {"lr": float("inf")}, {"decoder_lr": 0.0}, {"sigma": float("nan")}):
        with pytest.raises(UsageError, match="finite"):
            CompressConfig(0.5, **bad).validate()


def test_a_finished_job_continues_with_a_decoder_phase(tmp_path, teacher, source):
    """``--decoder-steps N --resume`` on a finished encoder job runs only the decoder phase and ends
    where one job with the decoder phase ends."""
    cfg = _cfg(val_every=1, val_images=1, decoder_steps=2)
    ref = compress(cfg, tmp_path / "ref", teacher=(teacher, SPEC), source=source)
    compress(replace(cfg, decoder_steps=0), tmp_path / "run", teacher=(teacher, SPEC), source=source)
    steps = []
    again = compress(cfg, tmp_path / "run", teacher=(teacher, SPEC), source=source, resume=True,
                     on_step=lambda phase, step, _l: steps.append((phase, step)))
    assert steps == [(2, 1), (2, 2)] and again["best"] == ref["best"] and again["validation"] == ref["validation"]
    a, b = _weights(tmp_path / "ref" / MODEL), _weights(tmp_path / "run" / MODEL)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match="another configuration"):  # inside the decoder phase: same N only
        compress(replace(cfg, decoder_steps=3), tmp_path / "run", teacher=(teacher, SPEC), source=source, resume=True)
    with pytest.raises(CheckpointError, match="another configuration"):  # nor another decoder lr
        compress(replace(cfg, decoder_lr=1e-3), tmp_path / "run", teacher=(teacher, SPEC), source=source, resume=True)


def test_decoder_phase_without_validation_goes_on_from_the_last_weights(tmp_path, teacher, source):
    rep = compress(_cfg(val_every=0, decoder_steps=2, schedule="one-step"), tmp_path, teacher=(teacher, SPEC),
                   source=source)
    assert rep["best"] is None and rep["validation"]["history"] == [] and rep["phase_modes"] == ["final", "decoder"]
    assert "the last step's weights (validation off)" in (tmp_path / "report.md").read_text()
