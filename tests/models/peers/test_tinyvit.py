"""MobileSAM's encoder architecture (random weights, latency reference): size, shapes, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimsam_edge.models.peers.tinyvit import TinyViTEncoder, build_mobilesam_encoder, count_parameters


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parameter_count_is_tinyvit_5m():
    # TinyViT-5M as MobileSAM uses it (no classification head, SAM neck): 5,743,892 parameters
    n = count_parameters(TinyViTEncoder())
    assert 5_740_000 <= n <= 5_750_000, n


# 224: every window fits exactly (no padding); 128: stages 1-3 are padded (16 -> 21, 8 -> 14, 8 -> 14)
@pytest.mark.parametrize("img_size", [224, 128])
def test_output_shape_is_img_over_16(img_size):
    enc = build_mobilesam_encoder(seed=0, img_size=img_size)
    with torch.no_grad():
        out = enc(torch.randn(1, 3, img_size, img_size))
        again = build_mobilesam_encoder(seed=0, img_size=img_size)(torch.zeros(1, 3, img_size, img_size))
        assert torch.equal(enc(torch.zeros(1, 3, img_size, img_size)), again)  # seeded
    assert tuple(out.shape) == (1, 256, img_size // 16, img_size // 16)
    assert torch.isfinite(out).all()


def test_img_size_must_be_multiple_of_16():
    with pytest.raises(ValueError):
        TinyViTEncoder(img_size=100)


def test_onnx_export_matches_torch_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    enc = build_mobilesam_encoder(seed=1, img_size=128)
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = enc(x).numpy()
        path = tmp_path / "tinyvit.onnx"
        torch.onnx.export(enc, (x,), str(path), input_names=["image"], output_names=["image_embeddings"],
                          opset_version=17, dynamo=False, do_constant_folding=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"image": x.numpy()})
    assert out.shape == (1, 256, 8, 8)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
