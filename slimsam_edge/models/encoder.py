"""ViT image encoder with per-block widths, state-dict compatible with segment-anything.

Parameter names equal those of ``segment_anything.modeling.ImageEncoderViT`` so official SAM,
SlimSAM "uniform" and pruned checkpoints load unchanged; unlike it, every block may have its own
q/k/v width (the heads keep their count and narrow) and MLP hidden width, as structural pruning
leaves them.

Example:
    >>> from slimsam_edge.models.spec import PRESETS
    >>> enc = FlexImageEncoderViT(PRESETS["sam_mini"].encoder)
    >>> import torch; enc(torch.zeros(1, 3, 256, 256)).shape
    torch.Size([1, 128, 16, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import EncoderSpec


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, embed: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # B H W C


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class Attention(nn.Module):
    """Multi-head attention with decomposed relative position bias; q/k/v width ``qkv_dim``."""

    def __init__(self, dim: int, num_heads: int, qkv_dim: int, size: int, use_rel_pos: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = qkv_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * qkv_dim)
        self.proj = nn.Linear(qkv_dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
        #: set by distillation hooks to capture q/k/v features; ``None`` in normal use
        self.capture: dict[str, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        n = H * W
        qkv = self.qkv(x).reshape(B, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, n, self.head_dim).unbind(0)
        if self.capture is not None:
            self.capture["qkv"] = qkv
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (H, W))
        attn = attn.softmax(dim=-1)
        out = (attn @ v).view(B, self.num_heads, H, W, self.head_dim)
        out = out.permute(0, 2, 3, 1, 4).reshape(B, H, W, self.num_heads * self.head_dim)
        return self.proj(out)


def rel_positions(size: int, table: torch.Tensor) -> torch.Tensor:
    """Gather the (size, size, head_dim) relative-position embeddings from a (2*size-1) table."""
    if table.shape[0] != 2 * size - 1:
        raise ValueError(f"relative position table of {table.shape[0]} rows does not fit size {size}")
    coords = torch.arange(size, device=table.device)
    rel = coords[:, None] - coords[None, :] + (size - 1)
    return table[rel]


def add_decomposed_rel_pos(
    attn: torch.Tensor, q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, hw: tuple[int, int]
) -> torch.Tensor:
    """Add MViTv2's decomposed relative position bias to attention scores ``attn``."""
    H, W = hw
    Rh = rel_positions(H, rel_h)
    Rw = rel_positions(W, rel_w)
    B, _, dim = q.shape
    r_q = q.reshape(B, H, W, dim)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    attn = attn.view(B, H, W, H, W) + bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]
    return attn.view(B, H * W, H * W)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    B, H, W, C = x.shape
    pad_h = (window - H % window) % window
    pad_w = (window - W % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C), (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // (Hp * Wp // window // window)
    x = windows.view(B, Hp // window, Wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x


class Block(nn.Module):
    """Transformer block; ``window == 0`` means global attention over the whole grid."""

    def __init__(self, dim: int, num_heads: int, qkv_dim: int, mlp_dim: int, window: int,
                 grid: int, use_rel_pos: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_dim, window if window else grid, use_rel_pos)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.window_size = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class FlexImageEncoderViT(nn.Module):
    """SAM's ViT image encoder built from an :class:`EncoderSpec` (per-block widths allowed)."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.img_size = spec.img_size
        self.patch_embed = PatchEmbed(spec.patch_size, spec.in_chans, spec.embed_dim)
        g = spec.grid
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, spec.embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                spec.embed_dim, spec.num_heads, spec.qkv_dims[i], spec.mlp_dims[i],
                0 if i in spec.global_attn_indexes else spec.window_size, g, spec.use_rel_pos,
            )
            for i in range(spec.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(spec.embed_dim, spec.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(spec.out_chans),
            nn.Conv2d(spec.out_chans, spec.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(spec.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
