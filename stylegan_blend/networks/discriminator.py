"""StyleGAN2 discriminator (resnet by default; orig and skip too) with NVIDIA's module tree."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .generator import channels_per_resolution, fp16_min_resolution, runs_fp16
from .layers import DEFAULT_FILTER, Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer
from .ops import downsample2d, setup_filter


class DiscriminatorBlock(nn.Module):
    """One resolution: (fromRGB), conv0 3x3, conv1 3x3 with x2 down, resnet skip x sqrt(0.5)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, first_layer_idx: int, architecture: str = "resnet",
                 activation: str = "lrelu", resample_filter=DEFAULT_FILTER, conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"discriminator architecture {architecture!r}; expected orig, skip or resnet")
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx, self.architecture, self.use_fp16 = first_layer_idx, architecture, use_fp16
        self.fp16_mode = "cuda"
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args, **kwargs):  # Freeze-D counts layers across blocks, from the image side
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last, **kwargs)

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                           resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = layer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                              resample_filter=resample_filter)

    def forward(self, x, img, force_fp32: bool = False):
        ref = img if x is None else x
        half = runs_fp16(self, force_fp32, ref.device)
        dtype = torch.float16 if half else torch.float32
        fmt = torch.channels_last if self.channels_last and half else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=fmt)
            y = self.fromrgb(img)
            x = y if x is None else x + y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, conv, fc, out (a single logit; conditioning is not supported)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.resolution, self.architecture = in_channels, resolution, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, force_fp32: bool = False):
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """D(img) -> logit [N, 1]. Blocks b{R} ... b8 then the b4 epilogue."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None, block_kwargs: dict | None = None,
                 mapping_kwargs: dict | None = None, epilogue_kwargs: dict | None = None, **unused):
        super().__init__()
        if unused:
            raise ValueError(f"Discriminator: unknown kwargs {sorted(unused)}")
        self.init_kwargs = copy.deepcopy(dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
            cmap_dim=cmap_dim, block_kwargs=dict(block_kwargs or {}), mapping_kwargs=dict(mapping_kwargs or {}),
            epilogue_kwargs=dict(epilogue_kwargs or {})))
        if c_dim != 0:
            raise ValueError(f"conditional models are not supported (c_dim={c_dim}); expected c_dim=0")
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution {img_resolution}: expected a power of two >= 4")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(int(math.log2(img_resolution)), 2, -1)]
        ch = channels_per_resolution(self.block_resolutions + [4], channel_base, channel_max)
        fp16_res = fp16_min_resolution(img_resolution, num_fp16_res)
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(ch[res] if res < img_resolution else 0, ch[res], ch[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=(res >= fp16_res),
                                       **dict(block_kwargs or {}), **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        self.b4 = DiscriminatorEpilogue(ch[4], cmap_dim=0, resolution=4, **dict(epilogue_kwargs or {}), **common)

    def forward(self, img: torch.Tensor, c=None, force_fp32: bool = False) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(f"discriminator: image shape {tuple(img.shape)}, expected "
                             f"[N, {self.img_channels}, {self.img_resolution}, {self.img_resolution}]")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        return self.b4(x, img)
