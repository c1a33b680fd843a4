"""Moving weights to a finer token grid (models/regrid.py) and training from them (--init + --patch-size)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from slimsam_edge.errors import ModelTypeError
from slimsam_edge.models.build import build_sam
from slimsam_edge.models.io import save_model
from slimsam_edge.models.regrid import finer_grid, regrid_factor, regrid_state_dict
from slimsam_edge.models.spec import PRESETS, ModelSpec


def _coarse() -> ModelSpec:
    base = PRESETS["sam_mini"]
    enc = replace(base.encoder, img_size=64, patch_size=8, embed_dim=32, num_heads=2, window_size=4,
                  qkv_dims=(32, 32), mlp_dims=(64, 64), global_attn_indexes=(1,), out_chans=32)
    return ModelSpec("custom", enc, replace(base.decoder, transformer_mlp_dim=64, iou_head_hidden_dim=32))


def test_patch_embedding_of_the_finer_grid_equals_the_old_one_on_an_enlarged_image() -> None:
    torch.manual_seed(0)
    coarse = _coarse()
    fine = replace(coarse, encoder=finer_grid(coarse.encoder, 2))
    src = build_sam(coarse)
    with torch.no_grad():
        src.image_encoder.pos_embed.normal_()
        for b in src.image_encoder.blocks:
            b.attn.rel_pos_h.normal_()
    dst = build_sam(fine)
    dst.load_state_dict(regrid_state_dict(src.state_dict(), coarse.encoder, fine.encoder))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        new = dst.image_encoder.patch_embed(x)                       # 16x16 tokens of 4x4 pixels
        old = src.image_encoder.patch_embed(F.interpolate(x, scale_factor=2, mode="nearest"))  # of 8x8 pixels
        assert new.shape == old.shape == (2, 16, 16, 32)
        torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-5)
        # position tables: the same values at the ends, twice as many offsets in between
        for b_src, b_dst in zip(src.image_encoder.blocks, dst.image_encoder.blocks):
            s, d = b_src.attn.rel_pos_h, b_dst.attn.rel_pos_h
            assert d.shape[0] == 2 * (s.shape[0] + 1) - 1
            torch.testing.assert_close(d[[0, -1]], s[[0, -1]])
            torch.testing.assert_close(d[d.shape[0] // 2], s[s.shape[0] // 2])
        pe_src, pe_dst = src.image_encoder.pos_embed, dst.image_encoder.pos_embed
        assert pe_dst.shape == (1, 16, 16, 32)
        torch.testing.assert_close(pe_dst.mean(), pe_src.mean(), rtol=0.1, atol=0.05)
        # and the whole model runs on the finer grid: 4x finer low-resolution masks
        emb = dst.image_encoder(x)
        assert emb.shape[-2:] == (16, 16)
    # the prompt encoder and mask decoder are copied as they are
    for k, v in src.state_dict().items():
        if not k.startswith("image_encoder."):
            torch.testing.assert_close(dst.state_dict()[k], v)


def test_regrid_refuses_what_it_cannot_move() -> None:
    enc = _coarse().encoder
    assert regrid_factor(enc, enc) == 1
    with pytest.raises(ModelTypeError, match="needs window 8"):
        regrid_factor(enc, replace(enc, patch_size=4))
    with pytest.raises(ModelTypeError, match="integer factor"):
        regrid_factor(enc, replace(enc, patch_size=3))
    with pytest.raises(ModelTypeError, match="differ in embed_dim"):
        regrid_factor(enc, replace(enc, embed_dim=16, patch_size=4, window_size=8))
    with pytest.raises(ModelTypeError, match="divides 8"):
        finer_grid(enc, 3)


def test_training_starts_from_coarser_weights_on_a_finer_grid(tmp_path) -> None:
    from slimsam_edge.reference.card import publish
    from slimsam_edge.reference.recipe import Recipe
    from slimsam_edge.reference.train import LOG, load_init, train
    import json

    coarse = _coarse()
    parent = save_model(build_sam(coarse), coarse, tmp_path / "coarse.safetensors")
    fine = Recipe(patch_size=4, window_size=8).model_spec(coarse)
    info = load_init(build_sam(fine), parent)
    assert info["regrid"] == {"patch_size": [8, 4], "window_size": [4, 8]}
    with pytest.raises(ModelTypeError, match="coarse.safetensors: patch 8 -> 4 needs window 8"):
        load_init(build_sam(Recipe(patch_size=4).model_spec(coarse)), parent)
    recipe = Recipe(steps=2, batch_images=1, masks_per_image=2, warmup_steps=1, image_size=64, loss_size=32,
                    eval_images=1, eval_every=2, checkpoint_every=2, log_every=1, patch_size=4, window_size=8)
    train(recipe, tmp_path / "run", spec=coarse, quiet=True, init=parent)
    start = json.loads((tmp_path / "run" / LOG).read_text().splitlines()[0])
    assert start["spec"]["encoder"]["patch_size"] == 4 and start["init"]["regrid"]["patch_size"] == [8, 4]
    card = publish(tmp_path / "run", tmp_path / "assets", count=1)
    assert "--patch-size 4 --window-size 8 --init" in card["commands"][-2]
    text = (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    assert "patch 4 (16x16 tokens)" in text and "window 8 (moved" in text
    assert "moved to this grid from patch 8 / window 4" in text
    # continuing the finer model keeps its grid without the options, and says so in its recipe;
    # resuming it needs no options either (the checkpoint holds the recipe)
    again = replace(recipe, patch_size=0, window_size=0, data_seed=3)
    train(again, tmp_path / "next", spec=coarse, quiet=True, init=tmp_path / "run" / "best.safetensors")
    nxt = json.loads((tmp_path / "next" / LOG).read_text().splitlines()[0])
    assert nxt["recipe"]["patch_size"] == 4 and nxt["recipe"]["window_size"] == 8 and "regrid" not in nxt["init"]
    resumed = train(replace(again, steps=3), tmp_path / "next", spec=coarse, quiet=True)
    assert resumed["steps"] == 3
    third = publish(tmp_path / "next", tmp_path / "assets", count=1)
    assert "lr 0.0004, patch 4 / window 8)" in (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    assert "--patch-size 4 --window-size 8 --init runs/sam-mini-stage2/best.safetensors" in third["commands"][-2]
