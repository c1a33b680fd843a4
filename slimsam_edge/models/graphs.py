"""Torch modules that define the exported graphs (encoders, official decoders, low-res decoder).

- :class:`EncoderGraph`: preprocessed ``image`` 1x3xSxS → ``image_embeddings`` 1xCx(S/16)x(S/16).
- :class:`PixelEncoder`: raw RGB ``input_image`` HxWx3 float32 (already resized so the longest
  side is S) → the same embedding; normalisation, HWC→CHW and the bottom/right zero padding to
  SxS happen in the graph (samexporter's ``--use-preprocess`` encoder contract).
- :class:`OfficialDecoder`: segment-anything's ONNX decoder I/O (with ``orig_im_size`` and the
  in-graph upsample), all mask tokens returned so one graph serves single and multi-mask output.
- :class:`SingleMaskDecoder`: the same I/O exported as segment-anything's ``SamOnnxModel(...,
  return_single_mask=True)``: one mask (its ``low_res_masks`` feed back as ``mask_input``).
- :class:`LowResDecoder`: the same without ``orig_im_size`` and without upsampling (outputs
  ``iou_predictions, low_res_masks``): no shape tensors, so TensorRT builds it; the predictor
  resizes only the chosen masks outside the graph.

The decoder graphs of SAM-sized decoders run the mask decoder factored (:mod:`.factored_decoder`:
the same function with the image-side attention products reassociated, ~1.7x fewer MACs); a
wrapper with ``factored = False`` runs segment-anything's ``predict_masks`` as it is.

Example:
    >>> from slimsam_edge.models.build import build_sam
    >>> from slimsam_edge.models.spec import PRESETS
    >>> dec = LowResDecoder(build_sam(PRESETS["sam_mini"]))
    >>> [t.shape[-1] for t in dec(*dec.example_inputs(3))]
    [4, 64]
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.utils.onnx import SamOnnxModel
from torch import nn

from . import factored_decoder
from .graph_spec import ONNX_SPECS, OnnxSpec


class EncoderGraph(nn.Module):
    """Image encoder on an already preprocessed (normalised, padded) image."""

    input_names = ("image",)
    output_names = ("image_embeddings",)

    def __init__(self, sam: nn.Module):
        super().__init__()
        self.image_encoder = sam.image_encoder
        self.img_size = int(sam.image_encoder.img_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)

    def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(1, 3, self.img_size, self.img_size, generator=g),)

    def example_cases(self) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
        """Named inputs the export is validated on."""
        return [(f"random image seed {s}", self.example_inputs(seed=s)) for s in (1, 2)]


class PixelEncoder(EncoderGraph):
    """Image encoder on raw pixels: ``input_image`` HxWx3 float32 RGB in 0..255, resized so its
    longest side is the model's image size (H, W dynamic, at most S); the graph normalises with
    the model's pixel mean / std, moves channels first and zero-pads to SxS.

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> enc = PixelEncoder(build_sam(PRESETS["sam_mini"]))
        >>> (x,) = enc.example_inputs()
        >>> tuple(x.shape), tuple(enc(x).shape)
        ((192, 256, 3), (1, 128, 16, 16))
    """

    input_names = ("input_image",)

    def __init__(self, sam: nn.Module):
        super().__init__(sam)
        self.register_buffer("pixel_mean", sam.pixel_mean.detach().reshape(1, 1, 3).clone(), persistent=False)
        self.register_buffer("pixel_std", sam.pixel_std.detach().reshape(1, 1, 3).clone(), persistent=False)

    def forward(self, input_image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = ((input_image - self.pixel_mean) / self.pixel_std).permute(2, 0, 1).unsqueeze(0)
        h, w = x.shape[-2:]  # traced as shape ops: the padding follows the input at run time
        x = F.pad(x, (0, self.img_size - w, 0, self.img_size - h))
        return self.image_encoder(x)

    def example_inputs(self, seed: int = 0, hw: tuple[int, int] | None = None) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        """Random pixels 0..255 of a resized image (landscape 3:4 by default, so padding is traced)."""
        g = torch.Generator().manual_seed(seed)
        h, w = hw or (self.img_size * 3 // 4, self.img_size)
        return (torch.rand(h, w, 3, generator=g) * 255,)

    def example_cases(self) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
        s = self.img_size
        sizes = [(s * 3 // 4, s), (s, s // 2 + 7), (s, s)]
        return [(f"pixels {h}x{w}", self.example_inputs(seed=i, hw=(h, w))) for i, (h, w) in enumerate(sizes, 1)]


class _DecoderBase(nn.Module):
    #: run the mask decoder through :mod:`~slimsam_edge.models.factored_decoder` (same function,
    #: ~1.7x fewer MACs for SAM's decoder); False: segment-anything's ``predict_masks`` as it is;
    #: None: factored where it pays (:func:`~slimsam_edge.models.factored_decoder.pays`)
    factored: bool | None = None

    def __init__(self, sam: nn.Module):
        super().__init__()
        self.core = SamOnnxModel(sam, return_single_mask=False)
        self.img_size = int(sam.image_encoder.img_size)
        enc = sam.image_encoder
        self.embed_dim = int(sam.prompt_encoder.embed_dim)
        self.grid = self.img_size // int(enc.patch_embed.proj.kernel_size[0])

    def _decode(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self.core._embed_points(point_coords, point_labels)
        dense = self.core._embed_masks(mask_input, has_mask_input)
        decoder = self.core.model.mask_decoder
        factored = factored_decoder.pays(decoder) if self.factored is None else self.factored
        predict = partial(factored_decoder.predict_masks, decoder) if factored else decoder.predict_masks
        return predict(image_embeddings, self.core.model.prompt_encoder.get_dense_pe(), sparse, dense)

    def example_inputs(
        self, points: int = 1, *, box: bool = False, with_mask: bool = False, seed: int = 0,
        orig_hw: tuple[int, int] | None = None, batch: int = 1,
    ) -> tuple[torch.Tensor, ...]:
        """Random but valid decoder inputs: ``points`` points (+ box corners or a pad point) for
        each of ``batch`` prompts (``batch`` > 1 only for graphs with a prompt axis). With
        ``with_mask`` and ``batch`` > 1 every other prompt has a mask input (``has_mask_input``
        1, 0, 1, ...) so both branches run in one call."""
        g = torch.Generator().manual_seed(seed)
        emb = torch.randn(1, self.embed_dim, self.grid, self.grid, generator=g)
        coords = torch.rand(batch, points, 2, generator=g) * self.img_size
        labels = torch.randint(0, 2, (batch, points), generator=g).float()
        if box:
            xy = torch.sort(torch.rand(batch, 2, 2, generator=g) * self.img_size, dim=1).values
            coords = torch.cat([coords, xy], dim=1)
            labels = torch.cat([labels, torch.tensor([[2.0, 3.0]]).expand(batch, 2)], dim=1)
        else:
            coords = torch.cat([coords, torch.zeros(batch, 1, 2)], dim=1)
            labels = torch.cat([labels, -torch.ones(batch, 1)], dim=1)
        low = 4 * self.grid
        mask = torch.randn(batch, 1, low, low, generator=g) * 5 if with_mask else torch.zeros(batch, 1, low, low)
        has = (torch.arange(batch) % 2 == 0).float() if with_mask else torch.zeros(batch)
        feed = (emb, coords, labels, mask, has)
        if orig_hw is not None:
            feed = feed + (torch.tensor(orig_hw, dtype=torch.float32),)
        return feed


class LowResDecoder(_DecoderBase):
    """Prompt encoder + mask decoder for B prompts against one image embedding (1xCxGxG):
    ``point_coords`` BxNx2, ``point_labels`` BxN, ``mask_input`` Bx1x4Gx4G, ``has_mask_input`` B
    → ``iou_predictions`` (BxK), ``low_res_masks`` (BxKx4Gx4G). The embedding is repeated per
    prompt inside the graph (segment-anything's ``MaskDecoder.predict_masks``).

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> dec = LowResDecoder(build_sam(PRESETS["sam_mini"]))
        >>> [tuple(t.shape) for t in dec(*dec.example_inputs(2, batch=3, with_mask=True))]
        [(3, 4), (3, 4, 64, 64)]
    """

    input_names = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
    output_names = ("iou_predictions", "low_res_masks")

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        # one has_mask_input per prompt: Bx1x1x1 scales that prompt's dense embedding only
        has = has_mask_input.reshape(-1, 1, 1, 1)
        masks, scores = self._decode(image_embeddings, point_coords, point_labels, mask_input, has)
        return scores, masks


class OfficialDecoder(_DecoderBase):
    """segment-anything's ONNX decoder contract: masks upsampled to ``orig_im_size`` in-graph."""

    input_names = LowResDecoder.input_names + ("orig_im_size",)
    output_names = ("masks", "iou_predictions", "low_res_masks")

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        masks, scores = self._decode(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
        return self.upscale(masks, orig_im_size), scores, masks

    def upscale(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Upsample to the padded input, crop the padding, resize to ``orig_im_size``.

        Crop bounds stay tensors so the traced graph follows ``orig_im_size`` at run time
        (``int()`` here would freeze the export-time size into the graph).
        """
        s = self.img_size
        masks = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        prepadded = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
        masks = masks[..., : prepadded[0], : prepadded[1]]
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    def example_inputs(self, points: int = 1, **kw) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        kw.setdefault("orig_hw", (self.img_size * 3 // 4, self.img_size))
        return super().example_inputs(points, **kw)


class SingleMaskDecoder(OfficialDecoder):
    """segment-anything's ``SamOnnxModel(..., return_single_mask=True)``: one mask per call.

    With more than one real point or a box (``num_points`` > 2 counting the pad point) the
    single-output token's mask is returned, else the multimask token with the highest predicted
    IoU (segment-anything's ``select_masks``). Outputs: ``masks`` 1x1xHxW at ``orig_im_size``,
    ``iou_predictions`` 1x1, ``low_res_masks`` 1x1x(S/4)x(S/4), fit to feed back as
    ``mask_input``.

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> dec = SingleMaskDecoder(build_sam(PRESETS["sam_mini"]))
        >>> [tuple(t.shape) for t in dec(*dec.example_inputs(1))]
        [(1, 1, 192, 256), (1, 1), (1, 1, 64, 64)]
    """

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        masks, scores = self._decode(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
        masks, scores = self.core.select_masks(masks, scores, point_coords.shape[1])
        return self.upscale(masks, orig_im_size), scores, masks


def make_wrapper(sam: nn.Module, spec: "OnnxSpec | str") -> nn.Module:
    """The torch module (in eval mode) behind graph ``spec`` of ``sam``.

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> type(make_wrapper(build_sam(PRESETS["sam_mini"]), "mask_decoder")).__name__
        'OfficialDecoder'
    """
    spec = ONNX_SPECS[spec] if isinstance(spec, str) else spec
    return globals()[spec.wrapper](sam).eval()
