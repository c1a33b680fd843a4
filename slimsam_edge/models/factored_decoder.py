"""SAM's mask decoder with its image-side attention products reassociated (same function, ~1.7x fewer MACs).

Every attention between the N image tokens (4096 at 1024 px) and the T prompt tokens (5 output
tokens + the points; 7 for one click) in segment-anything's ``TwoWayTransformer`` projects all N
image tokens into the attention's internal width (C/2 = 128 for SAM) first: four N x C x C/2
products per block and two more in the final attention, ~1.34 GMAC of the decoder's ~1.75 at
1024 px. Because T is small, the same scores and outputs come from folding the few token-side
vectors into the projection weights instead (``q·(W_k x) = (W_kᵀ q)·x``, and ``out_proj``
folded into the token values), so each image-side product is N x C x (heads·T): 8·7 = 56 columns
instead of 128, twice per attention. The key bias of token→image attention drops out exactly
(a constant along the softmax axis); the value bias passes through because softmax rows sum to one.
The image tokens stay channel-first (BxCxN, the embedding's own layout) from the embedding to the
output upscaling, so the graph has no NxC transposes and their layout reorders either; the score
scale 1/sqrt(d) is folded into the few token-side vectors, so no N-sized score tensor is divided.
The layer norms over those channels (the blocks' ``norm4``, the upscaling's ``LayerNorm2d``) take
their means as a product with a constant 1/C row (:func:`channel_mean`): ONNX Runtime's ReduceMean
over a non-last axis cost ~a quarter of its decoder time at 1024 px, a matrix-vector product does
not; OpenVINO's runner turns the product back into its fast ReduceMean
(:func:`slimsam_edge.runtimes.openvino.rewrite.channel_means`).

Per attention the image-side work goes from N·C·I to N·C·heads·T MACs (twice each; I the internal
width), so it pays while heads·T < I (T < 16 for SAM: up to 9 points with the pad point, or 8 with a
box). The exported decoders use it where it at least halves that work for a one-click prompt
(:func:`pays`: SAM's decoder, 56 vs 128, not sam-mini's narrower one, 56 vs 64). Same weights, same
outputs up to float rounding: ``tests/models/test_factored_decoder.py`` checks it against
segment-anything's ``MaskDecoder.predict_masks``.

Example:
    >>> import torch
    >>> from slimsam_edge.models.build import build_sam
    >>> from slimsam_edge.models.spec import PRESETS
    >>> sam = build_sam(PRESETS["sam_mini"]).eval()
    >>> g, c = torch.Generator().manual_seed(0), sam.prompt_encoder.embed_dim
    >>> emb = torch.randn(1, c, 16, 16, generator=g)
    >>> sparse, dense = torch.randn(2, 3, c, generator=g), torch.randn(2, c, 16, 16, generator=g)
    >>> pe = sam.prompt_encoder.get_dense_pe()
    >>> with torch.no_grad():
    ...     fast = predict_masks(sam.mask_decoder, emb, pe, sparse, dense)
    ...     plain = sam.mask_decoder.predict_masks(emb, pe, sparse, dense)
    >>> [bool(torch.allclose(a, b, atol=1e-4)) for a, b in zip(fast, plain)]
    [True, True]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _width(attn: nn.Module) -> tuple[int, int]:
    """(heads, channels per head) of a segment-anything ``Attention``."""
    heads = int(attn.num_heads)
    return heads, int(attn.q_proj.out_features) // heads


#: prompt tokens of one click: the IoU token, 4 mask tokens, the point and the pad point
ONE_CLICK_TOKENS = 7


def pays(decoder: nn.Module) -> bool:
    """Whether the factored decoder does at most half the image-side attention work of segment-anything's
    for a one-click prompt (heads x :data:`ONE_CLICK_TOKENS` <= half the attention's internal width).

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> [pays(build_sam(PRESETS[k]).mask_decoder) for k in ("vit_p77", "sam_mini")]
        [True, False]
    """
    heads, d = _width(decoder.transformer.layers[0].cross_attn_token_to_image)
    return 2 * heads * ONE_CLICK_TOKENS <= heads * d


def _token_heads(proj: nn.Linear, tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """``proj(tokens)`` (BxTxC) split into heads: BxhxTxd."""
    b, t, _ = tokens.shape
    return proj(tokens).reshape(b, t, heads, -1).transpose(1, 2)


def token_to_image(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q=q, k=k, v=v)`` (BxTxC) for T tokens ``q`` (BxTxC) attending to N image tokens ``k``, ``v``
    given channel-first (BxCxN or 1xCxN), without projecting the N image tokens: the token queries
    are folded into ``k_proj``'s weight and the attention-weighted image tokens are projected by
    ``v_proj`` afterwards.

    Example:
        >>> from segment_anything.modeling.transformer import Attention
        >>> a = Attention(32, 4, downsample_rate=2).eval()
        >>> q, k, v = torch.randn(2, 5, 32), torch.randn(2, 64, 32), torch.randn(2, 64, 32)
        >>> fast = token_to_image(a, q, k.transpose(1, 2), v.transpose(1, 2))
        >>> bool(torch.allclose(fast, a(q=q, k=k, v=v), atol=1e-5))
        True
    """
    heads, d = _width(attn)
    (b, t, _), c = q.shape, k.shape[1]
    qh = _token_heads(attn.q_proj, q, heads) * (1.0 / math.sqrt(d))  # B x h x T x d, the score scale folded in
    folded = (qh @ attn.k_proj.weight.reshape(heads, d, c)).reshape(b, heads * t, c)  # k bias: softmax-invariant
    probs = torch.softmax(folded @ k, dim=-1)  # B x hT x N
    mixed = (probs @ v.transpose(1, 2)).reshape(b, heads, t, c)  # attention-weighted image tokens, per head
    out = mixed @ attn.v_proj.weight.reshape(heads, d, c).transpose(1, 2)  # B x h x T x d
    out = out + attn.v_proj.bias.reshape(heads, 1, d)  # rows of probs sum to one
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, heads * d))


def image_to_token(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q=q, k=k, v=v)`` for N image tokens ``q`` given channel-first (BxCxN) attending to T tokens
    ``k``, ``v`` (BxTxC), returned channel-first (BxCxN), without projecting the N image tokens: the
    token keys are folded into ``q_proj``'s weight and the token values into ``out_proj``'s.

    Example:
        >>> from segment_anything.modeling.transformer import Attention
        >>> a = Attention(32, 4, downsample_rate=2).eval()
        >>> q, k, v = torch.randn(2, 64, 32), torch.randn(2, 5, 32), torch.randn(2, 5, 32)
        >>> fast = image_to_token(a, q.transpose(1, 2), k, v).transpose(1, 2)
        >>> bool(torch.allclose(fast, a(q=q, k=k, v=v), atol=1e-5))
        True
    """
    heads, d = _width(attn)
    (b, t, _), c = k.shape, q.shape[1]
    kh, vh = _token_heads(attn.k_proj, k, heads), _token_heads(attn.v_proj, v, heads)  # B x h x T x d
    kh = kh * (1.0 / math.sqrt(d))  # the score scale, folded into the T token keys instead of the N scores
    folded = (kh @ attn.q_proj.weight.reshape(heads, d, c)).reshape(b, heads * t, c)
    bias = (kh @ attn.q_proj.bias.reshape(heads, d, 1)).reshape(b, heads * t, 1)
    scores = (folded @ q + bias).reshape(b, heads, t, -1)  # B x h x T x N
    probs = torch.softmax(scores, dim=2).reshape(b, heads * t, -1)  # over each head's T tokens
    values = (vh @ attn.out_proj.weight.reshape(c, heads, d).permute(1, 2, 0)).reshape(b, heads * t, c)
    return values.transpose(1, 2) @ probs + attn.out_proj.bias.reshape(c, 1)  # token values through out_proj


def channel_mean(x: torch.Tensor, channels: int) -> torch.Tensor:
    """The mean over axis 1 of channel-first ``x`` (BxCxN or BxCxHxW, C = ``channels``), keeping the
    axis, as a product with a constant 1/C row: a MatMul for BxCxN, a one-output 1x1 convolution for
    BxCxHxW (so the map keeps its 4-D shape).

    Example:
        >>> x = torch.randn(2, 6, 5)
        >>> bool(torch.allclose(channel_mean(x, 6), x.mean(1, keepdim=True), atol=1e-6))
        True
        >>> y = torch.randn(2, 6, 4, 3)
        >>> bool(torch.allclose(channel_mean(y, 6), y.mean(1, keepdim=True), atol=1e-6))
        True
    """
    if x.dim() == 3:
        return torch.full((1, channels), 1.0 / channels, dtype=x.dtype) @ x
    return F.conv2d(x, torch.full((1, channels, 1, 1), 1.0 / channels, dtype=x.dtype))


def layer_norm_channels(norm: nn.Module, x: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """``norm`` (a LayerNorm over C, or segment-anything's ``LayerNorm2d`` over ``channels``) applied
    to channel-first ``x`` (BxCxN or BxCxHxW).

    Example:
        >>> ln = nn.LayerNorm(8)
        >>> x = torch.randn(2, 8, 5)
        >>> bool(torch.allclose(layer_norm_channels(ln, x), ln(x.transpose(1, 2)).transpose(1, 2), atol=1e-5))
        True
        >>> from segment_anything.modeling.common import LayerNorm2d
        >>> ln2d, y = LayerNorm2d(8), torch.randn(2, 8, 4, 3)
        >>> bool(torch.allclose(layer_norm_channels(ln2d, y, 8), ln2d(y), atol=1e-5))
        True
    """
    c = channels or norm.normalized_shape[0]  # a Python int, not a traced shape: the averaging row is a constant
    centred = x - channel_mean(x, c)
    var = channel_mean(centred * centred, c)
    shape = (-1,) + (1,) * (x.dim() - 2)
    # one reciprocal square root per token and products over the N x C values (no N x C divide)
    return centred * torch.rsqrt(var + norm.eps) * norm.weight.reshape(shape) + norm.bias.reshape(shape)


def upscale(upscaling: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """segment-anything's ``output_upscaling`` on ``x`` (BxCxHxW), its channel layer norms through
    :func:`layer_norm_channels`."""
    from segment_anything.modeling.common import LayerNorm2d

    channels = None
    for layer in upscaling:
        x = layer_norm_channels(layer, x, channels) if isinstance(layer, LayerNorm2d) else layer(x)
        channels = getattr(layer, "out_channels", channels)  # LayerNorm2d keeps no size of its own
    return x


def two_way(transformer: nn.Module, image_embedding: torch.Tensor, image_pe: torch.Tensor,
            point_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``TwoWayTransformer.forward`` with the factored image-side attentions:
    ``(queries BxTxC, keys BxCxN)`` — the keys channel-first. ``image_pe`` may be 1xCxHxW for any batch."""
    keys = image_embedding.flatten(2)
    key_pe = image_pe.flatten(2)
    queries = point_embedding
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + point_embedding
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        k = keys + key_pe
        queries = layer.norm2(queries + token_to_image(layer.cross_attn_token_to_image,
                                                       queries + point_embedding, k, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer_norm_channels(layer.norm4, keys + image_to_token(layer.cross_attn_image_to_token, k,
                                                                      queries + point_embedding, queries))
    out = token_to_image(transformer.final_attn_token_to_image, queries + point_embedding, keys + key_pe, keys)
    return transformer.norm_final_attn(queries + out), keys


def predict_masks(decoder: nn.Module, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                  sparse_prompt_embeddings: torch.Tensor,
                  dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``MaskDecoder.predict_masks`` (every mask token: ``(masks BxKxHxW, iou BxK)``)
    through :func:`two_way`; one image embedding (1xCxHxW) serves the B prompts by broadcasting."""
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1),
                        sparse_prompt_embeddings), dim=1)
    src = image_embeddings + dense_prompt_embeddings
    b, c, h, w = src.shape
    hs, keys = two_way(decoder.transformer, src, image_pe, tokens)
    upscaled = upscale(decoder.output_upscaling, keys.reshape(b, c, h, w))
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    return masks, decoder.iou_prediction_head(hs[:, 0, :])
