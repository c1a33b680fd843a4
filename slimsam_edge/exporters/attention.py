"""Export-only, mathematically equivalent formulations of the encoder's global attention.

The global-attention blocks of SAM's ViT materialise a ``heads x N x N`` score tensor (N = 4096
tokens at 1024 px) plus the decomposed relative-position bias; on CPUs they dominate encoder
time. Each entry of :data:`ATTENTION_VARIANTS` rewrites those blocks of a *copy* of an encoder
(:class:`~slimsam_edge.models.encoder.FlexImageEncoderViT`) into another formulation of the same
function (equal up to float rounding); the original model is never changed. Windowed blocks are
left alone. Variants:

- ``plain``: the encoder as it is (identity copy).
- ``pad16``: every head zero-padded to a multiple of 16 channels (zero q/k columns add nothing to
  the scores; zero v columns produce outputs that zero ``proj`` columns drop).
- ``headmajor``: q/k/v projected straight into head-major layout (k already transposed), the
  softmax scale folded into the q weights: no transposes of q, k or v.
- ``sdpa``: ``F.scaled_dot_product_attention`` with the relative-position bias as a float mask.
- ``rows1`` / ``rows8``: queries in blocks of 1 or 8 token rows, so that each block's scores stay
  in the last-level cache through matmul, bias, softmax and matmul (:class:`ChunkedAttention`).
- ``ort_mha`` / ``ort_mha_pad16``: ONNX Runtime's fused ``com.microsoft.MultiHeadAttention`` with
  the bias as its ``attention_bias`` input (ONNX Runtime only; run :func:`finalize_onnx` on the
  exported graph, which :func:`export_variant_onnx` does).

Example:
    >>> import torch
    >>> from slimsam_edge.models.encoder import FlexImageEncoderViT
    >>> from slimsam_edge.models.spec import EncoderSpec
    >>> spec = EncoderSpec(img_size=64, patch_size=16, embed_dim=48, num_heads=4, window_size=2,
    ...                    global_attn_indexes=(1,), qkv_dims=(48, 48), mlp_dims=(96, 96), out_chans=32)
    >>> enc = FlexImageEncoderViT(spec).eval()
    >>> padded = get_variant("pad16").apply(enc)
    >>> x = torch.randn(1, 3, 64, 64)
    >>> bool((padded(x) - enc(x)).abs().max() < 1e-4)
    True
    >>> get_variant("flash")
    Traceback (most recent call last):
    ...
    slimsam_edge.errors.UsageError: unknown attention variant 'flash'; choose one of: plain, pad16, headmajor, sdpa, rows1, rows8, ort_mha, ort_mha_pad16
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExportError, UsageError
from ..fsutil import atomic_path
from ..models.encoder import Attention, rel_positions

ORT_DOMAIN = "com.microsoft"


# --------------------------------------------------------------------------------------------
# Replacement modules
# --------------------------------------------------------------------------------------------


def _rel_bias(q: torch.Tensor, rh: torch.Tensor, rw: torch.Tensor, hw: tuple[int, int]):
    """Decomposed rel-pos terms of head-major ``q`` (B*heads, N, c): (bias_h, bias_w), 4-D each."""
    H, W = hw
    r_q = q.reshape(q.shape[0], H, W, q.shape[-1])
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_positions(H, rh))
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_positions(W, rw))
    return bias_h, bias_w


def padded_attention(attn: Attention, multiple: int = 16) -> Attention:
    """Return a copy of ``attn`` whose heads are zero-padded to a multiple of ``multiple``.

    Padded q/k channels are zero, so the scores and the relative-position bias are unchanged;
    padded v channels give output channels that zero columns of ``proj`` discard. The softmax
    scale keeps the original head width.
    """
    heads, hd = attn.num_heads, attn.head_dim
    hp = -(-hd // multiple) * multiple
    if hp == hd:
        return copy.deepcopy(attn)
    dim = attn.qkv.in_features
    size = (attn.rel_pos_h.shape[0] + 1) // 2 if attn.use_rel_pos else 1
    new = Attention(dim, heads, heads * hp, size, attn.use_rel_pos)
    new.scale = attn.scale
    with torch.no_grad():
        w = torch.zeros(3, heads, hp, dim)
        w[:, :, :hd] = attn.qkv.weight.view(3, heads, hd, dim)
        b = torch.zeros(3, heads, hp)
        b[:, :, :hd] = attn.qkv.bias.view(3, heads, hd)
        new.qkv.weight.copy_(w.reshape(3 * heads * hp, dim))
        new.qkv.bias.copy_(b.reshape(-1))
        pw = torch.zeros(dim, heads, hp)
        pw[:, :, :hd] = attn.proj.weight.view(dim, heads, hd)
        new.proj.weight.copy_(pw.reshape(dim, heads * hp))
        new.proj.bias.copy_(attn.proj.bias)
        if attn.use_rel_pos:
            for name in ("rel_pos_h", "rel_pos_w"):
                t = torch.zeros(getattr(attn, name).shape[0], hp)
                t[:, :hd] = getattr(attn, name)
                getattr(new, name).copy_(t)
    return new.to(attn.qkv.weight.dtype).eval()


class HeadMajorAttention(nn.Module):
    """Global attention with q/k/v projected directly into head-major layout (export only).

    ``q = x @ Wq[h] * scale`` is (heads, N, d), ``k^T = Wk[h] @ x^T`` is (heads, d, N): the
    score matmul needs no transposed copy of q, k or v. The relative-position tables are divided
    by the scale, so the bias computed from the scaled q is the original one.
    """

    def __init__(self, attn: Attention):
        super().__init__()
        heads, hd = attn.num_heads, attn.head_dim
        dim = attn.qkv.in_features
        self.num_heads, self.head_dim, self.use_rel_pos = heads, hd, attn.use_rel_pos
        with torch.no_grad():
            w = attn.qkv.weight.detach().view(3, heads, hd, dim)
            b = attn.qkv.bias.detach().view(3, heads, hd)
            s = attn.scale
            self.wq = nn.Parameter((w[0] * s).transpose(1, 2).contiguous())  # heads, C, d
            self.bq = nn.Parameter((b[0] * s)[:, None, :].contiguous())  # heads, 1, d
            self.wk = nn.Parameter(w[1].contiguous())  # heads, d, C
            self.bk = nn.Parameter(b[1][:, :, None].contiguous())  # heads, d, 1
            self.wv = nn.Parameter(w[2].transpose(1, 2).contiguous())  # heads, C, d
            self.bv = nn.Parameter(b[2][:, None, :].contiguous())
            self.proj = copy.deepcopy(attn.proj)
            if self.use_rel_pos:
                self.rel_pos_h = nn.Parameter(attn.rel_pos_h.detach() / s)
                self.rel_pos_w = nn.Parameter(attn.rel_pos_w.detach() / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        n = H * W
        xf = x.reshape(B, 1, n, C)
        q = (xf @ self.wq + self.bq).reshape(B * self.num_heads, n, self.head_dim)
        kt = (self.wk @ xf.transpose(-2, -1) + self.bk).reshape(B * self.num_heads, self.head_dim, n)
        v = (xf @ self.wv + self.bv).reshape(B * self.num_heads, n, self.head_dim)
        attn = q @ kt
        if self.use_rel_pos:
            bh, bw = _rel_bias(q, self.rel_pos_h, self.rel_pos_w, (H, W))
            attn = (attn.view(-1, H, W, H, W) + bh[..., None] + bw[..., None, :]).view(-1, n, n)
        out = (attn.softmax(dim=-1) @ v).view(B, self.num_heads, H, W, self.head_dim)
        return self.proj(out.permute(0, 2, 3, 1, 4).reshape(B, H, W, -1))


class _WrapsAttention(nn.Module):
    """A replacement that computes with a private copy of the original :class:`Attention`."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.inner = copy.deepcopy(attn)


class SdpaAttention(_WrapsAttention):
    """Global attention as ``scaled_dot_product_attention`` with the bias as a float mask.

    Example:
        >>> SdpaAttention(Attention(48, 4, 48, 4))(torch.zeros(1, 4, 4, 48)).shape
        torch.Size([1, 4, 4, 48])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.inner
        B, H, W, _ = x.shape
        n = H * W
        qkv = a.qkv(x).reshape(B, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B, heads, n, d
        mask = None
        if a.use_rel_pos:
            bh, bw = _rel_bias(q.reshape(B * a.num_heads, n, -1), a.rel_pos_h, a.rel_pos_w, (H, W))
            mask = (bh[..., None] + bw[..., None, :]).reshape(B, a.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=a.scale)
        return a.proj(out.permute(0, 2, 1, 3).reshape(B, H, W, -1))


class ChunkedAttention(_WrapsAttention):
    """Global attention computed over blocks of query rows, each block's scores cache-sized.

    The plain block writes and re-reads a ``heads x N x N`` score tensor (805 MB at 1024 px for
    SlimSAM-77) several times: matmul, bias add, softmax, matmul. Here the queries are split into
    blocks of ``rows`` token-grid rows, so each block's scores (``heads x rows*W x N``) stay in
    the CPU's last-level cache between those steps; the relative-position terms are computed once
    for all queries (they are small) and sliced per block. The export unrolls the blocks.

    Example:
        >>> a = Attention(48, 4, 48, 4).eval()
        >>> x = torch.randn(1, 4, 4, 48)
        >>> bool((ChunkedAttention(a, rows=1)(x) - a(x)).abs().max() < 1e-5)
        True
    """

    def __init__(self, attn: Attention, rows: int = 1):
        super().__init__(attn)
        if rows < 1:
            raise UsageError(f"rows per query block must be >= 1, got {rows}")
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.inner
        B, H, W, _ = x.shape
        n, bh = H * W, B * a.num_heads
        qkv = a.qkv(x).reshape(B, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, bh, n, a.head_dim).unbind(0)
        kt = k.transpose(-2, -1)
        qs = (q * a.scale).reshape(bh, H, W, a.head_dim)
        if a.use_rel_pos:
            bias_h, bias_w = _rel_bias(q, a.rel_pos_h, a.rel_pos_w, (H, W))
        outs = []
        for i in range(0, H, self.rows):
            r = min(self.rows, H - i)
            s = qs[:, i : i + r].reshape(bh, r * W, a.head_dim) @ kt
            if a.use_rel_pos:
                s = (s.view(bh, r, W, H, W) + bias_h[:, i : i + r, :, :, None]
                     + bias_w[:, i : i + r, :, None, :]).view(bh, r * W, n)
            outs.append(s.softmax(dim=-1) @ v)
        out = torch.cat(outs, dim=1).view(B, a.num_heads, H, W, a.head_dim)
        return a.proj(out.permute(0, 2, 3, 1, 4).reshape(B, H, W, -1))


class _OrtMha(torch.autograd.Function):
    """Reference attention in torch; exports as ``com.microsoft.MultiHeadAttention``."""

    @staticmethod
    def forward(ctx, q, k, v, bias, num_heads: int, scale: float):
        B, n, D = q.shape
        d = D // num_heads
        split = lambda t: t.view(B, n, num_heads, d).transpose(1, 2)  # noqa: E731
        scores = (split(q) * scale) @ split(k).transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
        return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(B, n, D)

    @staticmethod
    def symbolic(g, q, k, v, bias, num_heads: int, scale: float):
        # Optional inputs 3 (qkv bias) and 4 (key padding mask) must be omitted; the TorchScript
        # exporter cannot write empty input names, so empty constants mark them for finalize_onnx.
        hole = g.op("Constant", value_t=torch.zeros(0))
        inputs = [q, k, v, hole, hole] + ([bias] if bias is not None else [])
        out = g.op(f"{ORT_DOMAIN}::MultiHeadAttention", *inputs, num_heads_i=num_heads, scale_f=scale)
        out.setType(q.type())
        return out


class OrtMhaAttention(_WrapsAttention):
    """Global attention through ONNX Runtime's fused MultiHeadAttention (export only).

    q, k, v stay in (B, N, hidden) layout straight from the qkv projection; the decomposed
    relative-position bias is materialised as the op's ``attention_bias`` (B, heads, N, N).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.inner
        B, H, W, _ = x.shape
        n = H * W
        D = a.num_heads * a.head_dim
        qkv = a.qkv(x).reshape(B, n, 3 * D)
        q, k, v = qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]
        bias = None
        if a.use_rel_pos:
            q4 = q.reshape(B, H, W, a.num_heads, a.head_dim)
            bh = torch.einsum("bhwnc,hkc->bnhwk", q4, rel_positions(H, a.rel_pos_h))
            bw = torch.einsum("bhwnc,wkc->bnhwk", q4, rel_positions(W, a.rel_pos_w))
            bias = (bh[..., None] + bw[..., None, :]).reshape(B, a.num_heads, n, n)
        out = _OrtMha.apply(q, k, v, bias, a.num_heads, float(a.scale))
        return a.proj(out.reshape(B, H, W, D))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionVariant:
    """One formulation of the global-attention blocks.

    Attributes:
        name: registry key.
        help: one line for listings.
        replace: maps an :class:`Attention` to its export-only replacement.
        runtimes: runtimes that can run the exported graph.
        needs_finalize: the exported ONNX graph must go through :func:`finalize_onnx`.
    """

    name: str
    help: str
    replace: Callable[[Attention], nn.Module]
    runtimes: tuple[str, ...] = ("onnxruntime", "openvino")
    needs_finalize: bool = False

    def apply(self, encoder: nn.Module) -> nn.Module:
        """Return an ``eval()`` copy of ``encoder`` with every global block's attention replaced."""
        if not hasattr(encoder, "blocks"):
            raise UsageError(f"attention variant {self.name!r} needs a ViT image encoder with .blocks")
        enc = copy.deepcopy(encoder).eval()
        for blk in enc.blocks:
            if getattr(blk, "window_size", 1) == 0 and isinstance(blk.attn, Attention):
                blk.attn = self.replace(blk.attn)
        return enc


ATTENTION_VARIANTS: dict[str, AttentionVariant] = {
    v.name: v
    for v in (
        AttentionVariant("plain", "the encoder unchanged", copy.deepcopy),
        AttentionVariant("pad16", "heads zero-padded to 16 channels", padded_attention),
        AttentionVariant("headmajor", "q/k/v projected head-major, no transposes", HeadMajorAttention),
        AttentionVariant("sdpa", "scaled_dot_product_attention with a float bias mask", SdpaAttention),
        *(AttentionVariant(f"rows{r}", f"queries in blocks of {r} token rows (cache-sized scores)",
                           lambda a, r=r: ChunkedAttention(a, rows=r)) for r in (1, 8)),
        AttentionVariant(
            "ort_mha", "ONNX Runtime com.microsoft.MultiHeadAttention with attention_bias",
            OrtMhaAttention, runtimes=("onnxruntime",), needs_finalize=True,
        ),
        AttentionVariant(
            "ort_mha_pad16", "ort_mha with heads zero-padded to 16 channels",
            lambda a: OrtMhaAttention(padded_attention(a)), runtimes=("onnxruntime",),
            needs_finalize=True,
        ),
    )
}


def with_attention(sam: nn.Module, name: str, backends: tuple[str, ...]) -> tuple[nn.Module, list[str]]:
    """A shallow copy of ``sam`` whose image encoder uses variant ``name`` (``sam`` is unchanged),
    and the manifest notes; ``plain`` returns ``sam`` itself.

    Refuses (UsageError) a variant a listed backend cannot run: the ``ort_mha`` family runs on
    ONNX Runtime alone (``--target onnx``); its graphs get :func:`finalize_onnx` in
    :func:`~slimsam_edge.exporters.onnx_export.export_onnx`, before simplification.

    Example:
        >>> same, notes = with_attention(torch.nn.Module(), "plain", ("onnxruntime",))
        >>> notes
        []
    """
    variant = get_variant(name)
    if variant.name == "plain":
        return sam, []
    unsupported = [b for b in backends if b not in variant.runtimes]
    if unsupported:
        only_ort = variant.runtimes == ("onnxruntime",)
        raise UsageError(f"attention variant {name!r} runs on {', '.join(variant.runtimes)} only, not "
                         f"{', '.join(unsupported)}; pick another variant or "
                         f"{'--target onnx' if only_ort else 'another target'}")
    twin = copy.copy(sam)
    twin._modules = dict(sam._modules)  # new submodule table: the original keeps its encoder
    twin.image_encoder = variant.apply(sam.image_encoder)
    return twin, [f"image_encoder exported with attention variant {name} ({variant.help}); validated "
                  "against the plain PyTorch model"]


def get_variant(name: str) -> AttentionVariant:
    """Return the variant called ``name``; raises :class:`UsageError` naming the choices."""
    try:
        return ATTENTION_VARIANTS[name]
    except KeyError:
        raise UsageError(
            f"unknown attention variant {name!r}; choose one of: {', '.join(ATTENTION_VARIANTS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def finalize_onnx(model):
    """Make ``ort_mha`` graphs valid: blank the placeholder optional inputs of MultiHeadAttention.

    Operates in place on an ``onnx.ModelProto`` and returns it: inputs 3 and 4 (qkv bias, key
    padding mask) of every ``com.microsoft.MultiHeadAttention`` node that come from an empty
    ``Constant`` become empty names, and the unused constants are removed. Graphs without such
    nodes are returned unchanged.
    """
    from onnx import numpy_helper

    graph = model.graph
    if not any(n.op_type == "MultiHeadAttention" and n.domain == ORT_DOMAIN for n in graph.node):
        return model
    empty = set()
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            if numpy_helper.to_array(node.attribute[0].t).size == 0:
                empty.add(node.output[0])
    for init in graph.initializer:
        if numpy_helper.to_array(init).size == 0:
            empty.add(init.name)
    for node in graph.node:
        if node.op_type == "MultiHeadAttention" and node.domain == ORT_DOMAIN:
            for i in (3, 4):
                if i < len(node.input) and node.input[i] in empty:
                    node.input[i] = ""
    used = {name for node in graph.node for name in node.input}
    keep = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in empty and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if not (t.name in empty and t.name not in used)]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return model


def export_variant_onnx(
    module: nn.Module, example: tuple[torch.Tensor, ...], out: Path | str, *,
    input_names: list[str], output_names: list[str], opset: int = 17, finalize: bool = True,
):
    """Export ``module`` (a variant's copy, or part of it) to ``out`` atomically; returns the ModelProto.

    Uses the TorchScript exporter (``dynamo=False``, constant folding) as
    :func:`~slimsam_edge.exporters.onnx_export.export_onnx` does, then :func:`finalize_onnx`.
    """
    import onnx

    with atomic_path(out, suffix=".onnx") as tmp:  # a failed export or finalize leaves no file
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, example, str(tmp), input_names=input_names, output_names=output_names,
                    opset_version=opset, dynamo=False, do_constant_folding=True,
                )
        except Exception as err:  # exporter failures are many types; report them as one
            raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}") from err
        model = onnx.load(str(tmp))
        if finalize:
            model = finalize_onnx(model)
            onnx.save(model, str(tmp))
    return model
