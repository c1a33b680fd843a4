"""The graphs a bundle holds, named once: their I/O, dynamic axes and validation tolerances.

Torch-free and at the bottom of the house: models, runtimes, the bundle, the predictor and the
exporters all take graph names, feed dicts and specs from here (optimum's pattern: one
declarative spec per graph).

Example:
    >>> ONNX_SPECS[DECODER_LOWRES].outputs
    {'iou_predictions': {}, 'low_res_masks': {}}
    >>> RUNTIME_GRAPHS
    ('image_encoder', 'mask_decoder_lowres')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a graph's inputs or outputs by name
FeedDict = dict[str, np.ndarray]

#: the preprocessed image -> image embedding graph
ENCODER = "image_encoder"
#: segment-anything's official ONNX decoder I/O (with ``orig_im_size`` and the in-graph upsample)
DECODER = "mask_decoder"
#: the decoder without ``orig_im_size`` or upsampling: what the predictor and TensorRT run
DECODER_LOWRES = "mask_decoder_lowres"
#: every graph an export writes, in export order
ALL_GRAPHS = (ENCODER, DECODER, DECODER_LOWRES)
#: the pair a runtime (the predictor) needs
RUNTIME_GRAPHS = (ENCODER, DECODER_LOWRES)

DEFAULT_OPSET = 17
_POINTS = {1: "num_points"}


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


ONNX_SPECS: dict[str, OnnxSpec] = {
    ENCODER: OnnxSpec(
        name=ENCODER,
        wrapper="EncoderGraph",
        inputs={"image": {}},
        outputs={"image_embeddings": {}},
        atol={"image_embeddings": 2e-3},
        description="preprocessed image 1x3xSxS -> image embedding",
    ),
    DECODER: OnnxSpec(
        name=DECODER,
        wrapper="OfficialDecoder",
        inputs={
            "image_embeddings": {}, "point_coords": _POINTS, "point_labels": _POINTS,
            "mask_input": {}, "has_mask_input": {}, "orig_im_size": {},
        },
        outputs={"masks": {2: "height", 3: "width"}, "iou_predictions": {}, "low_res_masks": {}},
        atol={"masks": 2e-2, "iou_predictions": 2e-3, "low_res_masks": 2e-2},
        mask_outputs=("masks", "low_res_masks"),
        description="segment-anything's ONNX decoder contract (in-graph upsample to orig_im_size)",
    ),
    DECODER_LOWRES: OnnxSpec(
        name=DECODER_LOWRES,
        wrapper="LowResDecoder",
        inputs={
            "image_embeddings": {}, "point_coords": _POINTS, "point_labels": _POINTS,
            "mask_input": {}, "has_mask_input": {},
        },
        outputs={"iou_predictions": {}, "low_res_masks": {}},
        atol={"iou_predictions": 2e-3, "low_res_masks": 2e-2},
        mask_outputs=("low_res_masks",),
        description="decoder without orig_im_size or upsampling (TensorRT-friendly); "
        "the runtime resizes the chosen mask",
    ),
}
