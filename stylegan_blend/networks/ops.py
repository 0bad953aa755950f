"""Low-level StyleGAN2 ops in pure PyTorch: FIR resampling, bias+activation, modulated convolution.

Why hand-written: NVIDIA ships these as CUDA extensions that need a compiler at run time; we need
numerically equivalent ops that run anywhere (CPU tests, any GPU) with no build step.

Conventions follow the StyleGAN2 papers (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", eqs. 1-3 for modulation/demodulation) and the upfirdn2d definition:
upsample by zero insertion -> pad (negative = crop) -> FIR filter (true convolution) -> decimate.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Activation name -> (function, default gain). Gains keep the signal variance roughly constant.
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
}


def activation_gain(name: str) -> float:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name][1]


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "linear",
             gain: float | None = None, clamp: float | None = None, inplace: bool = False) -> torch.Tensor:
    """x + b (broadcast over dim 1), activation, scale by gain, clamp to +-clamp.

    `inplace=True` lets the layers reuse their fresh conv output (each pass over a 256 px feature map
    allocates ~16 MB otherwise); it only takes effect with autograd off (no_grad / inference_mode).
    """
    fn, default_gain = _ACTIVATIONS[act]
    g = default_gain if gain is None else gain
    if not (inplace and can_overwrite()):
        if b is not None:
            x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
        x = fn(x)
        if g != 1:
            x = x * g
        return x if clamp is None else x.clamp(-clamp, clamp)
    if b is not None:
        x.add_(b.reshape([1, -1] + [1] * (x.ndim - 2)))
    if act == "lrelu":
        F.leaky_relu_(x, 0.2)
    elif act == "relu":
        F.relu_(x)
    if g != 1:
        x.mul_(g)
    return x if clamp is None else x.clamp_(-clamp, clamp)


def can_overwrite() -> bool:
    """Overwriting an op's own fresh output is safe when autograd records nothing."""
    return not torch.is_grad_enabled()


def setup_filter(taps: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Normalised 2-D FIR filter (outer product of the 1-D taps), the layout stored in checkpoints."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pad4(p) -> list[int]:
    """[x0, x1, y0, y1] from an int, [x, y] or [x0, x1, y0, y1]."""
    if isinstance(p, int):
        return [p, p, p, p]
    p = list(p)
    return [p[0], p[0], p[1], p[1]] if len(p) == 2 else p


def _pad_crop(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Zero-pad the border by the given amounts; negative amounts crop."""
    if max(x0, x1, y0, y1) > 0:
        x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    return x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0,
              flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample (zero insertion), pad/crop, FIR-filter (convolution), downsample.

    `padding` is [x0, x1, y0, y1] in upsampled pixels; negative values crop. A 1-D filter means the
    separable 2-D filter outer(f, f); None means no filtering. The filter is applied per channel;
    `gain` scales the result (use up**2 after zero insertion).
    Implementation: one depthwise (transposed) conv with the whole 2-D kernel. On CPU this beats two
    1-D passes ~2x, the transposed conv never materialises the zero-inserted image, and symmetric
    padding goes into the conv instead of a padded copy.
    """
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _pad4(padding)
    c = x.shape[1]
    f = torch.ones([1, 1], dtype=x.dtype, device=x.device) if f is None else f.to(x.dtype)
    if f.ndim == 1:
        f = torch.outer(f, f)
    fh, fw = f.shape
    k = f * gain
    if upx > 1 or upy > 1:
        # conv_transpose2d == zero insertion + full convolution == upfirdn2d with padding (f-1, f-up)
        k = k.flip([0, 1]) if flip_filter else k
        x = F.conv_transpose2d(x, k[None, None].expand(c, 1, fh, fw), stride=(upy, upx), groups=c)
        x = _pad_crop(x, px0 - (fw - 1), px1 - (fw - upx), py0 - (fh - 1), py1 - (fh - upy))
        return x[:, :, ::downy, ::downx] if downx > 1 or downy > 1 else x
    k = k if flip_filter else k.flip([0, 1])  # conv2d correlates; a true convolution needs the flip
    conv_pad = (py0, px0)
    if px0 != px1 or py0 != py1 or min(px0, py0) < 0:
        x = _pad_crop(x, px0, px1, py0, py1)
        conv_pad = (0, 0)
    return F.conv2d(x, k[None, None].expand(c, 1, fh, fw), padding=conv_pad, stride=(downy, downx), groups=c)


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    return (f.shape[-1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def upsample2d(x, f, up: int = 2, gain: float = 1):
    """x2 FIR upsampling whose output is exactly `up` times the input size."""
    fw, fh = _filter_size(f)
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x, f, down: int = 2, gain: float = 1):
    """FIR low-pass then decimation; output is input size / `down`."""
    fw, fh = _filter_size(f)
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1, flip_weight: bool = True) -> torch.Tensor:
    """Convolution with optional FIR x2 up- or down-sampling, as StyleGAN2 defines it.

    Semantics (reference): up -> upfirdn2d(up, pad) -> conv(w) -> upfirdn2d(down), with the padding
    fixed once at the start. Implemented with the cheap equivalents: transposed strided conv + blur
    for `up`, blur + strided conv for `down`. `flip_weight=False` means true convolution.
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: simultaneous up- and down-sampling is not supported")
    out_ch, in_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    if up == 1 and down == 1:
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=padding, groups=groups)
    if down > 1:
        w = w if flip_weight else w.flip([2, 3])
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kh == 1 and kw == 1:  # decimate first, then the 1x1 conv on 1/4 of the pixels
            x = upfirdn2d(x, f, down=down, padding=[p0, p1, p0, p1])
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=[p0, p1, p0, p1])
        return F.conv2d(x, w, stride=down, groups=groups)
    # up > 1
    p0 = padding + (fw + up - 1) // 2
    p1 = padding + (fw - up) // 2
    if kh == 1 and kw == 1:  # 1x1 conv commutes with the zero-insertion upsampling
        x = F.conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=[p0, p1, p0, p1], gain=up * up)
    # Transposed conv (stride `up`) == zero insertion + full *convolution* with w, so the true
    # convolution StyleGAN uses here (flip_weight=False) needs no flipped copy. Its output carries
    # kw-1 extra border pixels on the left and kw-up on the right compared with the reference padding.
    if flip_weight:
        w = w.flip([2, 3])
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
    q0, q1 = p0 - (kw - 1), p1 - (kw - up)
    qy0, qy1 = p0 - (kh - 1), p1 - (kh - up)
    return upfirdn2d(x, f, padding=[q0, q1, qy0, qy1], gain=up * up)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True,
                     bias: torch.Tensor | None = None, gain: float = 1.0) -> torch.Tensor:
    """StyleGAN2 modulated convolution (paper eqs. 1-3), returning gain * (conv + noise + bias).

    w'_ijk = s_i * w_ijk;  w''_ijk = w'_ijk / sqrt(sum_ik w'^2 + 1e-8).
    fused: one grouped conv with per-sample weights (cheapest for one sample, and on GPU);
    non-fused: scale activations by s, shared conv, scale outputs by the demodulation coefficients
    (cheapest for CPU batches). Both are the same function.
    `bias`/`gain` let the synthesis layer fold its bias and activation gain (lrelu(g v) = g lrelu(v)
    for g > 0) into the weights and the one epilogue pass instead of extra passes over the output.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv2d: styles shape {tuple(styles.shape)} != {(n, in_ch)}")
    if x.dtype == torch.float16 and demodulate:  # keep fp16 products in range; cancels under demod
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum_ik (s_i w_oik)^2 = sum_i s_i^2 * sum_k w_oik^2  -> no [N,O,I,k,k] tensor needed
        wsq = weight.square().sum(dim=[2, 3])  # [O, I]; recomputed per call (EMA/blends edit weights in place)
        dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [N, O]
    shift = _shift(noise, bias, gain, x.dtype)

    if not fused_modconv:
        scale = None if dcoefs is None else (dcoefs * gain).to(x.dtype).reshape(n, -1, 1, 1)
        x = x * (styles if dcoefs is not None or gain == 1 else styles * gain).to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding,
                            flip_weight=flip_weight)
        return _epilogue(x, scale, shift)

    # per-sample weights in one pass: w[n,o,i] = weight[o,i] * s[n,i] * dcoef[n,o] * gain
    coefs = styles.reshape(n, 1, in_ch) * gain
    if dcoefs is not None:
        coefs = coefs * dcoefs.reshape(n, out_ch, 1)
    if n == 1 and (up == 1 or not flip_weight) and can_overwrite() and x.is_contiguous(
            memory_format=torch.channels_last):
        # write the kernel in the layout the NHWC (transposed) conv reads, so it makes no reordered copy
        shape = [in_ch, out_ch, kh, kw] if up > 1 else [out_ch, in_ch, kh, kw]
        w = torch.empty(shape, dtype=weight.dtype, device=weight.device, memory_format=torch.channels_last)
        w = w.transpose(0, 1) if up > 1 else w
        torch.mul(weight, coefs.reshape(-1, in_ch, 1, 1), out=w)
    else:
        w = (weight.unsqueeze(0) * coefs.reshape(*coefs.shape, 1, 1)).reshape(-1, in_ch, kh, kw)
    if n > 1:  # the batch becomes conv groups; skipped for n == 1, where the view would drop channels-last
        x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding,
                        groups=n, flip_weight=flip_weight)
    return _epilogue(x.reshape(n, -1, *x.shape[2:]) if n > 1 else x, None, shift)


def _shift(noise, bias, gain: float, dtype) -> list[torch.Tensor]:
    """The additive terms gain * noise and gain * bias, broadcastable against [N, C, H, W]."""
    terms = [] if noise is None else [noise.to(dtype) * gain]
    return terms if bias is None else terms + [(bias.to(dtype) * gain).reshape(1, -1, 1, 1)]


def _epilogue(x: torch.Tensor, scale: torch.Tensor | None, shift: list[torch.Tensor]) -> torch.Tensor:
    """x * scale + sum(shift) on a fresh conv output; in place when autograd is off.

    With a per-sample scale (CPU batches) the terms are first summed into one [1|N, C, H, W] tensor,
    so the big output is read and written once (addcmul) instead of once per term.
    """
    if not can_overwrite():
        x = x if scale is None else x * scale
        for term in shift:
            x = x + term
        return x
    if scale is None or not shift:
        if scale is not None:
            x.mul_(scale)
        for term in shift:
            x.add_(term)
        return x
    total = shift[0]
    if len(shift) == 2:  # noise [H, W] or [N, 1, H, W] + bias [1, C, 1, 1], laid out like x
        rows = shift[0].shape[0] if shift[0].ndim == 4 else 1
        total = torch.add(shift[0], shift[1], out=torch.empty_like(x[:rows]))
    return torch.addcmul(total, x, scale, out=x)
