"""Adaptive discriminator augmentation (ADA): NVIDIA's AugmentPipe, op for op.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data". D only ever sees
augmented images, reals and fakes alike, so every transform is differentiable w.r.t. the images: G
trains through it, and R1 on augmented reals takes a second derivative. Each op fires per sample
with probability `p` times its multiplier; below p ~ 0.8 the augmentations do not leak into G's
output distribution (paper, sec. 2.2). `ADAController` steers p with r_t = E[sign(D(x_real))]
(paper, eq. 1 and sec. 2.3).

Why a replica rather than our own variant: a fine-tune here should be the one NVIDIA's `train.py`
would run, and the parity fixture (`tests/data/nvidia/augment.pt`) can only compare the two if they
agree draw for draw. So, as NVIDIA's `training/augment.py` does:
  * every random number comes from torch's global RNG, on the images' device, with the same shapes in
    the same order (an op's value first, then its gate; cutout draws its gate first), and the draws
    happen whatever p is (also at p = 0), so the rest of a training step (z, noise, style mixing) sees
    the same stream as NVIDIA's;
  * x-flip, quarter turns and integer translation are folded into the geometric matrix together with
    scale / rotation / anisotropy / fractional translation, and the whole batch is resampled once
    (reflect padding, x2 symlet-6 upsampling, bilinear `grid_sample`, symlet-6 decimation): a flip is
    therefore not an exact pixel gather, and a pixel may move by ~1e-6;
  * the matrix maps output pixels to input pixels, so each op contributes the inverse of its forward
    transform, and a rotation angle theta enters it as rotate(theta) (NVIDIA's `rotate2d_inv(-theta)`);
  * colour ops form one 4x4 matrix on homogeneous RGB around mid-grey 0 (greyscale images get its
    grey-to-grey part and draw no hue / saturation numbers), followed by the 4-band image filter,
    additive noise and cutout.
Deliberate difference: at p = 0 the input is returned unchanged (after the draws) instead of passing
it through the resampler, which would move it by up to ~4e-6; D sees the true images while ADA is off.
Samples that do not fire at p > 0 are resampled with an identity matrix, as NVIDIA's are.
`DiffAugment` (Zhao et al. 2020) lives in `diffaugment.py` and is re-exported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import SumMetric

from ..errors import UserError
from .config import ADA_INTERVAL, ADA_TARGET
from .diffaugment import DiffAugment

__all__ = ["ADAController", "AugmentParams", "AugmentPipe", "DiffAugment", "PRESETS", "make_augment_pipe"]

# Daubechies symlet-6 decomposition low-pass (Daubechies 1992, "Ten Lectures on Wavelets"; the same
# numbers as PyWavelets' `Wavelet("sym6").dec_lo`). Orthonormal: sum_k h[k] h[k + 2n] = delta[n], so
# upsampling and decimating with it reconstructs a band-limited image.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)
# Daubechies-2 (= symlet-2) decomposition low-pass in closed form, the prototype of the image filter's bands.
_S3 = math.sqrt(3)
SYM2 = tuple(v / (4 * math.sqrt(2)) for v in (1 - _S3, 3 - _S3, 3 + _S3, 1 + _S3))
# Power per band of natural images (a 1/f spectrum), so that amplifying a band keeps the image's energy.
BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

# Probability multipliers per group, in the order the pipe applies (and draws) them.
GROUPS = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}
OPS = tuple(op for group in GROUPS.values() for op in group)
# NVIDIA train.py's --augpipe presets: the groups each enables (every enabled multiplier is 1).
PRESETS = {
    "blit": ("blit",), "geom": ("geom",), "color": ("color",), "filter": ("filter",), "noise": ("noise",),
    "cutout": ("cutout",), "bg": ("blit", "geom"), "bgc": ("blit", "geom", "color"),
    "bgcf": ("blit", "geom", "color", "filter"), "bgcfn": ("blit", "geom", "color", "filter", "noise"),
    "bgcfnc": ("blit", "geom", "color", "filter", "noise", "cutout"),
}


# ---------------------------------------------------------------------------------------- matrices
def _matrix(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """Per-sample matrices [*like.shape, R, C] from rows of tensors shaped like `like` or numbers."""
    entries = [e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(like.shape + (len(rows), len(rows[0])))


def _translate(tx, ty):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale(sx, sy):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate(theta):
    """Counter-clockwise in x-right / y-up terms; with y down (images) it turns clockwise on screen."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _const(rows, device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32, device=device)


def _translate_const(tx: float, ty: float, device) -> torch.Tensor:
    return _const([[1, 0, tx], [0, 1, ty], [0, 0, 1]], device)


def _scale_const(sx: float, sy: float, device) -> torch.Tensor:
    return _const([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], device)


def _octave_filter_bank(lowpass: tuple, num_bands: int) -> np.ndarray:
    """[num_bands, taps] zero-phase filters splitting the spectrum into octaves; they sum to a unit impulse.

    Band 0 is the low-pass squared (lowpass * reversed lowpass / 2) applied num_bands - 1 times at
    doubling strides; band i > 0 is the matching high-pass at the i-th octave from the top."""
    lo = np.asarray(lowpass, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros((num_bands, 1))
    bank[0, 0] = 1
    for band in range(1, num_bands):
        stretched = np.zeros((num_bands, 2 * bank.shape[1] - 1))
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in stretched])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start: start + hi2.size] += hi2
    return bank


# ------------------------------------------------------------------------------------- parameters
@dataclass
class AugmentParams:
    """One batch's drawn augmentation, ready to apply; None = that stage is switched off in the pipe.

    `geom` maps output pixels to input pixels in centred coordinates (pixel i sits at i - (size - 1) / 2,
    x right, y down); `color` maps homogeneous RGB (mid-grey 0) to RGB; `band_gains` are per-sample
    amplitudes of the image filter's bands; `noise` is added as is; `cutout` multiplies the images."""
    geom: torch.Tensor | None = None        # [N, 3, 3]
    color: torch.Tensor | None = None       # [N, 4, 4]
    band_gains: torch.Tensor | None = None  # [N, bands]
    noise: torch.Tensor | None = None       # [N, C, H, W]
    cutout: torch.Tensor | None = None      # [N, 1, H, W] of 0 / 1

    def to(self, device) -> AugmentParams:
        return AugmentParams(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                for f in fields(self)})


# ------------------------------------------------------------------------------------ the pipeline
class AugmentPipe(nn.Module):
    """NVIDIA's AugmentPipe: the same arguments, defaults (every op off) and meaning. Multipliers scale
    the probability `p`; the other arguments set the strengths (stds in log2 units for the scalings and
    contrast / saturation, translations relative to the image size, angles as fractions of a turn)."""

    def __init__(self, xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0, scale_std: float = 0.2,
                 rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0,
                 saturation: float = 0, brightness_std: float = 0.2, contrast_std: float = 0.5,
                 hue_max: float = 1, saturation_std: float = 1,
                 imgfilter: float = 0, imgfilter_bands=(1, 1, 1, 1), imgfilter_std: float = 1,
                 noise: float = 0, cutout: float = 0, noise_std: float = 0.1, cutout_size: float = 0.5,
                 p: float = 0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))  # saved in checkpoints (resume keeps ADA's p)
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.imgfilter, self.noise, self.cutout = float(imgfilter), float(noise), float(cutout)
        self.xint_max, self.scale_std, self.rotate_max = float(xint_max), float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.imgfilter_std, self.imgfilter_bands = float(imgfilter_std), [float(b) for b in imgfilter_bands]
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)
        # Filters are derived, not state: only p goes into checkpoints.
        self.register_buffer("geom_filter", torch.tensor(SYM6, dtype=torch.float32), persistent=False)
        self.geom_filter /= self.geom_filter.sum()
        bank = torch.as_tensor(_octave_filter_bank(SYM2, 4), dtype=torch.float32)
        self.register_buffer("band_filters", bank, persistent=False)
        if len(self.imgfilter_bands) != bank.shape[0]:
            raise UserError(f"imgfilter_bands={list(imgfilter_bands)}; expected {bank.shape[0]} band multipliers")

    def extra_repr(self) -> str:
        on = [name for name in OPS if getattr(self, name) > 0]
        return f"p={float(self.p):.4f}, ops={','.join(on) or 'none'}"

    # -------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_params(self, batch_size: int, num_channels: int, height: int, width: int,
                      device: torch.device | str = "cpu") -> AugmentParams:
        """Draw one batch's augmentation from the global RNG, in NVIDIA's order and shapes."""
        device = torch.device(device)
        with torch.autocast(device.type, enabled=False):  # float32 matrices, as NVIDIA's, whatever the caller's mode
            return self._draw(batch_size, num_channels, height, width, device)

    def _draw(self, n: int, num_channels: int, height: int, width: int, device: torch.device) -> AugmentParams:
        p = self.p.to(device)

        def uniform(*shape):
            return torch.rand(shape, device=device)

        def normal(*shape):
            return torch.randn(shape, device=device)

        def gated(value, prob, identity, *gate_shape):
            """The value where a uniform draw (after the value's) falls below prob, else the identity."""
            return torch.where(uniform(*(gate_shape or (n,))) < prob, value, identity)

        params = AugmentParams()
        geom = None
        if self.xflip > 0:
            flip = gated(torch.floor(uniform(n) * 2), self.xflip * p, 0.0)
            geom = _scale(1 / (1 - 2 * flip), torch.ones_like(flip))
        if self.rotate90 > 0:
            quarter_turns = gated(torch.floor(uniform(n) * 4), self.rotate90 * p, 0.0)
            geom = _chain(geom, _rotate(math.pi / 2 * quarter_turns))
        if self.xint > 0:
            t = gated((uniform(n, 2) * 2 - 1) * self.xint_max, self.xint * p, 0.0, n, 1)
            geom = _chain(geom, _translate(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height)))
        if self.scale > 0:
            s = gated(torch.exp2(normal(n) * self.scale_std), self.scale * p, 1.0)
            geom = _chain(geom, _scale(1 / s, 1 / s))
        # Pre- and post-rotation each fire with 1 - sqrt(1 - q), so that P(either) = q = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = gated((uniform(n) * 2 - 1) * math.pi * self.rotate_max, p_rot, 0.0)
            geom = _chain(geom, _rotate(theta))
        if self.aniso > 0:
            s = gated(torch.exp2(normal(n) * self.aniso_std), self.aniso * p, 1.0)
            geom = _chain(geom, _scale(1 / s, 1 / (1 / s)))
        if self.rotate > 0:
            theta = gated((uniform(n) * 2 - 1) * math.pi * self.rotate_max, p_rot, 0.0)
            geom = _chain(geom, _rotate(theta))
        if self.xfrac > 0:
            t = gated(normal(n, 2) * self.xfrac_std, self.xfrac * p, 0.0, n, 1)
            geom = _chain(geom, _translate(-t[:, 0] * width, -t[:, 1] * height))
        params.geom = geom

        color = None
        if self.brightness > 0:
            b = gated(normal(n) * self.brightness_std, self.brightness * p, 0.0)
            color = _matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)
        if self.contrast > 0:
            c = gated(torch.exp2(normal(n) * self.contrast_std), self.contrast * p, 1.0)
            color = _chain(_matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c), color)
        grey = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64).div(math.sqrt(3)).float().to(device)
        grey_proj = torch.outer(grey, grey)  # projection onto the grey axis (homogeneous RGB)
        eye = torch.eye(4, device=device)
        if self.lumaflip > 0:
            flip = gated(torch.floor(uniform(n, 1, 1) * 2), self.lumaflip * p, 0.0, n, 1, 1)
            color = _chain(eye - 2 * grey_proj * flip, color)  # Householder reflection along the grey axis
        if self.hue > 0 and num_channels > 1:
            theta = gated((uniform(n) * 2 - 1) * math.pi * self.hue_max, self.hue * p, 0.0)
            color = _chain(_rotate_about(grey, theta), color)
        if self.saturation > 0 and num_channels > 1:
            s = gated(torch.exp2(normal(n, 1, 1) * self.saturation_std), self.saturation * p, 1.0, n, 1, 1)
            color = _chain(grey_proj + (eye - grey_proj) * s, color)
        params.color = None if color is None else color.expand(n, 4, 4)

        if self.imgfilter > 0:
            bands = self.band_filters.shape[0]
            power = torch.tensor(BAND_POWER, device=device)
            gains = torch.ones(n, bands, device=device)
            for band, strength in enumerate(self.imgfilter_bands):
                amp = gated(torch.exp2(normal(n) * self.imgfilter_std), self.imgfilter * p * strength, 1.0)
                one_band = torch.where(torch.arange(bands, device=device) == band, amp[:, None], 1.0)
                gains = gains * (one_band / (power * one_band.square()).sum(dim=-1, keepdim=True).sqrt())
            params.band_gains = gains

        if self.noise > 0:
            sigma = gated(normal(n, 1, 1, 1).abs() * self.noise_std, self.noise * p, 0.0, n, 1, 1, 1)
            params.noise = normal(n, num_channels, height, width) * sigma

        if self.cutout > 0:
            size = torch.where(uniform(n, 1, 1, 1, 1) < self.cutout * p, self.cutout_size, 0.0)
            size = size.expand(n, 2, 1, 1, 1)
            centre = uniform(n, 2, 1, 1, 1)
            x = (torch.arange(width, device=device).reshape(1, 1, 1, -1) + 0.5) / width
            y = (torch.arange(height, device=device).reshape(1, 1, -1, 1) + 0.5) / height
            keep = ((x - centre[:, 0]).abs() >= size[:, 0] / 2) | ((y - centre[:, 1]).abs() >= size[:, 1] / 2)
            params.cutout = keep.float()
        return params

    # ------------------------------------------------------------------------------- applying
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a batch NCHW with fresh draws from torch's global RNG."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects NCHW images, got shape {tuple(images.shape)}")
        params = self.sample_params(*images.shape, device=images.device)
        if float(self.p) == 0:  # every gate closed: see the module docstring
            return images
        return self.apply(images, params)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply drawn parameters: resample, recolour, filter, add noise, cut out."""
        params = params.to(images.device)
        # Resampling and colour maths in at least float32, whatever autocast or the input dtype says.
        x = images.to(torch.promote_types(images.dtype, torch.float32))
        with torch.autocast(images.device.type, enabled=False):
            if params.geom is not None:
                x = self._resample(x, params.geom)
            if params.color is not None:
                x = _recolor(x, params.color)
            if params.band_gains is not None:
                x = self._filter_bands(x, params.band_gains)
            if params.noise is not None:
                x = x + params.noise.to(x.dtype)
            if params.cutout is not None:
                x = x * params.cutout.to(x.dtype)
        return x.to(images.dtype)

    def _resample(self, images: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
        """Warp by per-sample output->input matrices (centred pixels) without aliasing: reflect-pad as
        far as the warped frame reaches, upsample x2, bilinear sampling, low-pass and decimate x2."""
        x = images
        n, c, h, w = x.shape
        device = x.device
        f = self.geom_filter.to(device)
        margin_out = f.numel() // 4  # output pixels the decimation filter reads beyond the frame
        geom = geom.to(device=device, dtype=torch.float32).expand(n, 3, 3)

        # Reflect padding: how far outside the frame the warped corners (plus the filter's reach) land.
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = _const([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device)
        reach = (geom @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * corner]
        pad = torch.cat([-reach, reach]).amax(dim=1)  # left, top, right, bottom
        pad = pad + _const([2 * margin_out - cx, 2 * margin_out - cy] * 2, device)
        pad = pad.maximum(_const([0.0] * 4, device)).minimum(_const([w - 1, h - 1] * 2, device))
        left, top, right, bottom = (int(v) for v in pad.ceil().tolist())
        x = F.pad(x, [left, right, top, bottom], mode="reflect")
        geom = _translate_const((left - right) / 2, (top - bottom) / 2, device) @ geom

        # x2 upsampling: pixel i becomes 2i, i.e. centred coordinate c becomes 2c - 0.5.
        x = _upsample2x(x, f)
        geom = _scale_const(2, 2, device) @ geom @ _scale_const(1 / 2, 1 / 2, device)
        geom = _translate_const(-0.5, -0.5, device) @ geom @ _translate_const(0.5, 0.5, device)

        # Bilinear sampling on the upsampled grid, the output frame extended by the decimation margin.
        out_h, out_w = 2 * (h + 2 * margin_out), 2 * (w + 2 * margin_out)
        # Centred pixel coords -> grid_sample's normalised coords (align_corners=False): times 2 / size.
        geom = (_scale_const(2 / x.shape[3], 2 / x.shape[2], device) @ geom
                @ _scale_const(1 / (2 / out_w), 1 / (2 / out_h), device))
        grid = F.affine_grid(geom[:, :2, :].to(x.dtype), [n, c, out_h, out_w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _downsample2x(x, f, crop=2 * margin_out - (f.numel() - 2) // 2)

    def _filter_bands(self, images: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """Amplify frequency bands per sample: one separable zero-phase filter per sample, reflect padded."""
        n, c, h, w = images.shape
        taps = (gains.to(images.dtype) @ self.band_filters.to(images.dtype))  # [N, taps]
        half = taps.shape[1] // 2
        if half >= min(h, w):
            raise UserError(f"augment imgfilter needs images larger than {half} px, got {h}x{w}; "
                            f"use a preset without the image filter (e.g. bgc)")
        kernel = taps.repeat_interleave(c, dim=0)[:, None, None, :]  # [N * C, 1, 1, taps]
        x = F.pad(images.reshape(1, n * c, h, w), [half] * 4, mode="reflect")
        x = F.conv2d(x, kernel, groups=n * c)
        x = F.conv2d(x, kernel.transpose(2, 3), groups=n * c)
        return x.reshape(n, c, h, w)


def _chain(first: torch.Tensor | None, then: torch.Tensor | None) -> torch.Tensor | None:
    """first @ then, where None is the identity."""
    if first is None:
        return then
    return first if then is None else first @ then


def _rotate_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """[N, 4, 4] rotation by theta about a unit axis of homogeneous RGB (Rodrigues' formula)."""
    vx, vy, vz = (axis[i] for i in range(3))
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                    [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                    [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                    [0, 0, 0, 1]], theta)


def _upsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x2 FIR upsampling (zero insertion, then the filter with gain 2 per axis), written as strided
    transposed convolutions: this polyphase form skips the products with the inserted zeros (about
    4x faster on CPU than filtering the zero-stuffed image). Pixel i becomes pixel 2i, aligned on the
    filter's largest tap; symlet-6 is not symmetric, so a mirrored warp does not reconstruct exactly."""
    n, c, h, w = x.shape
    crop = f.numel() // 2 - 1
    k = (2 * f).to(x.dtype)
    y = x.reshape(n * c, 1, h, w)
    y = F.conv_transpose2d(y, k.reshape(1, 1, 1, -1), stride=(1, 2))[..., crop: crop + 2 * w]
    y = F.conv_transpose2d(y, k.reshape(1, 1, -1, 1), stride=(2, 1))[..., crop: crop + 2 * h, :]
    return y.reshape(n, c, 2 * h, 2 * w)


def _downsample2x(x: torch.Tensor, f: torch.Tensor, crop: int) -> torch.Tensor:
    """Crop `crop` pixels per side, low-pass (correlation with f) and keep every second pixel; the
    adjoint of `_upsample2x`, so an identity warp reconstructs the image for an orthonormal f."""
    n, c, h, w = x.shape
    k = f.to(x.dtype)
    y = x.reshape(n * c, 1, h, w)[..., crop: h - crop, crop: w - crop]
    y = F.conv2d(y, k.reshape(1, 1, 1, -1), stride=(1, 2))
    y = F.conv2d(y, k.reshape(1, 1, -1, 1), stride=(2, 1))
    return y.reshape(n, c, y.shape[2], y.shape[3])


def _recolor(images: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """Apply [N, 4, 4] colour matrices to RGB images; greyscale images get the mean of the RGB rows."""
    n, c, h, w = images.shape
    color = color.to(device=images.device, dtype=images.dtype)
    x = images.reshape(n, c, h * w)
    if c == 3:
        x = color[:, :3, :3] @ x + color[:, :3, 3:]
    elif c == 1:
        rows = color[:, :3, :].mean(dim=1, keepdim=True)  # [N, 1, 4]: a grey pixel in, its mean out
        x = x * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
    else:
        raise UserError(f"ADA colour augmentation needs RGB or greyscale images, got {c} channels")
    return x.reshape(n, c, h, w)


def make_augment_pipe(preset: str = "bgc", **overrides) -> AugmentPipe:
    """AugmentPipe with a preset's groups enabled (NVIDIA's `--augpipe` names: blit, geom, color,
    filter, noise, cutout, bg, bgc, bgcf, bgcfn, bgcfnc); `overrides` are AugmentPipe kwargs."""
    if preset not in PRESETS:
        raise UserError(f"augment preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    enabled = {op: 1.0 for group in PRESETS[preset] for op in GROUPS[group]}
    return AugmentPipe(**{**enabled, **overrides})


# ------------------------------------------------------------------------------------ controller
class ADAController:
    """Steers ADA's p so that r_t = E[sign(D(x_real))] stays at `target` (ADA paper, sec. 2.3), as NVIDIA's loop.

    Call `accumulate(real_logits)` for every batch of real logits D produces (Dmain's and, when R1 runs, Dreg's:
    NVIDIA's `Loss/signs/real` collects both) and `step(pipe, batch_size)` once per minibatch; every `interval`
    minibatches r_t is the mean of all signs since the last adjustment (NVIDIA's Collector) and p moves by
    sign(r_t - target) * batch_size * interval / (ada_kimg * 1000), clamped below at 0 only (NVIDIA lets p pass
    1), so p can travel one unit in `ada_kimg` thousand images. `batch_size` is the global batch (all processes);
    the sign sums are torchmetrics states, so r_t is averaged over processes under DDP. `ada_kimg=None` only
    measures r_t (the overfitting diagnostic when ADA is off).
    """

    def __init__(self, target: float = ADA_TARGET, interval: int = ADA_INTERVAL, ada_kimg: float | None = None):
        if interval < 1 or (ada_kimg is not None and ada_kimg <= 0):
            raise UserError(f"ADA interval={interval}, ada_kimg={ada_kimg}; expected interval >= 1 and ada_kimg > 0")
        self.target, self.interval = float(target), int(interval)
        self.ada_kimg = None if ada_kimg is None else float(ada_kimg)
        self.r_t = float("nan")  # last measured value; NaN until the first interval completes
        self._batches = 0
        self._sign_sum = SumMetric()
        self._count = SumMetric()

    def accumulate(self, real_logits: torch.Tensor) -> None:
        signs = torch.sign(real_logits.detach().float())
        if self._sign_sum.device != signs.device:
            self._sign_sum.to(signs.device)
            self._count.to(signs.device)
        self._sign_sum.update(signs.sum())
        self._count.update(float(signs.numel()))

    def step(self, pipe: nn.Module | None, batch_size: int) -> float | None:
        """Count one minibatch; at the end of an interval return r_t (and adjust pipe.p), else None."""
        self._batches += 1
        if self._batches % self.interval != 0 or not self._count.update_called:
            return None
        count = float(self._count.compute())
        r_t = float(self._sign_sum.compute()) / count if count > 0 else float("nan")
        self._sign_sum.reset()
        self._count.reset()
        if math.isnan(r_t):
            return None
        self.r_t = r_t
        if self.ada_kimg is not None and pipe is not None:
            delta = math.copysign(1.0, r_t - self.target) if r_t != self.target else 0.0
            delta *= batch_size * self.interval / (self.ada_kimg * 1000)
            with torch.no_grad():
                pipe.p.copy_((pipe.p + delta).clamp_min(0))
        return r_t

    def state_dict(self) -> dict:
        """Plain containers (loadable with weights_only=True); the partial sums are this process's."""
        return {"batches": self._batches, "r_t": self.r_t,
                "sign_sum": float(self._sign_sum.sum_value), "count": float(self._count.sum_value)}

    def load_state_dict(self, state: dict) -> None:
        self._batches = int(state["batches"])
        self.r_t = float(state["r_t"])
        self._sign_sum.reset()
        self._count.reset()
        if state["count"] > 0:  # adding to zero restores the sums exactly
            self._sign_sum.update(float(state["sign_sum"]))
            self._count.update(float(state["count"]))
