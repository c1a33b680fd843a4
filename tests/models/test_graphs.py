"""The torch wrappers behind the exported graphs, against segment-anything's own ONNX module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimsam_edge.models.graph_spec import ALL_GRAPHS, ONNX_SPECS
from slimsam_edge.models.graphs import EncoderGraph, OfficialDecoder, PixelEncoder, SingleMaskDecoder, make_wrapper


def test_every_graph_has_its_wrapper(tiny_model) -> None:
    for graph in ALL_GRAPHS:
        module = make_wrapper(tiny_model, graph)
        assert type(module).__name__ == ONNX_SPECS[graph].wrapper and not module.training


@pytest.mark.parametrize("points, box", [(1, False), (3, False), (0, True), (2, True)])
def test_single_mask_decoder_is_segment_anythings_return_single_mask(tiny_model, points: int, box: bool) -> None:
    from segment_anything.utils.onnx import SamOnnxModel

    ours = SingleMaskDecoder(tiny_model)
    official = SamOnnxModel(tiny_model, return_single_mask=True).eval()
    feed = ours.example_inputs(points, box=box, seed=7, orig_hw=(150, 256))
    with torch.no_grad():
        got, want = ours(*feed), official(*feed)
    assert [tuple(t.shape) for t in got] == [(1, 1, 150, 256), (1, 1), (1, 1, 64, 64)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    # the chosen mask is one of the multimask graph's masks
    with torch.no_grad():
        masks, scores, low = OfficialDecoder(tiny_model)(*feed)
    idx = int(torch.argmax(scores + (feed[1].shape[1] - 2.5) * torch.tensor([[1000.0, 0, 0, 0]])))
    torch.testing.assert_close(got[2][0, 0], low[0, idx])


def test_pixel_encoder_is_the_encoder_on_the_runtimes_preprocessing(tiny_model) -> None:
    from slimsam_edge.transforms import normalize_and_pad

    spec = tiny_model.spec
    pixels = np.random.default_rng(0).integers(0, 256, (256, 135, 3)).astype(np.uint8)  # portrait, resized
    with torch.no_grad():
        got = PixelEncoder(tiny_model)(torch.from_numpy(pixels.astype(np.float32)))
        x = normalize_and_pad(pixels, spec.image_size, spec.pixel_mean, spec.pixel_std)
        want = EncoderGraph(tiny_model)(torch.from_numpy(x))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kw", [dict(points=2), dict(points=1, box=True, with_mask=True), dict(points=0, box=True)])
def test_lowres_decoder_batch_is_each_prompt_alone(tiny_model, kw) -> None:
    """B prompts against one embedding = B one-prompt calls (the embedding repeated in the graph);
    has_mask_input is per prompt (1, 0, 1 here with a mask)."""
    from slimsam_edge.models.graph_spec import has_prompt_axis
    from slimsam_edge.models.graphs import LowResDecoder

    dec = LowResDecoder(tiny_model)
    feed = dec.example_inputs(seed=4, batch=3, **kw)
    assert feed[0].shape[0] == 1 and feed[1].shape[0] == 3 and feed[4].shape == (3,)
    with torch.no_grad():
        scores, masks = dec(*feed)
        for i in range(3):
            one = (feed[0],) + tuple(t[i:i + 1] for t in feed[1:])
            s1, m1 = dec(*one)
            torch.testing.assert_close(scores[i:i + 1], s1, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(masks[i:i + 1], m1, atol=1e-4, rtol=1e-4)
    if kw.get("with_mask"):
        assert feed[4].tolist() == [1.0, 0.0, 1.0]
    assert has_prompt_axis("mask_decoder_lowres") and not has_prompt_axis("mask_decoder_single")


def test_example_inputs_of_one_prompt_are_unchanged_by_the_batch_argument(tiny_model) -> None:
    """batch=1 draws the same tensors as before the prompt axis (the export and its cases)."""
    from slimsam_edge.models.graphs import LowResDecoder

    dec = LowResDecoder(tiny_model)
    a, b = dec.example_inputs(3, box=True, seed=2), dec.example_inputs(3, box=True, seed=2, batch=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert tuple(a[1].shape) == (1, 5, 2) and tuple(a[4].shape) == (1,)
