"""Hugging Face ``SamModel`` folders load into segment-anything's ``Sam`` and reproduce HF's outputs."""

from __future__ import annotations

import json

import pytest
import torch

from slimsam_edge.errors import CheckpointError
from slimsam_edge.models.hf import hf_to_sam_key, read_hf_dir, spec_from_hf_config
from slimsam_edge.models.io import load_model, read_state_dict
from slimsam_edge.models.spec import PRESETS

#: a tiny SAM: 4 blocks (global attention in 1 and 3), 128x128 input, 32-channel embedding
VISION = dict(
    hidden_size=48, num_hidden_layers=4, num_attention_heads=4, mlp_dim=96, image_size=128,
    patch_size=16, window_size=4, global_attn_indexes=[1, 3], output_channels=32, num_pos_feats=16,
)
PROMPT = dict(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=8)
DECODER = dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32)


@pytest.fixture(scope="module")
def hf_sam():
    """A random-weight transformers ``SamModel`` (every tensor random, mask logits of std ~1)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.sam import configuration_sam as c

    torch.set_num_threads(1)
    config = transformers.SamConfig(
        vision_config=c.SamVisionConfig(**VISION),
        prompt_encoder_config=c.SamPromptEncoderConfig(**PROMPT),
        mask_decoder_config=c.SamMaskDecoderConfig(**DECODER),
    )
    model = transformers.SamModel(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1.0 + noise if "norm" in name and name.endswith("weight") else noise)
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(10.0)
    return model


@pytest.fixture(scope="module")
def hf_dir(hf_sam, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "tiny-sam"
    hf_sam.save_pretrained(out)
    return out


def test_spec_comes_from_config(hf_dir):
    _, spec = read_hf_dir(hf_dir)
    enc, dec = spec.encoder, spec.decoder
    assert (enc.img_size, enc.patch_size, enc.embed_dim, enc.num_heads, enc.window_size) == (128, 16, 48, 4, 4)
    assert enc.global_attn_indexes == (1, 3) and enc.qkv_dims == (48,) * 4 and enc.mlp_dims == (96,) * 4
    assert enc.out_chans == 32
    assert (dec.transformer_heads, dec.transformer_mlp_dim, dec.mask_in_chans, dec.iou_head_hidden_dim) == (4, 64, 8, 32)


def test_image_embeddings_match_transformers(hf_sam, hf_dir):
    model, spec = load_model(hf_dir)
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.image_encoder(x)
        ref = hf_sam.get_image_embeddings(x)
    assert ours.shape == ref.shape == (1, 32, 8, 8)
    assert ref.std() > 0.1
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_masks_and_iou_match_transformers(hf_sam, hf_dir):
    model, _ = load_model(hf_dir)
    emb = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(2))
    points = torch.tensor([[[[40.0, 70.0], [100.0, 20.0]]]])  # (image, prompt, point, xy) in 128-px frame
    labels = torch.tensor([[[1, 0]]])
    with torch.no_grad():
        ref = hf_sam(image_embeddings=emb, input_points=points, input_labels=labels, multimask_output=True)
        sparse, dense = model.prompt_encoder(points=(points[0], labels[0]), boxes=None, masks=None)
        masks, iou = model.mask_decoder(
            image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
        )
    assert masks.shape == (1, 3, 32, 32) and iou.shape == (1, 3)
    assert ref.pred_masks[0].std() > 0.1  # not a degenerate (constant) output
    torch.testing.assert_close(masks, ref.pred_masks[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(iou, ref.iou_scores[0], atol=1e-4, rtol=0)


def test_pytorch_model_bin_folder(hf_sam, hf_dir, tmp_path):
    (tmp_path / "config.json").write_text((hf_dir / "config.json").read_text())
    torch.save(hf_sam.state_dict(), tmp_path / "pytorch_model.bin")  # holds the tied copy too
    sd, spec = read_hf_dir(tmp_path)
    ref, ref_spec = read_hf_dir(hf_dir)
    assert spec == ref_spec and sd.keys() == ref.keys()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


def test_unknown_tensor_is_named(hf_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    (tmp_path / "config.json").write_text((hf_dir / "config.json").read_text())
    sd = load_file(str(hf_dir / "model.safetensors"))
    sd["vision_encoder.layers.0.attn.extra_gate"] = torch.zeros(2)
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="vision_encoder.layers.0.attn.extra_gate") as info:
        read_state_dict(tmp_path)
    assert "\n" not in str(info.value)


def test_folder_without_config_is_one_line_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="without config.json") as info:
        load_model(tmp_path)
    assert "\n" not in str(info.value)


def test_folder_without_weights_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam"}))
    with pytest.raises(CheckpointError, match="no weights") as info:
        load_model(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "config, name",
    [
        ({"model_type": "sam"}, "vit_b"),  # facebook/sam-vit-base: transformers' defaults
        ({"model_type": "sam", "vision_config": {"hidden_size": 168, "mlp_dim": 696}}, "vit_p77"),
        ({"model_type": "sam", "vision_config": {"hidden_size": 384, "mlp_dim": 1536}}, "vit_p50"),
        (
            {"model_type": "sam", "vision_config": {
                "hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
                "global_attn_indexes": [7, 15, 23, 31]}},
            "vit_h",
        ),
    ],
)
def test_official_configs_name_presets(config, name):
    spec = spec_from_hf_config(config)
    assert spec.model_type == name and spec.encoder == PRESETS[name].encoder


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model_type": "sam2"}, "not a Hugging Face SamModel"),
        ({"mask_decoder_config": {"attention_downsample_rate": 4}}, "attention_downsample_rate"),
        ({"mask_decoder_config": {"hidden_size": 128}}, "SAM needs them equal"),
        ({"vision_config": {"global_attn_indexes": [12]}}, "vision_config does not describe"),
    ],
)
def test_unsupported_configs_are_rejected(config, message):
    with pytest.raises(CheckpointError, match=message):
        spec_from_hf_config(config)


@pytest.mark.parametrize(
    "hf, sam",
    [
        ("vision_encoder.neck.layer_norm2.bias", "image_encoder.neck.3.bias"),
        ("shared_image_embedding.positional_embedding", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
        ("prompt_encoder.shared_embedding.positional_embedding", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
        ("prompt_encoder.point_embed.2.weight", "prompt_encoder.point_embeddings.2.weight"),
        ("mask_decoder.upscale_conv2.weight", "mask_decoder.output_upscaling.3.weight"),
        ("mask_decoder.output_hypernetworks_mlps.1.layers.0.bias", "mask_decoder.output_hypernetworks_mlps.1.layers.1.bias"),
        ("mask_decoder.transformer.layers.1.layer_norm4.weight", "mask_decoder.transformer.layers.1.norm4.weight"),
        ("mask_decoder.transformer.layer_norm_final_attn.weight", "mask_decoder.transformer.norm_final_attn.weight"),
        ("vision_encoder.layers.0.attn.extra", None),
    ],
)
def test_key_renames(hf, sam):
    assert hf_to_sam_key(hf) == sam
