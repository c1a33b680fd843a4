"""Bundles that tools written for segment-anything's ONNX files load unchanged (issue 16, item 7).

The clients are run as their authors wrote them: segment-anything's ONNX notebook
(``notebooks/onnx_model_example.ipynb``: SamPredictor for the embedding, ResizeLongestSide for
the coordinates, ONNX Runtime for the decoder) and samexporter's ``SegmentAnythingONNX`` encode
steps (PIL resize, raw float pixels into an encoder with the preprocessing inside). The model is
a random-weight 1024-px SAM, so the 1024 frame these clients hard-code is the right one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_SPEC, photo, tiny_sam

from slimsam_edge.bundle import load_bundle
from slimsam_edge.exporters.bundle_export import export_bundle

#: a 2-block, windowed-only encoder at SAM's 1024 input (64x64 embedding, mask_input 256x256)
SPEC_1024 = replace(TINY_SPEC, encoder=replace(
    TINY_SPEC.encoder, img_size=1024, embed_dim=32, num_heads=2, global_attn_indexes=(),
    qkv_dims=(32, 32), mlp_dims=(64, 64)))
CLIENT_GRAPHS = ["image_encoder", "image_encoder_pixels", "mask_decoder", "mask_decoder_single"]


@pytest.fixture(scope="module")
def sam_1024():
    return tiny_sam(0, SPEC_1024)


@pytest.fixture(scope="module")
def bundle_1024(tmp_path_factory, sam_1024) -> Path:
    """A 1024-px bundle with the client graphs (validated elsewhere on the 256-px tiny bundle)."""
    root = tmp_path_factory.mktemp("clients")
    toml = root / "clients.toml"
    toml.write_text('name = "clients"\nkind = "any"\ndescription = "SAM-ONNX clients"\nbackends = ["onnxruntime"]\n'
                    'default_precision = "fp32"\n[precisions]\nonnxruntime = ["fp32"]\n[graphs]\n'
                    f'onnxruntime = {CLIENT_GRAPHS!r}\n'.replace("'", '"'))
    export_bundle(sam_1024, SPEC_1024, root / "b", target=str(toml), model_id="tiny-1024", validate=False,
                  simplify=False)
    return root / "b"


@pytest.fixture(scope="module")
def truck() -> np.ndarray:
    """An RGB image of the notebook's truck.jpg size (1200x1800)."""
    return photo((1200, 1800), seed=3)


def _notebook_predictor(bundle: Path, image: np.ndarray):
    """The notebook's ``SamPredictor(sam).set_image(image)`` on the bundle's weights."""
    from segment_anything import SamPredictor

    from slimsam_edge.models.io import load_model

    sam, _ = load_model(bundle / "model.safetensors")
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    return predictor


def test_segment_anything_notebook_runs_unchanged_on_the_single_mask_decoder(bundle_1024: Path, truck) -> None:
    import onnxruntime
    import torch
    from segment_anything.utils.onnx import SamOnnxModel

    image = truck
    onnx_model_path = str(bundle_1024 / "onnx" / "mask_decoder_single.onnx")
    assert load_bundle(bundle_1024).manifest.prompt_frame["single_mask_graph"] == "mask_decoder_single"
    ort_session = onnxruntime.InferenceSession(onnx_model_path)
    predictor = _notebook_predictor(bundle_1024, image)
    # -- the notebook's cells, unchanged -------------------------------------------------------
    image_embedding = predictor.get_image_embedding().cpu().numpy()
    input_point = np.array([[500, 375]])
    input_label = np.array([1])
    onnx_coord = np.concatenate([input_point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, np.array([-1])], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    onnx_mask_input = np.zeros((1, 1, 256, 256), dtype=np.float32)
    onnx_has_mask_input = np.zeros(1, dtype=np.float32)
    ort_inputs = {
        "image_embeddings": image_embedding,
        "point_coords": onnx_coord,
        "point_labels": onnx_label,
        "mask_input": onnx_mask_input,
        "has_mask_input": onnx_has_mask_input,
        "orig_im_size": np.array(image.shape[:2], dtype=np.float32),
    }
    masks, _, low_res_logits = ort_session.run(None, ort_inputs)
    masks = masks > predictor.model.mask_threshold
    first = (masks, low_res_logits, dict(ort_inputs))

    input_point = np.array([[500, 375], [1125, 625]])
    input_label = np.array([1, 1])
    onnx_mask_input = low_res_logits
    onnx_coord = np.concatenate([input_point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, np.array([-1])], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    onnx_has_mask_input = np.ones(1, dtype=np.float32)
    ort_inputs = {
        "image_embeddings": image_embedding,
        "point_coords": onnx_coord,
        "point_labels": onnx_label,
        "mask_input": onnx_mask_input,
        "has_mask_input": onnx_has_mask_input,
        "orig_im_size": np.array(image.shape[:2], dtype=np.float32),
    }
    masks, _, _ = ort_session.run(None, ort_inputs)
    masks = masks > predictor.model.mask_threshold
    # -- what the notebook then shows ---------------------------------------------------------
    one, low, step1_inputs = first
    assert one.shape == masks.shape == (1, 1, 1200, 1800) and low.shape == (1, 1, 256, 256)
    assert 0 < one.sum() < one.size and 0 < masks.sum() < masks.size  # neither empty nor full
    # both steps agree with segment-anything's own SamOnnxModel(return_single_mask=True), in eager torch
    official = SamOnnxModel(predictor.model, return_single_mask=True).eval()
    for feed, got in ((step1_inputs, one), (ort_inputs, masks)):
        with torch.no_grad():
            ref = official(*(torch.from_numpy(np.asarray(feed[k])) for k in feed))[0].numpy() > 0
        assert (ref & got).sum() / max((ref | got).sum(), 1) > 0.99


def test_the_multimask_decoder_rejects_the_notebooks_mask_feedback(bundle_1024: Path) -> None:
    """Failure (a) of the issue, why the single-mask graph ships: 4 low-res masks are no mask_input."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(bundle_1024 / "onnx" / "mask_decoder.onnx"))
    feed = {"image_embeddings": np.zeros((1, 64, 64, 64), np.float32),
            "point_coords": np.zeros((1, 2, 2), np.float32), "point_labels": np.array([[1, -1]], np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([1200, 1800], np.float32)}
    _, _, low_res_logits = session.run(None, feed)
    assert low_res_logits.shape == (1, 4, 256, 256)
    with pytest.raises(Exception, match="mask_input"):
        session.run(None, {**feed, "mask_input": low_res_logits, "has_mask_input": np.ones(1, np.float32)})


def _samexporter_encode(session, cv_image: np.ndarray, target_size: int) -> dict:
    """samexporter's ``SegmentAnythingONNX.encode`` steps for a rank-3 (``--use-preprocess``) encoder."""
    import cv2
    from PIL import Image

    original_size = cv_image.shape[:2]
    scale = target_size * 1.0 / max(original_size)
    resized_size = (int(original_size[0] * scale + 0.5), int(original_size[1] * scale + 0.5))
    rgb_image = cv2.cvtColor(cv_image, cv2.COLOR_BGR2RGB)
    rgb_image = np.asarray(Image.fromarray(rgb_image).resize((resized_size[1], resized_size[0]),
                                                             resample=Image.Resampling.BILINEAR))
    encoder_input = session.get_inputs()[0]
    assert len(encoder_input.shape) == 3  # the client takes this branch: raw HWC pixels
    embedding = session.run(None, {encoder_input.name: rgb_image.astype(np.float32)})[0]
    return {"image_embedding": embedding, "original_size": original_size, "resized_size": resized_size,
            "rgb_resized": rgb_image}


def test_samexporter_flow_on_the_pixels_encoder(bundle_1024: Path, truck) -> None:
    import cv2
    import onnxruntime

    from slimsam_edge.transforms import normalize_and_pad

    b = load_bundle(bundle_1024)
    m = b.manifest
    assert m.prompt_frame["pixels_encoder_graph"] == "image_encoder_pixels"
    session = onnxruntime.InferenceSession(str(bundle_1024 / "onnx" / "image_encoder_pixels.onnx"))
    out = _samexporter_encode(session, cv2.cvtColor(truck, cv2.COLOR_RGB2BGR), target_size=1024)
    assert out["resized_size"] == (683, 1024)
    # the plain encoder on the same resized image, preprocessed outside the graph
    x = normalize_and_pad(out["rgb_resized"], m.image_size, m.pixel_mean, m.pixel_std)
    plain = onnxruntime.InferenceSession(str(bundle_1024 / "onnx" / "image_encoder.onnx"))
    expected = plain.run(None, {"image": x})[0]
    assert out["image_embedding"].shape == expected.shape == (1, 64, 64, 64)
    np.testing.assert_allclose(out["image_embedding"], expected, atol=2e-4, rtol=1e-3)
    # then samexporter's decoder call: a point in the 1024 frame, the official I/O, one mask
    decoder = onnxruntime.InferenceSession(str(bundle_1024 / "onnx" / "mask_decoder_single.onnx"))
    h, w = out["original_size"]
    coords = np.array([[[900 * 1024 / 1800, 600 * 683 / 1200], [0.0, 0.0]]], np.float32)
    masks, iou, low = decoder.run(None, {
        "image_embeddings": out["image_embedding"], "point_coords": coords,
        "point_labels": np.array([[1, -1]], np.float32), "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.array([h, w], np.float32)})
    assert masks.shape == (1, 1, h, w) and iou.shape == (1, 1) and low.shape == (1, 1, 256, 256)


def test_manifest_and_onnx_metadata_state_the_256_frame(tiny_bundle: Path) -> None:
    """Failure (b) of the issue: a 256-px bundle says, in the manifest and in every ONNX file,
    that its points are in the 256 frame and its mask_input is 64x64."""
    import onnx

    b = load_bundle(tiny_bundle)
    frame = b.manifest.prompt_frame
    assert frame["long_side"] == 256 and frame["mask_input_size"] == [64, 64]
    assert "ResizeLongestSide(256)" in frame["point_coords"]
    assert (frame["multimask_graph"], frame["single_mask_graph"], frame["lowres_graph"],
            frame["pixels_encoder_graph"]) == ("mask_decoder", "mask_decoder_single", "mask_decoder_lowres",
                                               "image_encoder_pixels")
    onnx_files = sorted({a.path for a in b.manifest.artifacts if a.path.endswith(".onnx")})
    graphs = set()
    for rel in onnx_files:
        meta = {p.key: p.value for p in onnx.load(str(tiny_bundle / rel), load_external_data=False).metadata_props}
        assert meta["long_side"] == meta["image_size"] == "256", rel
        assert meta["mask_input_size"] == "[64, 64]" and "ResizeLongestSide(256)" in meta["point_coords"], rel
        assert meta["model_id"] == "tiny" and meta["slimsam_edge_version"], rel
        assert meta["pixel_mean"] == "[123.675, 116.28, 103.53]" and meta["pixel_std"] == "[58.395, 57.12, 57.375]"
        assert ("prompt_batch" in meta) == (meta["graph"] == "mask_decoder_lowres"), rel  # B prompts per call
        graphs.add(meta["graph"])
    assert frame["prompt_batch"].startswith("mask_decoder_lowres only: B prompts in one call")
    assert graphs == {"image_encoder", "image_encoder_pixels", "mask_decoder", "mask_decoder_single",
                      "mask_decoder_lowres"}


def test_single_mask_decoder_io(tiny_bundle: Path) -> None:
    import onnx

    b = load_bundle(tiny_bundle)
    assert b.manifest.validation["mask_decoder_single/onnxruntime/fp32"]["ok"]
    assert b.manifest.validation["image_encoder_pixels/onnxruntime/fp32"]["cases"] == 3
    model = onnx.load(str(tiny_bundle / "onnx" / "mask_decoder_single.onnx"))
    assert [i.name for i in model.graph.input] == [
        "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
    assert [o.name for o in model.graph.output] == ["masks", "iou_predictions", "low_res_masks"]
    pixels = onnx.load(str(tiny_bundle / "onnx" / "image_encoder_pixels.onnx"))
    dims = [d.dim_param or d.dim_value for d in pixels.graph.input[0].type.tensor_type.shape.dim]
    assert pixels.graph.input[0].name == "input_image" and dims == ["image_height", "image_width", 3]
    # the runtime pair is unchanged: the predictor keeps the low-res decoder
    from slimsam_edge.predictor import DECODER

    assert DECODER == "mask_decoder_lowres"
