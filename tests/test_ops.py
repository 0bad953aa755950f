"""Low-level ops against NumPy/SciPy references written from the definitions, not from our code.

upfirdn2d: insert up-1 zeros after every pixel, pad (negative = crop), convolve with the FIR filter
keeping only fully covered outputs ("valid"), multiply by gain, keep every down-th pixel.
conv2d_resample: padding happens once, at the start; up = upfirdn2d(up, gain=up^2) then conv,
down = conv then upfirdn2d(down). Modulated conv: Karras et al. 2020, eqs. 1-3.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from stylegan_blend.networks.layers import FullyConnectedLayer, SynthesisLayer
from stylegan_blend.networks.ops import (
    bias_act,
    conv2d_resample,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

RNG = np.random.default_rng(0)


def randn(*shape) -> np.ndarray:
    return RNG.standard_normal(shape)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def close(ours: torch.Tensor, ref: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(ours.detach().double().numpy(), ref, atol=atol, rtol=1e-5)


# ---------------------------------------------------------------- NumPy references


def ref_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip=False, gain=1.0):
    """x [N, C, H, W]; f 2-D; up/down (x, y); pad (x0, x1, y0, y1) in upsampled pixels."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * upy, w * upx))
    u[:, :, ::upy, ::upx] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0): u.shape[2] - max(-py1, 0), max(-px0, 0): u.shape[3] - max(-px1, 0)]
    filt = signal.correlate2d if flip else signal.convolve2d
    y = np.stack([np.stack([filt(u[i, j], f, mode="valid") for j in range(c)]) for i in range(n)])
    return (y * gain)[:, :, ::downy, ::downx]


def ref_conv(x, w, groups=1, flip_weight=True):
    """Valid grouped 2-D conv; flip_weight=True is correlation (what deep-learning 'conv' means)."""
    n, cin = x.shape[:2]
    cout, cpg = w.shape[:2]
    filt = signal.correlate2d if flip_weight else signal.convolve2d
    opg = cout // groups
    out = []
    for i in range(n):
        chans = []
        for o in range(cout):
            g = o // opg
            chans.append(sum(filt(x[i, g * cpg + k], w[o, k], mode="valid") for k in range(cpg)))
        out.append(np.stack(chans))
    return np.stack(out)


def ref_conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True):
    fh, fw = (1, 1) if f is None else f.shape
    p = [padding] * 4
    if up > 1:
        p = [p[0] + (fw + up - 1) // 2, p[1] + (fw - up) // 2, p[2] + (fh + up - 1) // 2, p[3] + (fh - up) // 2]
    if down > 1:
        p = [p[0] + (fw - down + 1) // 2, p[1] + (fw - down) // 2, p[2] + (fh - down + 1) // 2, p[3] + (fh - down) // 2]
    x = ref_upfirdn2d(x, f if up > 1 else np.ones((1, 1)), up=(up, up), pad=p, gain=up * up)
    x = ref_conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = ref_upfirdn2d(x, f, down=(down, down))
    return x


def ref_modulated_conv(x, weight, styles, demodulate=True, up=1, padding=0, f=None, flip_weight=True):
    out = []
    for i in range(x.shape[0]):
        wi = weight * styles[i][None, :, None, None]  # eq. 1: w' = s_i * w
        if demodulate:  # eq. 3: w'' = w' / sqrt(sum_{i,k} w'^2 + eps)
            wi = wi / np.sqrt((wi ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        out.append(ref_conv2d_resample(x[i:i + 1], wi, f=f, up=up, padding=padding, flip_weight=flip_weight)[0])
    return np.stack(out)


def ref_lrelu_act(x, b, gain=math.sqrt(2), clamp=None):
    y = x + b[None, :, None, None]
    y = np.where(y >= 0, y, 0.2 * y) * gain
    return y if clamp is None else np.clip(y, -clamp, clamp)


FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


# ---------------------------------------------------------------- upfirdn2d and friends


@pytest.mark.parametrize("up,down,pad,flip,gain,taps", [
    (1, 1, (0, 0, 0, 0), False, 1.0, "fir"),
    (2, 1, (2, 1, 2, 1), False, 4.0, "fir"),
    (1, 2, (1, 1, 1, 1), False, 1.0, "fir"),
    (1, 1, (3, 0, 1, 2), False, 1.0, "random"),
    (2, 1, (-1, 2, 0, -2), True, 3.0, "random"),      # negative padding crops, asymmetric filter
    (1, 2, (2, -1, -1, 3), False, -0.5, "random"),    # negative gain
    ((2, 1), (1, 2), (1, 2, 0, 1), True, 1.5, "random_rect"),  # separate x/y factors, 3x4 filter
    (3, 1, (2, 2, 2, 2), False, 9.0, "1d"),           # 1-D taps = separable outer product
])
def test_upfirdn2d_matches_reference(up, down, pad, flip, gain, taps):
    x = randn(2, 3, 7, 6)
    up2 = up if isinstance(up, tuple) else (up, up)
    down2 = down if isinstance(down, tuple) else (down, down)
    f1d = None
    if taps == "fir":
        f = FIR
    elif taps == "random":
        f = randn(4, 4)
    elif taps == "random_rect":
        f = randn(3, 4)
    else:
        f1d = np.array([1.0, -2.0, 4.0])
        f = np.outer(f1d, f1d)
    ours = upfirdn2d(t(x), t(f if f1d is None else f1d), up=list(up2), down=list(down2), padding=list(pad),
                     flip_filter=flip, gain=gain)
    close(ours, ref_upfirdn2d(x, f, up=up2, down=down2, pad=pad, flip=flip, gain=gain))


def test_upfirdn2d_without_filter_is_pad_and_decimate():
    x = randn(1, 2, 5, 5)
    ours = upfirdn2d(t(x), None, down=2, padding=[1, 0, 0, 1], gain=2.0)
    ref = np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 0)))[:, :, ::2, ::2] * 2
    close(ours, ref)


def test_upsample2d_is_the_3_1_interpolation_of_the_1331_filter():
    """With [1,3,3,1], x2 upsampling gives y[2i] = (3 x[i] + x[i-1]) / 4, y[2i+1] = (3 x[i] + x[i+1]) / 4
    along each axis (zeros beyond the border) - the closed form of the FIR definition."""
    x = randn(2, 3, 5, 4)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))

    def up1d(a, axis):
        a = np.moveaxis(a, axis, -1)
        y = np.zeros(a.shape[:-1] + (2 * (a.shape[-1] - 2),))
        y[..., 0::2] = 0.75 * a[..., 1:-1] + 0.25 * a[..., :-2]
        y[..., 1::2] = 0.75 * a[..., 1:-1] + 0.25 * a[..., 2:]
        return np.moveaxis(y, -1, axis)

    ref = up1d(up1d(xp, 3), 2)
    close(upsample2d(t(x), setup_filter([1, 3, 3, 1])), ref)
    assert upsample2d(t(x), setup_filter([1, 3, 3, 1])).shape == (2, 3, 10, 8)


def test_downsample2d_is_the_1331_average_of_each_pixel_pair():
    """y[n] = (x[2n-1] + 3 x[2n] + 3 x[2n+1] + x[2n+2]) / 8 along each axis, zeros beyond the border."""
    x = randn(2, 3, 8, 6)

    def down1d(a, axis):
        a = np.moveaxis(a, axis, -1)
        p = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(1, 1)])
        y = (p[..., 0:-2:2] + 3 * p[..., 1:-1:2] + 3 * p[..., 2::2] + p[..., 3::2]) / 8
        return np.moveaxis(y, -1, axis)

    close(downsample2d(t(x), setup_filter([1, 3, 3, 1])), down1d(down1d(x, 3), 2))


def test_resampling_preserves_a_constant_image_away_from_borders():
    x = torch.full((1, 1, 8, 8), 2.0)
    f = setup_filter([1, 3, 3, 1])
    assert torch.allclose(upsample2d(x, f)[..., 2:-2, 2:-2], torch.tensor(2.0))
    assert torch.allclose(downsample2d(x, f)[..., 1:-1, 1:-1], torch.tensor(2.0))


# ---------------------------------------------------------------- conv2d_resample


@pytest.mark.parametrize("up,down,k,groups,flip_weight", [
    (1, 1, 3, 1, True), (1, 1, 3, 2, False),
    (2, 1, 3, 1, False), (2, 1, 3, 2, False), (2, 1, 1, 1, True), (2, 1, 1, 3, True),
    (1, 2, 3, 1, True), (1, 2, 3, 3, True), (1, 2, 1, 1, True), (1, 2, 1, 2, False),
])
def test_conv2d_resample_matches_reference(up, down, k, groups, flip_weight):
    cin, cout = 6, 6
    x = randn(2, cin, 8, 8)
    w = randn(cout, cin // groups, k, k)
    f = None if up == down == 1 else FIR
    ours = conv2d_resample(t(x), t(w), f=None if f is None else t(f), up=up, down=down, padding=k // 2,
                           groups=groups, flip_weight=flip_weight)
    ref = ref_conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2, groups=groups, flip_weight=flip_weight)
    assert ours.shape == ref.shape == (2, cout, 8 * up // down, 8 * up // down)
    close(ours, ref, atol=1e-4)


# ---------------------------------------------------------------- modulated conv


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,demodulate,k", [(1, True, 3), (2, True, 3), (1, False, 1), (1, False, 3), (2, False, 3)])
def test_modulated_conv2d_matches_reference(fused, up, demodulate, k):
    x, weight, styles = randn(3, 5, 6, 6), randn(4, 5, k, k), randn(3, 5)
    noise = randn(1, 1, 6 * up, 6 * up)
    f = FIR if up > 1 else None
    ours = modulated_conv2d(t(x), t(weight), t(styles), noise=t(noise), up=up, padding=k // 2,
                            resample_filter=None if f is None else t(f), demodulate=demodulate,
                            flip_weight=(up == 1), fused_modconv=fused)
    ref = ref_modulated_conv(x, weight, styles, demodulate=demodulate, up=up, padding=k // 2, f=f,
                             flip_weight=(up == 1)) + noise
    close(ours, ref, atol=1e-4)


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv2d_inference_path_matches_reference(up):
    """No autograd + channels-last input (what G does on CPU) takes the in-place/NHWC-kernel path."""
    x, weight, styles, noise = randn(1, 5, 6, 6), randn(4, 5, 3, 3), randn(1, 5), randn(6 * up, 6 * up)
    f = FIR if up > 1 else None
    with torch.inference_mode():
        ours = modulated_conv2d(t(x).contiguous(memory_format=torch.channels_last), t(weight), t(styles),
                                noise=t(noise), up=up, padding=1, resample_filter=None if f is None else t(f),
                                flip_weight=(up == 1))
    ref = ref_modulated_conv(x, weight, styles, up=up, padding=1, f=f, flip_weight=(up == 1)) + noise
    close(ours, ref, atol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("inference", [True, False])
@pytest.mark.parametrize("noise_shape", [(6, 6), (3, 1, 6, 6), None])
def test_modulated_conv2d_bias_and_gain_epilogue(fused, inference, noise_shape):
    """gain * (conv + noise + bias), whichever path (in-place/out-of-place, fused/batched) runs."""
    x, weight, styles, bias = randn(3, 5, 6, 6), randn(4, 5, 3, 3), randn(3, 5), randn(4)
    noise = None if noise_shape is None else randn(*noise_shape)
    xt = t(x).contiguous(memory_format=torch.channels_last) if inference else t(x)
    with torch.inference_mode(inference):
        ours = modulated_conv2d(xt, t(weight), t(styles), noise=None if noise is None else t(noise), padding=1,
                                fused_modconv=fused, bias=t(bias), gain=0.7)
    ref = ref_modulated_conv(x, weight, styles, padding=1) + (0 if noise is None else noise) + bias[:, None, None]
    close(ours, 0.7 * ref, atol=1e-4)


def test_modulated_conv2d_sees_weight_updates_without_autograd():
    """Nothing derived from the weight may be reused across calls (EMA/blending update weights in place,
    sometimes through .data, which bypasses the version counter)."""
    x, styles = t(randn(1, 5, 6, 6)), t(randn(1, 5))
    weight = torch.nn.Parameter(t(randn(4, 5, 3, 3)))
    with torch.no_grad():
        modulated_conv2d(x, weight, styles, padding=1)
        weight.mul_(torch.linspace(0.5, 2, 4).reshape(4, 1, 1, 1))
        after_inplace = modulated_conv2d(x, weight, styles, padding=1)
        close(after_inplace, ref_modulated_conv(x.double().numpy(), weight.double().numpy(),
                                                styles.double().numpy(), padding=1), atol=1e-4)
        weight.data.mul_(-1.5)
        close(modulated_conv2d(x, weight, styles, padding=1),
              ref_modulated_conv(x.double().numpy(), weight.double().numpy(), styles.double().numpy(), padding=1),
              atol=1e-4)
        weight.data = t(randn(4, 5, 3, 3))
        after_swap = modulated_conv2d(x, weight, styles, padding=1)
        close(after_swap, ref_modulated_conv(x.double().numpy(), weight.double().numpy(),
                                             styles.double().numpy(), padding=1), atol=1e-4)


@pytest.mark.parametrize("fused,up", [(True, 1), (True, 2), (False, 1), (False, 2)])
def test_modulated_conv2d_gradients(fused, up):
    """Backward through the transposed-conv/blur path is what training uses; check it numerically."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    styles = torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, generator=g, requires_grad=True)
    noise = torch.randn(4 * up, 4 * up, dtype=torch.float64, generator=g)
    f = setup_filter([1, 3, 3, 1]).double()

    def fn(x, weight, styles, bias):
        return modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f,
                                flip_weight=(up == 1), fused_modconv=fused, bias=bias, gain=1.3)
    assert torch.autograd.gradcheck(fn, (x, weight, styles, bias))


def test_demodulation_normalises_each_output_feature_map():
    """Eq. 3's purpose: for unit-variance i.i.d. inputs the demodulated output has unit variance."""
    torch.manual_seed(0)
    x = torch.randn(2, 64, 32, 32)
    y = modulated_conv2d(x, torch.randn(8, 64, 3, 3), torch.randn(2, 64) * 5, padding=1)
    assert torch.allclose(y[..., 1:-1, 1:-1].std(dim=[2, 3]), torch.ones(2, 8), atol=0.08)


def test_bias_act_lrelu_gain_and_clamp():
    x, b = randn(2, 3, 4, 4) * 5, randn(3)
    close(bias_act(t(x), t(b), act="lrelu", gain=math.sqrt(2) * 0.5, clamp=2.0),
          ref_lrelu_act(x, b, gain=math.sqrt(2) * 0.5, clamp=2.0))
    close(bias_act(t(x), t(b)), x + b[None, :, None, None])


def test_fully_connected_equalised_lr():
    layer = FullyConnectedLayer(6, 4, lr_multiplier=0.01, bias_init=0.5)
    x = randn(3, 6)
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    close(layer(t(x)), x @ (w * 0.01 / math.sqrt(6)).T + b * 0.01)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_layer_is_modconv_plus_const_noise_bias_lrelu_clamp(up, fused):
    """One StyleGAN2 layer from the definitions: styles = affine(w), modulated conv, + noise_const x
    noise_strength, + bias, lrelu x sqrt(2) x gain, clamp at conv_clamp x gain."""
    torch.manual_seed(1)
    layer = SynthesisLayer(4, 5, w_dim=6, resolution=8, up=up, conv_clamp=0.7)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
    x, w = randn(2, 4, 8 // up, 8 // up), randn(2, 6)
    with torch.no_grad():
        ours = layer(t(x), t(w), noise_mode="const", fused_modconv=fused, gain=0.5)
        styles = layer.affine(t(w)).double().numpy()
    p = {k: v.detach().double().numpy() for k, v in layer.state_dict().items()}
    conv = ref_modulated_conv(x, p["weight"], styles, up=up, padding=1, f=FIR if up > 1 else None,
                              flip_weight=(up == 1))
    conv = conv + p["noise_const"] * 0.3
    close(ours, ref_lrelu_act(conv, p["bias"], gain=math.sqrt(2) * 0.5, clamp=0.35), atol=1e-4)
