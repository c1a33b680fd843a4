"""Every attention variant computes the same encoder as ``plain`` (torch and ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimsam_edge.errors import UsageError
from slimsam_edge.exporters.attention import (
    ATTENTION_VARIANTS,
    ChunkedAttention,
    HeadMajorAttention,
    export_variant_onnx,
    get_variant,
)
from slimsam_edge.models.build import random_init_
from slimsam_edge.models.encoder import Attention, FlexImageEncoderViT
from slimsam_edge.models.spec import EncoderSpec

TOL = 1e-4
SPEC = EncoderSpec(
    img_size=64, patch_size=16, embed_dim=48, num_heads=4, window_size=2,
    global_attn_indexes=(1,), qkv_dims=(48, 40), mlp_dims=(96, 80), out_chans=32,
)


@pytest.fixture(scope="module")
def encoder_and_ref():
    enc = random_init_(FlexImageEncoderViT(SPEC).eval(), seed=3, std=0.2)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = enc(x)
    return enc, x, ref


@pytest.mark.parametrize("name", list(ATTENTION_VARIANTS))
def test_variant_exact_in_torch_and_onnxruntime(name, encoder_and_ref, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    enc, x, ref = encoder_and_ref
    var = get_variant(name)
    module = var.apply(enc)
    assert module is not enc
    assert isinstance(enc.blocks[1].attn, Attention)  # the original is untouched
    assert isinstance(module.blocks[0].attn, Attention)  # windowed block is left alone
    with torch.no_grad():
        assert float((module(x) - ref).abs().max()) <= TOL
    path = tmp_path / f"{name}.onnx"
    model = export_variant_onnx(module, (x,), path, input_names=["image"], output_names=["emb"],
                                finalize=var.needs_finalize)
    ops = {n.op_type for n in model.graph.node}
    assert ("MultiHeadAttention" in ops) == name.startswith("ort_mha")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": x.numpy()})[0]
    assert np.abs(out - ref.numpy()).max() <= TOL


def test_export_variant_onnx_is_atomic(encoder_and_ref, tmp_path, monkeypatch):
    """A failure after torch wrote the graph (here: finalize) leaves neither the file nor a temp."""
    from slimsam_edge.exporters import attention

    enc, x, _ = encoder_and_ref
    path = tmp_path / "out" / "plain.onnx"
    path.parent.mkdir()
    path.write_bytes(b"previous good graph")

    def boom(model):
        raise RuntimeError("simulated finalize failure")

    monkeypatch.setattr(attention, "finalize_onnx", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        export_variant_onnx(enc, (x,), path, input_names=["image"], output_names=["emb"])
    assert path.read_bytes() == b"previous good graph"  # untouched, never half-written
    assert [p.name for p in path.parent.iterdir()] == ["plain.onnx"]


def test_headmajor_replaces_only_global_blocks(encoder_and_ref):
    enc, _, _ = encoder_and_ref
    module = get_variant("headmajor").apply(enc)
    assert isinstance(module.blocks[1].attn, HeadMajorAttention)
    assert isinstance(module.blocks[0].attn, Attention)


@pytest.mark.parametrize("rows", [1, 3, 5])
def test_query_row_blocks_cover_every_query_once(rows):
    """Blocks that do not divide the grid (3 of 8 rows), and one block larger than it, are exact."""
    attn = random_init_(Attention(32, 4, 24, 8).eval(), seed=1, std=0.3)
    x = torch.randn(2, 8, 8, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert float((ChunkedAttention(attn, rows=rows)(x) - attn(x)).abs().max()) <= 1e-5
    with pytest.raises(UsageError, match="rows per query block must be >= 1"):
        ChunkedAttention(attn, rows=0)


def test_unknown_variant_names_the_choices():
    with pytest.raises(UsageError, match=r"unknown attention variant 'nope'; choose one of: plain, "):
        get_variant("nope")


def test_export_with_an_exact_variant_is_validated_against_plain(tmp_path, tiny_checkpoint) -> None:
    import json

    import numpy as np
    from typer.testing import CliRunner

    from slimsam_edge.bundle import load_bundle
    from slimsam_edge.cli.app import app
    from slimsam_edge.predictor import EdgePredictor

    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["export", str(tiny_checkpoint), "--out", str(out), "--attention", "pad16", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert any("attention variant pad16" in n for n in summary["notes"])
    encoders = {k: r for k, r in summary["validation"].items() if k.startswith("image_encoder/")}
    assert set(encoders) == {"image_encoder/onnxruntime/fp32", "image_encoder/openvino/fp32"}
    assert all(r["ok"] and r["max_abs_diff"]["image_embeddings"] < 1e-4 for r in encoders.values())
    p = EdgePredictor.from_bundle(out, backend="openvino")
    p.set_image(np.full((64, 80, 3), 120, np.uint8))
    assert p.predict(point_coords=np.array([[30, 20]]), point_labels=np.array([1]))[0].shape == (3, 64, 80)
    assert load_bundle(out).manifest.notes
    for args, text in ((["--attention", "flash"], "unknown attention variant 'flash'"),
                       (["--attention", "ort_mha"], "onnxruntime only, not openvino; pick another variant or --target onnx")):
        bad = CliRunner().invoke(app, ["export", str(tiny_checkpoint), "--out", str(tmp_path / "x"), *args])
        assert bad.exit_code == 2 and text in bad.stderr, bad.output


def test_export_with_ort_fused_attention_for_the_onnx_target(tmp_path, tiny_checkpoint) -> None:
    """``--attention ort_mha --target onnx``: com.microsoft.MultiHeadAttention in the encoder graph,
    its placeholder inputs blanked before simplification, validated against plain PyTorch."""
    import json

    import numpy as np
    import onnx
    from typer.testing import CliRunner

    from slimsam_edge.cli.app import app
    from slimsam_edge.predictor import EdgePredictor

    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["export", str(tiny_checkpoint), "--out", str(out), "--target", "onnx",
                                   "--attention", "ort_mha", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    enc = summary["validation"]["image_encoder/onnxruntime/fp32"]
    assert enc["ok"] and enc["max_abs_diff"]["image_embeddings"] < 1e-4
    graph = onnx.load(str(out / "onnx" / "image_encoder.onnx")).graph
    mha = [n for n in graph.node if n.op_type == "MultiHeadAttention"]
    assert mha and all(n.domain == "com.microsoft" and n.input[3] == "" for n in mha)
    p = EdgePredictor.from_bundle(out, backend="onnxruntime")
    p.set_image(np.full((64, 80, 3), 120, np.uint8))
    masks = p.predict(point_coords=np.array([[30, 20]]), point_labels=np.array([1]))[0]
    assert masks.shape == (3, 64, 80)
