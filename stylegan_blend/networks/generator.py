"""StyleGAN2 generator: mapping network + skip-architecture synthesis network.

Module tree = NVIDIA's (`mapping.fc0`, `synthesis.b4.const`, `synthesis.b16.conv0.affine`, ...), so an
NVIDIA G state dict loads with strict=True and the constructor takes NVIDIA's `init_kwargs` as is.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .layers import DEFAULT_FILTER, Conv2dLayer, MappingNetwork, SynthesisLayer, ToRGBLayer
from .ops import setup_filter, upsample2d


def channels_per_resolution(resolutions, channel_base: int, channel_max: int) -> dict[int, int]:
    return {r: min(channel_base // r, channel_max) for r in resolutions}


def fp16_min_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest resolution that runs in fp16: the top `num_fp16_res` blocks, never below 8 px."""
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


FP16_MODES = ("cuda", "always", "off")


def set_fp16_mode(module: nn.Module, mode: str) -> nn.Module:
    """Where the blocks built with `use_fp16` (the top `num_fp16_res`) really run in fp16.

    "cuda" (default, NVIDIA's behaviour): on CUDA tensors only; "always": on the CPU too (tests and
    emulation: torch runs fp16 convolutions on the CPU, slowly); "off": never (under bf16 autocast).
    """
    if mode not in FP16_MODES:
        raise ValueError(f"fp16 mode {mode!r}; expected one of {FP16_MODES}")
    for m in module.modules():
        if hasattr(m, "use_fp16"):
            m.fp16_mode = mode
    return module


def runs_fp16(block: nn.Module, force_fp32: bool, device: torch.device) -> bool:
    mode = getattr(block, "fp16_mode", "cuda")
    return block.use_fp16 and not force_fp32 and (mode == "always" or (mode == "cuda" and device.type == "cuda"))


class SynthesisBlock(nn.Module):
    """One resolution: (const | x2-up conv0), conv1, toRGB added to the upsampled running image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, is_last: bool, architecture: str = "skip",
                 resample_filter=DEFAULT_FILTER, conv_clamp: float | None = None, use_fp16: bool = False,
                 fp16_channels_last: bool = False, **layer_kwargs):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"generator architecture {architecture!r}; expected orig, skip or resnet")
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.img_channels, self.is_last = resolution, img_channels, is_last
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.fp16_mode = "cuda"
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        common = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp,
                      channels_last=self.channels_last, **layer_kwargs)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, resample_filter=resample_filter, **common)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32: bool = False, fused_modconv: bool | None = None,
                noise_mode: str = "random"):
        if ws.shape[1] != self.num_conv + self.num_torgb:
            raise ValueError(f"b{self.resolution}: got {ws.shape[1]} ws, expected {self.num_conv + self.num_torgb}")
        ws = ws.unbind(dim=1)
        ref = self.const if self.in_channels == 0 else x
        half = runs_fp16(self, force_fp32, ref.device)
        dtype = torch.float16 if half else torch.float32
        # channels-last also on CPU: oneDNN's transposed conv runs ~3x faster on NHWC than on NCHW
        fmt = torch.channels_last if (self.channels_last and half) or ref.device.type == "cpu" \
            else torch.contiguous_format
        if fused_modconv is None:
            # grouped conv is fast for one sample or on GPU; CPU batches prefer the shared-weight form
            fused_modconv = (not self.training) and (dtype == torch.float32) and (
                ws[0].shape[0] == 1 or ref.device.type == "cuda")
        kw = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws[0].shape[0], 1, 1, 1).to(memory_format=fmt)
            x = self.conv1(x, ws[0], **kw)
        elif self.architecture == "resnet":
            x = x.to(dtype=dtype, memory_format=fmt)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[0], **kw)
            x = y + self.conv1(x, ws[1], gain=math.sqrt(0.5), **kw)
        else:
            x = x.to(dtype=dtype, memory_format=fmt)
            x = self.conv0(x, ws[0], **kw)
            x = self.conv1(x, ws[1], **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, ws[self.num_conv], fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = y if img is None else img + y
        return x, img

    def extra_repr(self) -> str:
        return f"res={self.resolution}, in={self.in_channels}, out={self.out_channels}, fp16={self.use_fp16}"


class SynthesisNetwork(nn.Module):
    """Blocks b4 ... b{img_resolution}; consumes ws of shape [N, num_ws, w_dim]."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution {img_resolution}: expected a power of two >= 4")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        ch = channels_per_resolution(self.block_resolutions, channel_base, channel_max)
        fp16_res = fp16_min_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(ch[res // 2] if res > 4 else 0, ch[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=(res == img_resolution),
                                   use_fp16=(res >= fp16_res), **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def blocks(self):
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: ws shape {tuple(ws.shape)}, expected [N, {self.num_ws}, {self.w_dim}]")
        ws = ws.to(torch.float32)
        x = img = None
        idx = 0  # consecutive blocks share one w: block k's toRGB w is block k+1's conv0 w
        for block in self.blocks():
            x, img = block(x, img, ws.narrow(1, idx, block.num_conv + block.num_torgb), **block_kwargs)
            idx += block.num_conv
        return img


class Generator(nn.Module):
    """G(z) = synthesis(mapping(z)). Constructor kwargs are NVIDIA's (see module docstring)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None, **unused):
        super().__init__()
        if unused:
            raise ValueError(f"Generator: unknown kwargs {sorted(unused)}")
        # kept verbatim so a checkpoint can rebuild exactly this network (NVIDIA's `init_kwargs`)
        self.init_kwargs = copy.deepcopy(dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                              img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs or {}),
                                              synthesis_kwargs=dict(synthesis_kwargs or {})))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **dict(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **dict(mapping_kwargs or {}))

    def forward(self, z, c=None, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
