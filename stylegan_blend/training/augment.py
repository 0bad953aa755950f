"""Adaptive discriminator augmentation (ADA) for few-shot fine-tuning.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (ADA): D only ever
sees augmented images, reals and fakes alike, so every transform here is differentiable w.r.t. the
images (G is trained through it, and R1 on augmented reals needs a second derivative). Each transform
fires per sample with probability `p` (times its multiplier); as long as p stays below ~0.8 the
augmentations do not "leak" into G's output distribution (paper, sec. 2.2). `ADAController` steers p
with the overfitting heuristic r_t = E[sign(D(x_real))] towards 0.6 (paper, eq. 1 and sec. 2.3).

The 'bgc' pipeline, in the paper's order:
  * blitting (b): x-flip, 90-degree rotations, integer translation (reflect-padded). Done exactly, as
    an index gather, so they never blur.
  * geometric (g): isotropic scale, pre-rotation, anisotropic scale, post-rotation, fractional
    translation, folded into one affine matrix per sample and resampled once with the paper's
    alias-aware scheme: reflect padding, x2 FIR upsampling with the orthonormal symlet-6 low-pass,
    bilinear `grid_sample` at the upsampled rate, FIR low-pass and x2 decimation with the same filter
    (for an identity transform the up/down pair reconstructs the image exactly, because the filter is
    orthonormal).
  * colour (c): brightness, contrast, luma flip, hue rotation, saturation as one 4x4 affine colour
    matrix per sample, acting on RGB in [-1, 1] around mid-grey 0.

Samples whose parameters are all identity pass through untouched, so p = 0 returns the input exactly.
`DiffAugment` (Zhao et al. 2020) lives in `diffaugment.py` and is re-exported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import SumMetric

from stylegan_blend.errors import UserError
from stylegan_blend.training.diffaugment import DiffAugment

__all__ = ["ADAController", "AugmentParams", "AugmentPipe", "DiffAugment", "PRESETS", "make_augment_pipe"]

# Daubechies symlet-6 decomposition low-pass (Daubechies 1992, "Ten Lectures on Wavelets"; the same
# numbers as PyWavelets' `Wavelet("sym6").dec_lo`). Orthonormal: sum_k h[k] h[k + 2n] = delta[n].
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

_GROUPS = {
    "b": ("xflip", "rotate90", "xint"),
    "g": ("scale", "rotate", "aniso", "xfrac"),
    "c": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
}
# Preset name -> enabled groups (NVIDIA's names: blit, geom, color and their initials combined).
PRESETS = {"b": "b", "g": "g", "c": "c", "bg": "bg", "bc": "bc", "gc": "gc", "bgc": "bgc",
           "blit": "b", "geom": "g", "color": "c"}


# ---------------------------------------------------------------------------------------- matrices
def _stack_matrix(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """Per-sample matrices [N, R, C] from rows whose entries are [N] tensors or Python numbers."""
    entries = [e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(like.shape + (len(rows), len(rows[0])))


def _translate2d(tx, ty):
    return _stack_matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale2d(sx, sy):
    return _stack_matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate2d(theta):
    c, s = torch.cos(theta), torch.sin(theta)
    return _stack_matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _luma_axis(device, dtype) -> torch.Tensor:
    """Unit grey axis in homogeneous RGB: the direction colour ops rotate about / reflect along."""
    return torch.tensor([1.0, 1.0, 1.0, 0.0], device=device, dtype=dtype) / math.sqrt(3)


# ------------------------------------------------------------------------------------- parameters
@dataclass
class AugmentParams:
    """Per-sample augmentation parameters, one row per image; identity values mean "not applied".

    Geometric quantities are in pixels, centred on the image (pixel i sits at i - (size - 1) / 2),
    x to the right and y down. Built by `AugmentPipe.sample_params` or by hand (tests, debugging).
    """
    xflip: torch.Tensor        # [N] bool: mirror left-right
    rot90: torch.Tensor        # [N] int64: quarter turns, as torch.rot90(img, k, dims=(2, 3))
    shift: torch.Tensor        # [N, 2] int64: integer translation (x, y), reflect padded
    scale: torch.Tensor        # [N] isotropic scale factor
    rotate_pre: torch.Tensor   # [N] radians, before the anisotropic scale
    aniso: torch.Tensor        # [N] x scaled by a, y by 1/a
    rotate_post: torch.Tensor  # [N] radians, after the anisotropic scale
    frac_shift: torch.Tensor   # [N, 2] fractional translation (x, y)
    brightness: torch.Tensor   # [N] added to every channel
    contrast: torch.Tensor     # [N] multiplies every channel
    lumaflip: torch.Tensor     # [N] bool: reflect colours along the grey axis
    hue: torch.Tensor          # [N] radians of rotation about the grey axis
    saturation: torch.Tensor   # [N] scales the chroma (distance from the grey axis)

    @classmethod
    def identity(cls, batch_size: int, device: torch.device | str = "cpu") -> AugmentParams:
        def zeros(*shape, dtype=torch.float32):
            return torch.zeros((batch_size,) + shape, dtype=dtype, device=device)

        def ones():
            return torch.ones(batch_size, device=device)

        return cls(xflip=zeros(dtype=torch.bool), rot90=zeros(dtype=torch.int64), shift=zeros(2, dtype=torch.int64),
                   scale=ones(), rotate_pre=zeros(), aniso=ones(), rotate_post=zeros(), frac_shift=zeros(2),
                   brightness=zeros(), contrast=ones(), lumaflip=zeros(dtype=torch.bool), hue=zeros(),
                   saturation=ones())

    def to(self, device) -> AugmentParams:
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def blit_active(self) -> torch.Tensor:
        return self.xflip | (self.rot90 % 4 != 0) | (self.shift != 0).any(dim=1)

    def geometric_active(self) -> torch.Tensor:
        return ((self.scale != 1) | (self.rotate_pre != 0) | (self.aniso != 1) | (self.rotate_post != 0)
                | (self.frac_shift != 0).any(dim=1))

    def color_active(self) -> torch.Tensor:
        return ((self.brightness != 0) | (self.contrast != 1) | self.lumaflip | (self.hue != 0)
                | (self.saturation != 1))

    def geometric_matrix(self) -> torch.Tensor:
        """[N, 3, 3] map from output to input pixel (centred coords): the inverse of the forward chain
        scale -> rotate_pre -> aniso -> rotate_post -> frac_shift."""
        s, a, t = self.scale, self.aniso, self.frac_shift
        return (_scale2d(1 / s, 1 / s) @ _rotate2d(-self.rotate_pre) @ _scale2d(1 / a, a)
                @ _rotate2d(-self.rotate_post) @ _translate2d(-t[:, 0], -t[:, 1]))

    def color_matrix(self) -> torch.Tensor:
        """[N, 4, 4] homogeneous RGB map: brightness, contrast, luma flip, hue, saturation in turn."""
        b, c = self.brightness, self.contrast
        n, device, dtype = b.shape[0], b.device, b.dtype
        eye = torch.eye(4, device=device, dtype=dtype).expand(n, 4, 4)
        v = _luma_axis(device, dtype)
        vv = torch.outer(v, v)
        bright = _stack_matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)
        contrast = _stack_matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)
        flip = eye - 2 * vv * self.lumaflip.to(dtype)[:, None, None]  # Householder reflection
        # Rodrigues rotation about the unit grey axis v: cos I + sin [v]x + (1 - cos) v v^T (RGB block).
        cos, sin = torch.cos(self.hue)[:, None, None], torch.sin(self.hue)[:, None, None]
        cross = torch.tensor([[0, -1, 1, 0], [1, 0, -1, 0], [-1, 1, 0, 0], [0, 0, 0, 0]],
                             device=device, dtype=dtype) * v[0]
        homogeneous = torch.diag(torch.tensor([0, 0, 0, 1], device=device, dtype=dtype))
        hue = cos * eye + sin * cross + (1 - cos) * (vv + homogeneous)
        sat = vv + (eye - vv) * self.saturation[:, None, None]
        return sat @ hue @ flip @ contrast @ bright


# ------------------------------------------------------------------------------------ the pipeline
class AugmentPipe(nn.Module):
    """ADA 'bgc' pipeline. Every multiplier is a probability factor (0 disables the op); each op fires
    per sample with probability multiplier * p. Strengths follow the paper's appendix."""

    def __init__(self, xflip: float = 1, rotate90: float = 1, xint: float = 1, scale: float = 1,
                 rotate: float = 1, aniso: float = 1, xfrac: float = 1, brightness: float = 1,
                 contrast: float = 1, lumaflip: float = 1, hue: float = 1, saturation: float = 1,
                 xint_max: float = 0.125, scale_std: float = 0.2, rotate_max: float = 1,
                 aniso_std: float = 0.2, xfrac_std: float = 0.125, brightness_std: float = 0.2,
                 contrast_std: float = 0.5, hue_max: float = 1, saturation_std: float = 1, p: float = 0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))  # saved in checkpoints (resume keeps ADA's p)
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.xint_max = float(xint_max)              # fraction of the image size
        self.scale_std = float(scale_std)            # log2 std
        self.rotate_max = float(rotate_max)          # 1 = full circle
        self.aniso_std = float(aniso_std)            # log2 std
        self.xfrac_std = float(xfrac_std)            # fraction of the image size
        self.brightness_std = float(brightness_std)  # additive, images in [-1, 1]
        self.contrast_std = float(contrast_std)      # log2 std
        self.hue_max = float(hue_max)                # 1 = full circle
        self.saturation_std = float(saturation_std)  # log2 std
        taps = torch.tensor(SYM6, dtype=torch.float64)
        taps = taps / taps.sum()
        self.register_buffer("geom_filter", taps.float(), persistent=False)
        # Low-frequency delay of the up/down filter pair against a symmetric filter, in upsampled
        # pixels: its first moment minus the centre tap. The warp is conjugated by it so that
        # rotations and scalings pivot on the true image centre.
        self.geom_delay = float((taps * torch.arange(len(taps), dtype=torch.float64)).sum()) - (len(taps) - 1) / 2

    def extra_repr(self) -> str:
        on = [name for group in _GROUPS.values() for name in group if getattr(self, name) > 0]
        return f"p={float(self.p):.4f}, ops={','.join(on) or 'none'}"

    # -------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_params(self, batch_size: int, height: int, width: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> AugmentParams:
        """Draw per-sample parameters from the paper's distributions, gated by multiplier * p."""
        n = batch_size
        gen_device = generator.device if generator is not None else device
        p = self.p.to(device)
        params = AugmentParams.identity(n, device)

        def uniform(*shape):
            return torch.rand(shape, generator=generator, device=gen_device).to(device)

        def normal(*shape):
            return torch.randn(shape, generator=generator, device=gen_device).to(device)

        def fires(prob, *shape):
            return uniform(*(shape or (n,))) < prob

        size = torch.tensor([width, height], device=device)
        if self.xflip > 0:
            params.xflip = (uniform(n) < 0.5) & fires(self.xflip * p)
        if self.rotate90 > 0:
            params.rot90 = torch.where(fires(self.rotate90 * p), torch.floor(uniform(n) * 4).long(), 0)
        if self.xint > 0:
            t = (uniform(n, 2) * 2 - 1) * self.xint_max
            params.shift = torch.where(fires(self.xint * p, n, 1), torch.round(t * size).long(), 0)
        if self.scale > 0:
            params.scale = torch.where(fires(self.scale * p), torch.exp2(normal(n) * self.scale_std), 1.0)
        # Pre- and post-rotation each fire with 1 - sqrt(1 - q) so that P(any rotation) = q.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = (uniform(n) * 2 - 1) * math.pi * self.rotate_max
            params.rotate_pre = torch.where(fires(p_rot), theta, 0.0)
        if self.aniso > 0:
            params.aniso = torch.where(fires(self.aniso * p), torch.exp2(normal(n) * self.aniso_std), 1.0)
        if self.rotate > 0:
            theta = (uniform(n) * 2 - 1) * math.pi * self.rotate_max
            params.rotate_post = torch.where(fires(p_rot), theta, 0.0)
        if self.xfrac > 0:
            t = normal(n, 2) * self.xfrac_std * size
            params.frac_shift = torch.where(fires(self.xfrac * p, n, 1), t, 0.0)
        if self.brightness > 0:
            params.brightness = torch.where(fires(self.brightness * p), normal(n) * self.brightness_std, 0.0)
        if self.contrast > 0:
            params.contrast = torch.where(fires(self.contrast * p), torch.exp2(normal(n) * self.contrast_std), 1.0)
        if self.lumaflip > 0:
            params.lumaflip = (uniform(n) < 0.5) & fires(self.lumaflip * p)
        if self.hue > 0:
            theta = (uniform(n) * 2 - 1) * math.pi * self.hue_max
            params.hue = torch.where(fires(self.hue * p), theta, 0.0)
        if self.saturation > 0:
            s = torch.exp2(normal(n) * self.saturation_std)
            params.saturation = torch.where(fires(self.saturation * p), s, 1.0)
        return params

    # ------------------------------------------------------------------------------- applying
    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch NCHW; randomness from `generator` (or the global RNG) only."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects NCHW images, got shape {tuple(images.shape)}")
        if float(self.p) == 0:
            return images
        n, _, h, w = images.shape
        return self.apply(images, self.sample_params(n, h, w, images.device, generator))

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply given per-sample parameters; samples with identity parameters are returned as is."""
        params = params.to(images.device)
        # Resampling and colour maths in at least float32, whatever autocast or the input dtype says.
        x = images.to(torch.promote_types(images.dtype, torch.float32))
        with torch.autocast(images.device.type, enabled=False):
            x = _on_active(x, params.blit_active(),
                           lambda t, i: _blit(t, params.xflip[i], params.rot90[i], params.shift[i]))
            x = _on_active(x, params.geometric_active(),
                           lambda t, i: self._warp(t, params.geometric_matrix()[i]))
            x = _on_active(x, params.color_active(),
                           lambda t, i: _recolor(t, params.color_matrix()[i]))
        return x.to(images.dtype)

    def _warp(self, images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Resample with per-sample output->input matrices (centred pixel coords), alias-aware."""
        x = images
        n, c, h, w = x.shape
        f = self.geom_filter.to(x.device)
        taps = f.numel()
        out_margin = taps // 4      # extra output pixels the decimation filter reads around the image
        in_margin = taps // 4 + 1   # input pixels the interpolation filter (+ bilinear) reads around a point
        g_inv = g_inv.to(device=x.device, dtype=torch.float64)

        # Reflect-pad the input by the extent that the (extended) output maps onto.
        ex, ey = (w - 1) / 2 + out_margin, (h - 1) / 2 + out_margin
        corners = torch.tensor([[-ex, ex, ex, -ex], [-ey, -ey, ey, ey], [1, 1, 1, 1]],
                               device=x.device, dtype=torch.float64)
        src = (g_inv @ corners)[:, :2]  # [n, xy, corner]
        half = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=x.device, dtype=torch.float64)
        limit = torch.tensor([w - 1, h - 1], device=x.device, dtype=torch.float64)
        lo = (-src.amin(dim=(0, 2)) - half + in_margin).ceil().clamp(min=0).minimum(limit)
        hi = (src.amax(dim=(0, 2)) - half + in_margin).ceil().clamp(min=0).minimum(limit)
        (px0, py0), (px1, py1) = lo.long().tolist(), hi.long().tolist()
        x = F.pad(x, [px0, px1, py0, py1], mode="reflect")
        ones = torch.ones(n, device=x.device, dtype=torch.float64)
        g_inv = _translate2d(ones * (px0 - px1) / 2, ones * (py0 - py1) / 2) @ g_inv

        # x2 upsampling: input pixel p (centred) lands at 2p + delay in the upsampled image, and the
        # decimation below reads output pixel q at 2q + delay; conjugate the transform to match.
        x = _upsample2x(x, f)
        d = ones * self.geom_delay
        g_up = (_translate2d(d, d) @ _scale2d(ones * 2, ones * 2) @ g_inv
                @ _scale2d(ones / 2, ones / 2) @ _translate2d(-d, -d))
        out_h, out_w = 2 * (h + 2 * out_margin), 2 * (w + 2 * out_margin)
        in_h, in_w = x.shape[2], x.shape[3]
        # Centred pixel coords -> grid_sample's normalised coords (align_corners=False): times 2 / size.
        theta = (_scale2d(ones * 2 / in_w, ones * 2 / in_h) @ g_up
                 @ _scale2d(ones * out_w / 2, ones * out_h / 2))
        grid = F.affine_grid(theta[:, :2].to(x.dtype), [n, c, out_h, out_w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        # Low-pass and x2 decimation with the same filter, cropping the output margin.
        return _downsample2x(x, f, crop=2 * out_margin - (taps - 2) // 2)


def _upsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x2 FIR upsampling (zero insertion, then the filter with gain 2 per axis), written as strided
    transposed convolutions: this polyphase form skips the products with the inserted zeros (about
    4x faster on CPU than filtering the zero-stuffed image). Pixel i lands at 2i + 0.5 + delay."""
    n, c, h, w = x.shape
    crop = f.numel() // 2 - 1
    k = (2 * f).to(x.dtype)
    y = x.reshape(n * c, 1, h, w)
    y = F.conv_transpose2d(y, k.reshape(1, 1, 1, -1), stride=(1, 2))[..., crop: crop + 2 * w]
    y = F.conv_transpose2d(y, k.reshape(1, 1, -1, 1), stride=(2, 1))[..., crop: crop + 2 * h, :]
    return y.reshape(n, c, 2 * h, 2 * w)


def _downsample2x(x: torch.Tensor, f: torch.Tensor, crop: int) -> torch.Tensor:
    """Crop `crop` pixels per side, low-pass (correlation with f) and keep every second pixel; the
    adjoint of `_upsample2x`, so an identity warp reconstructs exactly for an orthonormal f."""
    n, c, h, w = x.shape
    k = f.to(x.dtype)
    y = x.reshape(n * c, 1, h, w)[..., crop: h - crop, crop: w - crop]
    y = F.conv2d(y, k.reshape(1, 1, 1, -1), stride=(1, 2))
    y = F.conv2d(y, k.reshape(1, 1, -1, 1), stride=(2, 1))
    return y.reshape(n, c, y.shape[2], y.shape[3])


def _on_active(images: torch.Tensor, active: torch.Tensor,
               fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run `fn` on the active samples only, leaving the others bit-identical."""
    idx = active.nonzero().flatten()
    if idx.numel() == 0:
        return images
    return images.index_copy(0, idx, fn(images.index_select(0, idx), idx))


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror integer coordinates into [0, size) without repeating the edge (F.pad 'reflect')."""
    period = 2 * (size - 1)
    i = torch.remainder(i, period)
    return torch.where(i > size - 1, period - i, i)


def _blit(images: torch.Tensor, xflip: torch.Tensor, rot90: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Exact pixel blitting: flip, then quarter turns, then integer translation with reflect padding.

    Works backwards from each output pixel to its source pixel, then gathers (differentiable). On
    non-square images a quarter turn's source coordinates are rounded and reflected into the frame."""
    n, c, h, w = images.shape
    device = images.device
    cx, cy = (w - 1) / 2, (h - 1) / 2
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    u = x - cx - shift[:, 0, None, None]  # undo the translation
    v = y - cy - shift[:, 1, None, None]
    # One torch.rot90 quarter turn reads out[v, u] from in[u, -v]; k turns use cos/sin of k * 90 deg.
    k = (rot90 % 4)[:, None, None]
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device)[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device)[k]
    u, v = cos * u - sin * v, sin * u + cos * v
    u = torch.where(xflip[:, None, None], -u, u)
    src_x = _reflect(torch.round(u + cx).long(), w)
    src_y = _reflect(torch.round(v + cy).long(), h)
    index = (src_y * w + src_x).reshape(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


def _recolor(images: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """Apply [N, 4, 4] colour matrices to RGB images; greyscale images get the grey-in/grey-out part."""
    n, c, h, w = images.shape
    color = color.to(device=images.device, dtype=images.dtype)
    x = images.reshape(n, c, h * w)
    if c == 3:
        x = color[:, :3, :3] @ x + color[:, :3, 3:]
    elif c == 1:
        # A grey pixel (g, g, g) maps to mean over output channels of (row sum * g + offset).
        gain = color[:, :3, :3].sum(dim=2).mean(dim=1)
        offset = color[:, :3, 3].mean(dim=1)
        x = x * gain[:, None, None] + offset[:, None, None]
    else:
        raise ValueError(f"colour augmentation needs 1 or 3 channels, got {c}")
    return x.reshape(n, c, h, w)


def make_augment_pipe(preset: str = "bgc", **overrides) -> AugmentPipe:
    """AugmentPipe with the groups of a preset enabled: 'b' blit, 'g' geometric, 'c' colour, or a
    combination ('bg', 'bgc'; also 'blit', 'geom', 'color'). `overrides` are AugmentPipe kwargs."""
    if preset not in PRESETS:
        raise UserError(f"augment preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    enabled = {name: float(letter in PRESETS[preset]) for letter, group in _GROUPS.items() for name in group}
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

    def __init__(self, target: float = 0.6, interval: int = 4, ada_kimg: float | None = None):
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
