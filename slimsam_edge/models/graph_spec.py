"""The graphs a bundle holds, named once: their I/O, dynamic axes and validation tolerances.

Torch-free and at the bottom of the house: models, runtimes, the bundle, the predictor and the
exporters all take graph names, feed dicts and specs from here (optimum's pattern: one
declarative spec per graph).

Besides the runtime pair, a bundle can hold the graphs that tools written for segment-anything's
official ONNX files load unchanged (docs/sam-onnx-clients.md): the official decoder in its
multimask and single-mask forms, and an encoder with the preprocessing inside the graph
(samexporter's ``--use-preprocess`` contract). :func:`prompt_frame` says in which pixel frame
their prompts are given; the manifest and every exported ONNX file record it.

Example:
    >>> ONNX_SPECS[DECODER_LOWRES].outputs
    {'iou_predictions': {0: 'num_prompts'}, 'low_res_masks': {0: 'num_prompts'}}
    >>> ONNX_SPECS[DECODER].outputs["iou_predictions"]
    {}
    >>> RUNTIME_GRAPHS
    ('image_encoder', 'mask_decoder_lowres')
    >>> ONNX_SPECS[ENCODER_PIXELS].inputs
    {'input_image': {0: 'image_height', 1: 'image_width'}}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

#: a graph's inputs or outputs by name
FeedDict = dict[str, np.ndarray]

#: the preprocessed image -> image embedding graph
ENCODER = "image_encoder"
#: raw resized HxWx3 pixels -> image embedding (normalise, HWC->CHW and pad inside the graph)
ENCODER_PIXELS = "image_encoder_pixels"
#: segment-anything's official ONNX decoder I/O (with ``orig_im_size`` and the in-graph upsample),
#: every mask token returned (``return_single_mask=False``)
DECODER = "mask_decoder"
#: the official decoder as segment-anything's notebook exports it (``return_single_mask=True``):
#: one mask, chosen from the point count and the predicted IoU
DECODER_SINGLE = "mask_decoder_single"
#: the decoder without ``orig_im_size`` or upsampling: what the predictor and TensorRT run
DECODER_LOWRES = "mask_decoder_lowres"
#: every graph an export writes, in export order
ALL_GRAPHS = (ENCODER, ENCODER_PIXELS, DECODER, DECODER_SINGLE, DECODER_LOWRES)
#: the pair a runtime (the predictor) needs
RUNTIME_GRAPHS = (ENCODER, DECODER_LOWRES)

DEFAULT_OPSET = 17
_POINTS = {1: "num_points"}
#: name of the low-res decoder's dynamic prompt axis (axis 0 of its prompt inputs and outputs)
PROMPT_AXIS = "num_prompts"
_PROMPTS = {0: PROMPT_AXIS}


@dataclass(frozen=True)
class OnnxSpec:
    """One exported graph.

    Arguments:
        name: graph name, also the artifact's file stem.
        wrapper: name of the torch wrapper class in :mod:`slimsam_edge.models.graphs`.
        inputs / outputs: name → dynamic axes ({axis: name}); empty dict = static.
        atol / rtol: per-output tolerances used by validation.
        mask_outputs: outputs holding mask logits, also compared by mask IoU (threshold 0).
        opset: ONNX opset.
    """

    name: str
    wrapper: str
    inputs: dict[str, dict[int, str]]
    outputs: dict[str, dict[int, str]]
    atol: dict[str, float]
    rtol: float = 1e-3
    mask_outputs: tuple[str, ...] = ()
    min_mask_iou: float = 0.99
    opset: int = DEFAULT_OPSET
    description: str = ""
    dynamic_axes: dict[str, dict[int, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        axes = {k: v for k, v in {**self.inputs, **self.outputs}.items() if v}
        object.__setattr__(self, "dynamic_axes", axes)


#: segment-anything's official decoder I/O; the single-mask graph differs only in its wrapper
_OFFICIAL = OnnxSpec(
    name=DECODER,
    wrapper="OfficialDecoder",
    inputs={
        "image_embeddings": {}, "point_coords": _POINTS, "point_labels": _POINTS,
        "mask_input": {}, "has_mask_input": {}, "orig_im_size": {},
    },
    outputs={"masks": {2: "height", 3: "width"}, "iou_predictions": {}, "low_res_masks": {}},
    atol={"masks": 2e-2, "iou_predictions": 2e-3, "low_res_masks": 2e-2},
    mask_outputs=("masks", "low_res_masks"),
    description="segment-anything's ONNX decoder contract (in-graph upsample to orig_im_size), "
    "every mask token returned",
)


ONNX_SPECS: dict[str, OnnxSpec] = {
    ENCODER: OnnxSpec(
        name=ENCODER,
        wrapper="EncoderGraph",
        inputs={"image": {}},
        outputs={"image_embeddings": {}},
        atol={"image_embeddings": 2e-3},
        description="preprocessed image 1x3xSxS -> image embedding",
    ),
    ENCODER_PIXELS: OnnxSpec(
        name=ENCODER_PIXELS,
        wrapper="PixelEncoder",
        inputs={"input_image": {0: "image_height", 1: "image_width"}},
        outputs={"image_embeddings": {}},
        atol={"image_embeddings": 2e-3},
        description="RGB pixels HxWx3 float32 (0..255, resized so the longest side is S, not "
        "normalised, not padded) -> image embedding; samexporter's --use-preprocess encoder",
    ),
    DECODER: _OFFICIAL,
    DECODER_SINGLE: replace(
        _OFFICIAL, name=DECODER_SINGLE, wrapper="SingleMaskDecoder",
        description="segment-anything's ONNX decoder exported with return_single_mask=True: one mask "
        "(1x1xHxW at orig_im_size, low_res_masks 1x1x(S/4)x(S/4)) fit to feed back as mask_input",
    ),
    DECODER_LOWRES: OnnxSpec(
        name=DECODER_LOWRES,
        wrapper="LowResDecoder",
        inputs={
            "image_embeddings": {}, "point_coords": {**_PROMPTS, **_POINTS},
            "point_labels": {**_PROMPTS, **_POINTS}, "mask_input": _PROMPTS, "has_mask_input": _PROMPTS,
        },
        outputs={"iou_predictions": _PROMPTS, "low_res_masks": _PROMPTS},
        atol={"iou_predictions": 2e-3, "low_res_masks": 2e-2},
        mask_outputs=("low_res_masks",),
        description="decoder without orig_im_size or upsampling (TensorRT-friendly); "
        "the runtime resizes the chosen mask. B prompts against one image in one call: axis 0 "
        "(num_prompts) of point_coords BxNx2, point_labels BxN, mask_input Bx1xLxL, "
        "has_mask_input B and of the outputs; image_embeddings stays 1xCxGxG",
    ),
}


def has_prompt_axis(spec: "OnnxSpec | str | dict[str, Any]") -> bool:
    """Whether a decoder takes B prompts per call: its ``point_coords`` axis 0 is dynamic.

    ``spec`` is a graph name, an :class:`OnnxSpec`, or a runner's input specs (name →
    :class:`~slimsam_edge.runtimes.base.TensorSpec`, whose ``str`` dims are dynamic): a graph
    exported before the prompt axis existed has ``point_coords`` 1xNx2 and says no.

    Example:
        >>> has_prompt_axis("mask_decoder_lowres"), has_prompt_axis("mask_decoder")
        (True, False)
    """
    if isinstance(spec, str):
        spec = ONNX_SPECS[spec]
    if isinstance(spec, OnnxSpec):
        return 0 in spec.inputs.get("point_coords", {})
    coords = spec.get("point_coords")
    shape = getattr(coords, "shape", None)
    return bool(shape) and not isinstance(shape[0], int)


def prompt_frame(image_size: int, mask_input_side: int, graphs: Iterable[str] = ALL_GRAPHS) -> dict[str, Any]:
    """How a client gives prompts to this model's decoder graphs (the manifest's ``prompt_frame``).

    Coordinates are pixels of the image resized so its longest side is ``image_size``
    (segment-anything's ``ResizeLongestSide(image_size).apply_coords``), not the original
    image's pixels and not the 1024 frame of SAM when ``image_size`` differs: a 256-px model fed
    1024-frame points answers with masks of IoU near 0 and no error. ``graphs`` limits the graph
    names listed to those the bundle holds.

    Example:
        >>> f = prompt_frame(256, 64, ["image_encoder", "mask_decoder_single"])
        >>> f["long_side"], f["mask_input_size"], f["single_mask_graph"], f["multimask_graph"]
        (256, [64, 64], 'mask_decoder_single', None)
        >>> f["prompt_batch"] is None, prompt_frame(256, 64)["prompt_batch"].split(":")[0]
        (True, 'mask_decoder_lowres only')
    """
    held = set(graphs)
    size, side = int(image_size), int(mask_input_side)

    def graph(name: str) -> str | None:
        return name if name in held else None

    return {
        "point_coords": f"x, y in pixels of the image resized so its longest side is {size} "
        f"(segment-anything's ResizeLongestSide({size}).apply_coords), float32 1xNx2",
        "long_side": size,
        "pad_point": "without a box, append the point (0, 0) with label -1",
        "point_labels": "1 foreground, 0 background, 2 / 3 box top-left / bottom-right, -1 padding",
        "mask_input_size": [side, side],
        "mask_input": f"1x1x{side}x{side} float32 logits (low_res_masks of a previous call) with "
        "has_mask_input 1, else zeros with has_mask_input 0",
        "orig_im_size": "(h, w) of the original image, float32",
        "prompt_batch": f"{DECODER_LOWRES} only: B prompts in one call along axis 0 (point_coords BxNx2, "
        "point_labels BxN, mask_input Bx1xLxL, has_mask_input B; outputs B-leading); image_embeddings stays 1"
        if DECODER_LOWRES in held else None,
        "multimask_graph": graph(DECODER),
        "single_mask_graph": graph(DECODER_SINGLE),
        "lowres_graph": graph(DECODER_LOWRES),
        "pixels_encoder_graph": graph(ENCODER_PIXELS),
    }


def onnx_metadata(
    graph: str, *, model_id: str, image_size: int, mask_input_side: int,
    pixel_mean: Iterable[float], pixel_std: Iterable[float], version: str,
) -> dict[str, str]:
    """The ``metadata_props`` written into an exported graph's ONNX file (strings only).

    Example:
        >>> m = onnx_metadata("mask_decoder_single", model_id="tiny", image_size=256, mask_input_side=64,
        ...                   pixel_mean=[1, 2, 3], pixel_std=[4, 5, 6], version="0.1.0")
        >>> m["graph"], m["long_side"], m["mask_input_size"], m["pixel_mean"]
        ('mask_decoder_single', '256', '[64, 64]', '[1.0, 2.0, 3.0]')
    """
    import json

    frame = prompt_frame(image_size, mask_input_side, [graph])
    meta = {
        "producer": "slimsam-edge", "slimsam_edge_version": version, "model_id": model_id, "graph": graph,
        "graph_description": ONNX_SPECS[graph].description, "image_size": str(int(image_size)),
        "pixel_mean": json.dumps([float(v) for v in pixel_mean]),
        "pixel_std": json.dumps([float(v) for v in pixel_std]),
    }
    for key, value in frame.items():
        if not key.endswith("_graph") and value is not None:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta
