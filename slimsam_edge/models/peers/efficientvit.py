"""EfficientViT-SAM-L0's image encoder architecture (512 px input), with random weights.

A **latency reference only**, like :mod:`.tinyvit`: no checkpoint is loaded, so the outputs mean
nothing, but the layer types, widths, depths and MACs are those of the published model
(EfficientViT-L0 backbone + SAM neck, as described in "EfficientViT-SAM: Accelerated Segment
Anything Model Without Accuracy Loss", Zhang et al. 2024, and the mit-han-lab/efficientvit model
zoo). Written from that description; every conv is followed by BatchNorm unless said otherwise,
activations are GELU.

Backbone (EfficientViT-L0: widths 32, 64, 128, 256, 512; depths 1, 1, 1, 4, 4):

* stage 0, img/2, 32 ch: 3x3 stride-2 conv 3->32; 1 residual ResBlock (3x3 conv 32->32, GELU,
  3x3 conv 32->32);
* stage 1, img/4, 64 ch: fused-MBConv 32->64 stride 2 (3x3 conv to 32x16 = 512, GELU, 1x1 to 64),
  no shortcut; 1 residual fused-MBConv (hidden 4 x 64 = 256);
* stage 2, img/8, 128 ch: fused-MBConv 64->128 stride 2 (hidden 1024); 1 residual fused-MBConv
  (hidden 512);
* stage 3, img/16, 256 ch: MBConv 128->256 stride 2 (1x1 to 2048, depthwise 3x3 stride 2, 1x1 to
  256; biases and no norm on the first two, BN on the last); 4 residual MBConv (hidden 1024, same
  norm layout);
* stage 4, img/32, 512 ch: MBConv 256->512 stride 2 (hidden 6144); 4 EfficientViT blocks, each
  a residual LiteMLA (qkv 1x1 conv 512->1536; a 5x5 depthwise + 1x1 grouped (48 groups) conv
  aggregates a second scale; 32 heads of dim 32 (16 per scale); ReLU linear attention
  ``(v|1) @ relu(k)^T @ relu(q)``, normalised by its last row; 1x1 projection 1024->512 + BN)
  then a residual MBConv (hidden 6 x 512 = 3072, biased, BN on the last conv).

SAM neck: stages 4, 3 and 2 each take a 1x1 conv to 256 + BN and a bicubic resize to img/8
(64x64 at 512 px), summed; 4 residual fused-MBConv blocks (256 -> 256 -> 256); a biased 1x1 conv
256->256; LayerNorm2d. Output 1 x 256 x img/8 x img/8: SAM's 64x64 image embedding at 512 px.

Counted at 512 x 512 (:func:`slimsam_edge.models.peers.sam.count_macs`, conv + linear +
attention matmuls): 34.71 G MACs in convs (the 1x1 convs are its linear layers), 0.07 G in the
linear attention's matmuls, 34.77 G in all (published: 35 G); 30,728,224 encoder parameters
(BatchNorm running statistics not counted); with SAM's prompt encoder and mask decoder (6,220 +
4,058,340) 34,792,784 in all, the published 34.8M.
The linear attention here is always the linear form (the published code switches to the
quadratic form when a map has no more pixels than the head dim, which never happens at 512 px).

Example:
    >>> import torch
    >>> enc = build_efficientvit_sam_l0_encoder(seed=0, img_size=64)
    >>> tuple(enc(torch.zeros(1, 3, 64, 64)).shape)
    (1, 256, 8, 8)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..encoder import LayerNorm2d

__all__ = ["EfficientViTSamEncoder", "LiteMLA", "build_efficientvit_sam_l0_encoder"]

#: EfficientViT-L0: channels and blocks per stage (stage 0 = stem)
L0_WIDTHS = (32, 64, 128, 256, 512)
L0_DEPTHS = (1, 1, 1, 4, 4)


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1, *, groups: int = 1, bn: bool = True,
          act: bool = False, bias: bool = False) -> nn.Sequential:
    """Conv2d ("same" padding) [+ BatchNorm2d] [+ GELU]."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def res_block(c: int) -> nn.Module:
    """Two 3x3 convs (GELU between), residual."""
    return Residual(nn.Sequential(_conv(c, c, 3, act=True), _conv(c, c, 3)))


def fused_mbconv(cin: int, cout: int, hidden: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv to ``hidden`` (GELU), 1x1 conv to ``cout``; no shortcut (wrap in :class:`Residual`)."""
    return nn.Sequential(_conv(cin, hidden, 3, stride, act=True), _conv(hidden, cout))


def mbconv(cin: int, cout: int, hidden: int, stride: int = 1) -> nn.Sequential:
    """1x1 expand + depthwise 3x3 (biased, GELU, no norm), 1x1 project + BN; no shortcut."""
    return nn.Sequential(
        _conv(cin, hidden, 1, bn=False, act=True, bias=True),
        _conv(hidden, hidden, 3, stride, groups=hidden, bn=False, act=True, bias=True),
        _conv(hidden, cout),
    )


class LiteMLA(nn.Module):
    """Lite multi-scale ReLU linear attention over a B x C x H x W map.

    q, k, v come from one 1x1 conv (``heads`` x ``dim`` each); a 5x5 depthwise + grouped 1x1 conv
    over them makes a second scale with as many heads; each head computes
    ``relu(q)`` weighted sums of ``v`` with weights ``relu(k)``, normalised (linear in H x W);
    a 1x1 conv + BN projects the concatenated heads back to C.
    """

    def __init__(self, channels: int, dim: int = 32, scale: int = 5, eps: float = 1e-15):
        super().__init__()
        self.dim, self.eps = dim, eps
        heads = channels // dim
        qkv = 3 * heads * dim
        self.qkv = nn.Conv2d(channels, qkv, 1, bias=False)
        self.aggregate = nn.Sequential(
            nn.Conv2d(qkv, qkv, scale, padding=scale // 2, groups=qkv, bias=False),
            nn.Conv2d(qkv, qkv, 1, groups=3 * heads, bias=False),
        )
        self.proj = _conv(2 * heads * dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, self.aggregate(qkv)], dim=1)
        qkv = qkv.reshape(b, -1, 3 * self.dim, h * w)               # B x heads x 3d x N
        q, k, v = qkv.split(self.dim, dim=2)
        q, k = F.relu(q), F.relu(k)
        v = F.pad(v, (0, 0, 0, 1), value=1.0)                        # a row of ones: the normaliser
        out = (v @ k.transpose(-1, -2)) @ q                          # B x heads x (d + 1) x N
        out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return self.proj(out.reshape(b, -1, h, w))


class EfficientViTBlock(nn.Module):
    """Residual :class:`LiteMLA` (context), then a residual MBConv (local, hidden ``expand`` x C)."""

    def __init__(self, channels: int, dim: int = 32, expand: int = 6):
        super().__init__()
        self.context = Residual(LiteMLA(channels, dim))
        self.local = Residual(mbconv(channels, channels, expand * channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local(self.context(x))


class EfficientViTSamEncoder(nn.Module):
    """EfficientViT-SAM's image encoder: 1 x 3 x S x S -> 1 x 256 x S/8 x S/8 (S a multiple of 32).

    Arguments:
        img_size: square input side (512 for EfficientViT-SAM-L0).
        widths / depths: per stage (stage 0 is the stem), EfficientViT-L0's by default.
        head_width / head_depth: the SAM neck's channels and fused-MBConv blocks.
    """

    def __init__(self, img_size: int = 512, widths=L0_WIDTHS, depths=L0_DEPTHS, head_width: int = 256,
                 head_depth: int = 4, out_chans: int = 256, qkv_dim: int = 32):
        super().__init__()
        if img_size <= 0 or img_size % 32:
            raise ValueError(f"img_size must be a positive multiple of 32, got {img_size}")
        self.img_size = img_size
        self.grid = img_size // 8
        w = widths
        stem: list[nn.Module] = [_conv(3, w[0], 3, 2, act=True)]
        stem += [res_block(w[0]) for _ in range(depths[0])]
        stages: list[nn.Module] = [nn.Sequential(*stem)]
        for i in (1, 2):  # fused-MBConv stages; the downsampling block expands 16x its input
            blocks = [fused_mbconv(w[i - 1], w[i], 16 * w[i - 1], stride=2)]
            blocks += [Residual(fused_mbconv(w[i], w[i], 4 * w[i])) for _ in range(depths[i])]
            stages.append(nn.Sequential(*blocks))
        stages.append(nn.Sequential(  # MBConv stage
            mbconv(w[2], w[3], 16 * w[2], stride=2),
            *[Residual(mbconv(w[3], w[3], 4 * w[3])) for _ in range(depths[3])],
        ))
        stages.append(nn.Sequential(  # attention stage; its downsampling MBConv expands 24x
            mbconv(w[3], w[4], 24 * w[3], stride=2),
            *[EfficientViTBlock(w[4], qkv_dim) for _ in range(depths[4])],
        ))
        self.stages = nn.ModuleList(stages)
        # neck inputs: stages 4, 3, 2
        self.lateral = nn.ModuleList(_conv(w[i], head_width) for i in (4, 3, 2))
        self.head = nn.Sequential(*[Residual(fused_mbconv(head_width, head_width, head_width))
                                    for _ in range(head_depth)])
        self.out = nn.Conv2d(head_width, out_chans, 1, bias=True)
        self.norm = LayerNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized image B x 3 x S x S -> embeddings B x 256 x S/8 x S/8."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        size = (self.grid, self.grid)
        y = None
        for lateral, f in zip(self.lateral, (feats[4], feats[3], feats[2])):
            f = lateral(f)
            if tuple(f.shape[-2:]) != size:
                f = F.interpolate(f, size=size, mode="bicubic", align_corners=False)
            y = f if y is None else y + f
        return self.norm(self.out(self.head(y)))


def build_efficientvit_sam_l0_encoder(seed: int = 0, img_size: int = 512) -> EfficientViTSamEncoder:
    """EfficientViT-SAM-L0's encoder architecture with random weights (seeded), in eval mode.

    Latency reference only: no checkpoint is loaded. BatchNorm statistics are drawn near their
    defaults so that no layer is an exact identity.

    Example:
        >>> build_efficientvit_sam_l0_encoder(seed=1, img_size=96).grid
        12
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = EfficientViTSamEncoder(img_size=img_size)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean.device.type != "meta":
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(1.0 + 0.1 * torch.rand(m.running_var.shape, generator=gen))
    return enc.eval()
