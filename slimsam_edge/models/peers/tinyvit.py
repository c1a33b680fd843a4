"""MobileSAM's image encoder architecture (TinyViT-5M at 1024x1024), with random weights.

A **latency reference only**: it lets issue 5 time MobileSAM's encoder next to ours on the same
machine. The weights are random (seeded); no MobileSAM checkpoint is loaded, so its outputs mean
nothing, but its shapes, layer types and FLOPs are those of MobileSAM's encoder:

* patch embed: two 3x3 stride-2 conv+BN (GELU between) -> 64 ch at img/4;
* stage 0 (dim 64): 2 MBConv blocks; patch merging to 128 (stride 2);
* stage 1 (dim 128, img/8): 2 TinyViT blocks, 4 heads, window 7; patch merging to 160 (stride 2);
* stage 2 (dim 160, img/16): 6 blocks, 5 heads, window 14; patch merging to 320 with **stride 1**;
* stage 3 (dim 320, img/16): 2 blocks, 10 heads, window 7;
* neck: 1x1 conv 320->256, LayerNorm2d, 3x3 conv 256->256, LayerNorm2d -> 256 x img/16 x img/16.

TinyViT's classification head (``norm_head``/``head``, unused by SAM) is left out: 5,743,892
parameters (9,808,452 with SAM's prompt encoder and mask decoder; the MobileSAM paper gives 5.78M +
3.876M). Counted at 1024 x 1024 (:func:`slimsam_edge.models.peers.sam.count_macs`, windows'
zero padding included): 36.17 G MACs in convs and linear layers, 2.60 G in the attention
matmuls, 38.77 G in all.

Example:
    >>> import torch
    >>> enc = build_mobilesam_encoder(seed=0, img_size=128)
    >>> tuple(enc(torch.zeros(1, 3, 128, 128)).shape)
    (1, 256, 8, 8)
    >>> 5_000_000 < count_parameters(build_mobilesam_encoder()) < 6_000_000
    True
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..encoder import LayerNorm2d

__all__ = ["TinyViTEncoder", "build_mobilesam_encoder", "count_parameters"]


class ConvBN(nn.Sequential):
    """Conv2d (no bias) followed by BatchNorm2d."""

    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(cout)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two 3x3 stride-2 ConvBN with GELU between: 3 x H x W -> dim x H/4 x W/4."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, dim // 2, 3, 2, 1), nn.GELU(), ConvBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise 3x3, 1x1 project (BN weight 0), residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden, 1)
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = ConvBN(hidden, dim, 1, bn_weight_init=0.0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        return self.act(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1x1 ConvBN, GELU, depthwise 3x3 ConvBN (stride 1 or 2), GELU, 1x1 ConvBN; NCHW in and out."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class WindowAttention(nn.Module):
    """Multi-head attention over one window of tokens (B' x N x C), with TinyViT's layout:
    LayerNorm on the input, one qkv Linear (per head: q, k, v of ``key_dim`` each), a learned bias
    per head indexed by the |dy|, |dx| offset of each token pair, softmax, proj Linear.
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim ** -0.5
        inner = self.key_dim * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p in points:
            for q in points:
                off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        n = len(points)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(n, n),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        qkv = self.qkv(x).view(b, n, self.num_heads, 3 * self.key_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn + self.attention_biases[:, self.attention_bias_idxs]
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.key_dim)
        return self.proj(out)


class TinyViTBlock(nn.Module):
    """Windowed attention (zero padding to a multiple of the window, no mask) + residual, depthwise
    3x3 ConvBN ("local conv"), MLP (LayerNorm, Linear x4, GELU, Linear) + residual.

    Works on B x H x W x C maps; H and W are fixed at construction (static shapes for export).
    """

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.res = resolution
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, 3, 1, 1, groups=dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape[0], self.res, self.res, x.shape[3]
        ws = self.window
        if h == ws and w == ws:
            return self.attn(x.reshape(b, h * w, c)).view(b, h, w, c)
        pad = (ws - h % ws) % ws
        if pad:
            x = F.pad(x, (0, 0, 0, pad, 0, pad))
        hp, wp = h + pad, w + pad
        nh, nw = hp // ws, wp // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, hp, wp, c)
        if pad:
            x = x[:, :h, :w].contiguous()
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class TinyViTEncoder(nn.Module):
    """MobileSAM's image encoder (TinyViT-5M, 1024 input): 1 x 3 x S x S -> 1 x 256 x S/16 x S/16.

    Arguments:
        img_size: square input side, a multiple of 16 (default 1024, MobileSAM's).
        embed_dims: channels of the four stages.
        depths: blocks per stage (stage 0 is MBConv, the others TinyViT blocks).
        num_heads: attention heads of stages 1-3 (index 0 unused).
        window_sizes: attention windows of stages 1-3 (index 0 unused).
        out_chans: channels of the neck's output.

    The input size is fixed at construction (window padding is computed from it), so the
    module, like its ONNX export, only takes ``img_size`` x ``img_size`` inputs.
    """

    def __init__(self, img_size: int = 1024, in_chans: int = 3, embed_dims=(64, 128, 160, 320),
                 depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0, out_chans: int = 256):
        super().__init__()
        if img_size % 16 or img_size <= 0:
            raise ValueError(f"img_size must be a positive multiple of 16, got {img_size}")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        res = img_size // 4
        self.stage0 = nn.Sequential(*[MBConv(embed_dims[0], mbconv_expand_ratio) for _ in range(depths[0])])
        self.merges = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i in range(1, len(embed_dims)):
            # MobileSAM keeps img/16 for the last stage: its merging to 320 channels has stride 1
            stride = 1 if i == len(embed_dims) - 1 else 2
            self.merges.append(PatchMerging(embed_dims[i - 1], embed_dims[i], stride))
            res //= stride
            self.stages.append(nn.Sequential(*[
                TinyViTBlock(embed_dims[i], res, num_heads[i], window_sizes[i], mlp_ratio)
                for _ in range(depths[i])
            ]))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False), LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans),
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized image B x 3 x S x S -> embeddings B x 256 x S/16 x S/16."""
        x = self.stage0(self.patch_embed(x))
        for merge, stage in zip(self.merges, self.stages):
            x = merge(x)                                  # NCHW
            x = stage(x.permute(0, 2, 3, 1))              # NHWC through the blocks
            x = x.permute(0, 3, 1, 2)
        return self.neck(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_mobilesam_encoder(seed: int = 0, img_size: int = 1024) -> TinyViTEncoder:
    """MobileSAM's encoder architecture with random weights (seeded), in eval mode.

    Latency reference only: no checkpoint is loaded. The attention bias tables are drawn small and
    random (they start at zero in TinyViT) so that every layer carries a non-trivial value.

    Example:
        >>> enc = build_mobilesam_encoder(seed=1, img_size=64)
        >>> enc.training, enc.img_size
        (False, 64)
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = TinyViTEncoder(img_size=img_size)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.endswith("attention_biases"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return enc.eval()


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (buffers such as BN statistics excluded).

    Example:
        >>> count_parameters(nn.Linear(2, 3))
        9
    """
    return sum(p.numel() for p in module.parameters())
