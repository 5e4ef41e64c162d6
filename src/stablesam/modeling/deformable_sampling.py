"""Deformable Sampling Plugin (DSP): learned offsets move where image features are read."""

from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..precision import autocast_enabled


def is_tracing() -> bool:
    """True while torch.jit / torch.onnx trace the model: the plugins then use plain,
    out-of-place ops (no chunking, caches or in-place kernels) that export to standard ONNX."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class LowRankProjection(nn.Module):
    """x -> x + up(down(x)): a 1x1 conv C -> C of the form I + U V^T with rank r (down: C -> r,
    up: r -> C, zero at init, so the projection starts as the identity); 2rC instead of C^2
    multiply-adds per cell."""

    def __init__(self, embed_dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(embed_dim, rank)
        self.up = nn.Linear(rank, embed_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x))


class DeformableSamplingPlugin(nn.Module):
    """x_p -> (x*_{p+Δp}, Δp).

    x*_p = Conv1x1(x_p); Δp = range * tanh(Conv1x1(GELU(LN(DWConv(x*_p))))), in grid cells;
    x*_{p+Δp} is x*_p sampled bilinearly at p + Δp. Initialised as the identity: the first
    1x1 conv is the identity matrix and the offset conv is zero, so x*_{p+Δp} = x_p.

    Options (the constructor's defaults are the paper's plugin; `PluginConfig`'s defaults turn on
    `projection_rank` and `offset_width` 32): `projection=False` drops the 1x1 conv (x*_p = x_p);
    `projection_rank` r > 0 makes it identity + rank r (`LowRankProjection`); `offset_width`
    r > 0 runs the offset net on r channels (a 1x1 conv C -> r first: DWConv, LN and GELU then
    touch r instead of C channels per cell); `amplitude` adds a per-cell modulation m_p = 2 sigmoid(z_p) from
    one more output channel of the offset conv (the paper's "locations and amplitudes"; m = 1
    at init), multiplying the sampled features; `groups` G > 1 splits the channels into G groups
    that each read at their own offset (deformable convolution's offset groups; 8 groups of 32
    channels play the part of per-head offsets), and forward returns offsets (B, h, w, G, 2).

    Features travel in the decoder's token layout (B, H*W, C) throughout; viewed as
    (B, C, H, W) that layout is channels-last, so no layout copies are needed around the
    1x1 convs (plain matmuls) or the depth-wise conv.
    """

    def __init__(self, embed_dim: int = 256, kernel_size: int = 5, offset_range: float = 4.0,
                 amplitude: bool = False, groups: int = 1, projection: bool = True, offset_width: int = 0,
                 projection_rank: int = 0):
        super().__init__()
        if groups < 1 or embed_dim % groups:
            raise ValueError(f"offset groups must divide the width {embed_dim}, got {groups}")
        self.offset_range = float(offset_range)
        self.amplitude, self.groups = amplitude, groups
        # the 1x1 conv producing x*_p (projection=False: x*_p = x_p)
        if not projection:
            self.proj = nn.Identity()
        elif projection_rank:
            self.proj = LowRankProjection(embed_dim, projection_rank)
        else:
            self.proj = nn.Linear(embed_dim, embed_dim)
        width = offset_width or embed_dim
        self.reduce = nn.Linear(embed_dim, width) if offset_width else nn.Identity()
        self.dwconv = nn.Conv2d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
        self.norm = nn.LayerNorm(width)
        self.offset = nn.Linear(width, groups * (3 if amplitude else 2))  # the 1x1 conv to (Δx, Δy[, z]) per group
        self._grids: Dict[Tuple, torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if isinstance(self.proj, nn.Linear):
            nn.init.eye_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def cell_grid(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(x, y) index of every cell, (h, w, 2), cached per size/device/dtype."""
        key = (h, w, device, dtype)
        grid = None if is_tracing() else self._grids.get(key)
        if grid is None:
            ys, xs = torch.meshgrid(
                torch.arange(h, device=device, dtype=dtype),
                torch.arange(w, device=device, dtype=dtype),
                indexing="ij",
            )
            grid = torch.stack((xs, ys), dim=-1)
            if not is_tracing():
                self._grids[key] = grid
        return grid

    def offset_head(self, x_star: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x_star: (B, h*w, C) -> the offset conv's raw output (B, h, w, G * (2 or 3))."""
        reduced = self.reduce(x_star)  # (B, h*w, r); x_star itself when offset_width = 0
        b, _, c = reduced.shape
        spatial = reduced.view(b, h, w, c).permute(0, 3, 1, 2)  # channels-last view, no copy
        d = self.dwconv(spatial).permute(0, 2, 3, 1)  # (B, h, w, C)
        d = self.norm(d)
        d = F.gelu(d) if torch.is_grad_enabled() or is_tracing() else torch.ops.aten.gelu_(d)
        return self.offset(d)

    def compute_offsets(self, x_star: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x_star: (B, h*w, C) -> Δp: (B, h, w, 2) in grid cells, (dx, dy) (one group, no amplitude)."""
        return self.offset_range * torch.tanh(self.offset_head(x_star, h, w))

    def sample(self, x: torch.Tensor, offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Bilinear sampling of x (B, h*w, C) at p + offsets (B, h, w, 2) -> (B, h*w, C).

        Computes what `grid_sample(mode="bilinear", padding_mode="border",
        align_corners=False)` computes on the (B, C, h, w) map, but gathers rows of the token
        layout directly (an `embedding_bag` of the 4 corners with their bilinear weights), so
        neither the input nor the output changes layout. While tracing (ONNX export) the same
        sum is four row gathers (ONNX Gather), each weighted and added.
        """
        b, n, c = x.shape
        pos = self.cell_grid(h, w, x.device, x.dtype) + offsets
        px = pos[..., 0].clamp(0, w - 1)
        py = pos[..., 1].clamp(0, h - 1)
        x0, y0 = px.detach().floor(), py.detach().floor()
        fx, fy = px - x0, py - y0
        x0, y0 = x0.long(), y0.long()
        x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
        row0 = y0 * w + torch.arange(b, device=x.device).view(b, 1, 1) * n
        row1 = y1 * w + (row0 - y0 * w)
        index = torch.stack((row0 + x0, row0 + x1, row1 + x0, row1 + x1), dim=-1)
        gx, gy = 1 - fx, 1 - fy
        weight = torch.stack((gx * gy, fx * gy, gx * fy, fx * fy), dim=-1)
        if is_tracing():
            rows, index, weight = x.reshape(b * n, c), index.view(b * n, 4), weight.view(b * n, 4, 1)
            out = sum(rows[index[:, i]] * weight[:, i] for i in range(4))
            return out.view(b, n, c)
        out = F.embedding_bag(
            index.view(-1, 4), x.reshape(b * n, c), per_sample_weights=weight.view(-1, 4), mode="sum"
        )
        return out.view(b, n, c)

    def sample_groups(self, x: torch.Tensor, offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x (B, h*w, C) sampled per channel group g at p + offsets[..., g, :] (B, h, w, G, 2)."""
        b, n, c = x.shape
        g = self.groups
        xg = x.view(b, n, g, c // g).permute(0, 2, 1, 3).reshape(b * g, n, c // g)
        og = offsets.permute(0, 3, 1, 2, 4).reshape(b * g, h, w, 2)
        return self.sample(xg, og, h, w).view(b, g, n, c // g).permute(0, 2, 1, 3).reshape(b, n, c)

    def forward(self, x: torch.Tensor, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: (B, h*w, C) image features x_p -> (x*_{p+Δp} (B, h*w, C), Δp (B, h, w, 2), or
        (B, h, w, G, 2) with G > 1 groups). Under bf16 / fp16 autocast the plugin runs in fp32
        (bf16 sampling positions are off by up to a quarter cell) and returns x's dtype."""
        if not is_tracing() and autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                deformed, offsets = self.forward(x.float(), h, w)
            return deformed.to(x.dtype), offsets
        x_star = self.proj(x)
        if not self.amplitude and self.groups == 1:
            offsets = self.compute_offsets(x_star, h, w)
            return self.sample(x_star, offsets, h, w), offsets
        raw = self.offset_head(x_star, h, w)
        b, g = x.shape[0], self.groups
        offsets = self.offset_range * torch.tanh(raw[..., :2 * g].reshape(b, h, w, g, 2))
        if g == 1:
            deformed = self.sample(x_star, offsets[..., 0, :], h, w)
        else:
            deformed = self.sample_groups(x_star, offsets, h, w)
        if self.amplitude:  # m_p = 2 sigmoid(z_p), 1 at init; per group
            m = 2 * torch.sigmoid(raw[..., 2 * g:]).reshape(b, h * w, g, 1)
            c = x.shape[-1]
            deformed = (deformed.view(b, h * w, g, c // g) * m).view(b, h * w, c)
        return deformed, offsets if g > 1 else offsets[..., 0, :]

    def resample(self, t: torch.Tensor, offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """t (B, h*w, C) read where forward read: offsets (B, h, w, 2), or (B, h, w, G, 2) per group."""
        return self.sample_groups(t, offsets, h, w) if offsets.dim() == 5 else self.sample(t, offsets, h, w)
