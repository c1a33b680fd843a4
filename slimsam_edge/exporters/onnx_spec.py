"""Declarative description of each exported graph (optimum's pattern): one spec per graph.

Example:
    >>> ONNX_SPECS["mask_decoder_lowres"].outputs
    {'iou_predictions': {}, 'low_res_masks': {}}
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_OPSET = 17
_POINTS = {1: "num_points"}


@dataclass(frozen=True)
class OnnxSpec:
    """One exported graph.

    Arguments:
        name: graph name, also the artifact's file stem.
        wrapper: name of the torch wrapper class in :mod:`slimsam_edge.exporters.wrappers`.
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
    "image_encoder": OnnxSpec(
        name="image_encoder",
        wrapper="EncoderGraph",
        inputs={"image": {}},
        outputs={"image_embeddings": {}},
        atol={"image_embeddings": 2e-3},
        description="preprocessed image 1x3xSxS -> image embedding",
    ),
    "mask_decoder": OnnxSpec(
        name="mask_decoder",
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
    "mask_decoder_lowres": OnnxSpec(
        name="mask_decoder_lowres",
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
