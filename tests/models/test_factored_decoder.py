"""The factored mask decoder is segment-anything's: same masks and scores, in torch and exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.modeling.transformer import Attention

from slimsam_edge.models import factored_decoder as fd
from slimsam_edge.models.graphs import LowResDecoder


def _mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    union = np.logical_or(a, b).sum((-1, -2))
    return np.where(union == 0, 1.0, np.logical_and(a, b).sum((-1, -2)) / np.maximum(union, 1))


@pytest.mark.parametrize("dim, heads, down, tokens", [(32, 4, 2, 7), (48, 1, 1, 3), (64, 8, 2, 20)])
def test_each_attention_is_segment_anythings(dim: int, heads: int, down: int, tokens: int) -> None:
    """Exact for any width, head count and token count (20 tokens: past the point where it pays)."""
    torch.manual_seed(dim)
    attn = Attention(dim, heads, downsample_rate=down).eval()
    for p in attn.parameters():  # biases nonzero, so dropping / folding them is checked too
        torch.nn.init.normal_(p, std=0.3)
    tok, img = torch.randn(2, tokens, dim), torch.randn(2, 50, dim)
    img2 = torch.randn(2, 50, dim)
    with torch.no_grad():
        t2i = fd.token_to_image(attn, tok, img.transpose(1, 2), img2.transpose(1, 2))
        i2t = fd.image_to_token(attn, img.transpose(1, 2), tok, tok * 2)
        torch.testing.assert_close(t2i, attn(q=tok, k=img, v=img2), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(i2t.transpose(1, 2), attn(q=img, k=tok, v=tok * 2), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kw", [dict(points=1), dict(points=3, box=True), dict(points=2, with_mask=True, batch=3),
                                dict(points=0, box=True, batch=2)])
def test_decoder_graph_is_segment_anythings(tiny_model, kw) -> None:
    """Points, boxes, mask inputs and a batch of prompts against one embedding: the factored wrapper
    gives segment-anything's low-res masks and IoU predictions."""
    ours, plain = LowResDecoder(tiny_model), LowResDecoder(tiny_model)
    ours.factored, plain.factored = True, False
    feed = ours.example_inputs(seed=3, **kw)
    with torch.no_grad():
        got, want = ours(*feed), plain(*feed)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    assert _mask_iou(got[1].numpy() > 0, want[1].numpy() > 0).min() == 1.0


def test_exports_factor_sam_sized_decoders_only(tiny_model) -> None:
    """SAM's decoder (256 wide, 8 heads) is exported factored; sam-mini's (128 wide), where it
    would save little, as segment-anything's."""
    from slimsam_edge.models.build import build_sam
    from slimsam_edge.models.spec import PRESETS

    assert fd.pays(build_sam(PRESETS["vit_b"]).mask_decoder)
    assert not fd.pays(build_sam(PRESETS["sam_mini"]).mask_decoder)


def test_shipped_model_exported_masks_match_segment_anything(tmp_path, monkeypatch) -> None:
    """The trained sam-mini on a real embedding, exported factored and run by ONNX Runtime, against
    segment-anything's decoder in torch: every mask IoU >= 0.99 (in practice identical)."""
    import onnxruntime as ort

    from slimsam_edge.models import graphs

    from slimsam_edge.assets import require_reference_model
    from slimsam_edge.data.procedural import generate_sample
    from slimsam_edge.exporters.onnx_export import export_onnx
    from slimsam_edge.models.graph_spec import DECODER_LOWRES, ONNX_SPECS
    from slimsam_edge.models.io import load_model
    from slimsam_edge.transforms import preprocess

    sam, spec = load_model(require_reference_model())
    monkeypatch.setattr(graphs.LowResDecoder, "factored", True)  # sam-mini's exports are plain by default
    export_onnx(sam, ONNX_SPECS[DECODER_LOWRES], tmp_path / "dec.onnx")
    sess = ort.InferenceSession(str(tmp_path / "dec.onnx"), providers=["CPUExecutionProvider"])
    monkeypatch.setattr(graphs.LowResDecoder, "factored", False)
    plain = LowResDecoder(sam)
    img = generate_sample(7, (240, 320))[0]
    x, _ = preprocess(img, spec.image_size, spec.pixel_mean, spec.pixel_std)
    with torch.no_grad():
        emb = sam.image_encoder(torch.from_numpy(x))
    rng, low, ious = np.random.default_rng(0), 4 * spec.embed_grid, []
    for _ in range(6):
        coords = torch.tensor([[[rng.uniform(0, 256), rng.uniform(0, 192)], [0.0, 0.0]]], dtype=torch.float32)
        feed = (emb, coords, torch.tensor([[1.0, -1.0]]), torch.zeros(1, 1, low, low), torch.zeros(1))
        with torch.no_grad():
            want = plain(*feed)[1].numpy()
        got = sess.run(None, {n: t.numpy() for n, t in zip(LowResDecoder.input_names, feed)})[1]
        ious.extend(_mask_iou(got > 0, want > 0).ravel())
        assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
    assert min(ious) >= 0.99
