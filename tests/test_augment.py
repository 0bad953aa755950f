"""ADA pipeline, ADA controller and DiffAugment, checked against NumPy/SciPy references."""
import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from scipy.spatial.transform import Rotation

from stylegan_blend.errors import UserError
from stylegan_blend.training.augment import SYM6, AugmentParams, AugmentPipe, DiffAugment, make_augment_pipe
from stylegan_blend.training.diffaugment import cutout, translate

OPS = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
       "brightness", "contrast", "lumaflip", "hue", "saturation"]


def only(op: str, p: float = 1.0) -> AugmentPipe:
    pipe = AugmentPipe(**{name: float(name == op) for name in OPS})
    pipe.p.fill_(p)
    return pipe


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(n=4, c=3, h=16, w=16, seed=0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=gen(seed)) * 2 - 1


def smooth_image(size: int = 32) -> np.ndarray:
    """Band-limited RGB test image (periods >= 10 px), so resampling errors stay small."""
    y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([np.sin(2 * np.pi * (1.3 * x + 0.7 * y) / size * 1.5 + c)
                     + 0.5 * np.cos(2 * np.pi * y / size * 2 - c) for c in range(3)]).astype(np.float32)


def params(n: int = 1, **values) -> AugmentParams:
    prm = AugmentParams.identity(n)
    for k, v in values.items():
        setattr(prm, k, torch.as_tensor(v, dtype=getattr(prm, k).dtype))
    return prm


# ------------------------------------------------------------------------------------ identity
def test_p_zero_returns_input_exactly():
    x = rand_images()
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(0)
    assert torch.equal(pipe(x), x)


def test_identity_params_leave_samples_bit_identical():
    x = rand_images(n=3)
    pipe = make_augment_pipe("bgc")
    prm = params(3, scale=[1.0, 1.3, 1.0], brightness=[0.0, 0.0, 0.2])
    out = pipe.apply(x, prm)
    assert torch.equal(out[0], x[0])
    assert not torch.equal(out[1], x[1]) and not torch.equal(out[2], x[2])


# ------------------------------------------------------------------------------- differentiable
@pytest.mark.parametrize("op", OPS)
def test_every_op_fires_at_p1_and_passes_gradients(op):
    x = rand_images(n=6).requires_grad_(True)
    out = only(op)(x, generator=gen(1))
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    weight = torch.rand(out.shape, generator=gen(2))
    (out * weight).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradient_matches_finite_differences_for_whole_pipeline():
    pipe = make_augment_pipe("bgc")
    prm = params(2, xflip=[True, False], rot90=[1, 3], shift=[[1, -2], [0, 2]], scale=[1.2, 0.9],
                 rotate_pre=[0.3, -1.0], aniso=[0.9, 1.1], rotate_post=[0.2, 0.0],
                 frac_shift=[[0.4, -1.3], [2.2, 0.1]], brightness=[0.1, -0.2], contrast=[1.3, 0.7],
                 lumaflip=[True, False], hue=[0.5, -2.0], saturation=[0.5, 1.7])
    x = rand_images(n=2, h=16, w=16).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pipe.apply(t, prm), (x,), fast_mode=True)


def test_second_derivative_for_r1_on_augmented_reals():
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(1)
    conv = torch.nn.Conv2d(3, 1, 3)
    x = rand_images().requires_grad_(True)
    logits = conv(pipe(x, generator=gen(3)).square()).sum()
    (grad,) = torch.autograd.grad(logits, x, create_graph=True)
    grad.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- blitting
def test_forward_is_apply_of_sampled_params_and_deterministic():
    x = rand_images(n=5)
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(0.7)
    a = pipe(x, generator=gen(7))
    assert torch.equal(a, pipe.apply(x, pipe.sample_params(5, 16, 16, generator=gen(7))))
    assert torch.equal(a, pipe(x, generator=gen(7)))
    assert not torch.equal(a, pipe(x, generator=gen(8)))
    torch.manual_seed(11)
    b = pipe(x)
    torch.manual_seed(11)
    assert torch.equal(b, pipe(x))


def test_xflip_mirrors_exactly():
    x = rand_images(n=2)
    out = make_augment_pipe("b").apply(x, params(2, xflip=[True, False]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate90_equals_torch_rot90(k):
    x = rand_images(n=1)
    out = make_augment_pipe("b").apply(x, params(1, rot90=[k]))
    assert torch.equal(out, torch.rot90(x, k, dims=(2, 3)))


@pytest.mark.parametrize("shift", [(3, 0), (-2, 1), (0, -4), (2, 2)])
def test_integer_translation_reflect_pads(shift):
    tx, ty = shift
    x = rand_images(n=1)
    out = make_augment_pipe("b").apply(x, params(1, shift=[[tx, ty]]))
    pad = 4
    padded = np.pad(x.numpy(), [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="reflect")
    ref = padded[:, :, pad - ty: pad - ty + 16, pad - tx: pad - tx + 16]
    np.testing.assert_array_equal(out.numpy(), ref)


def test_blit_order_flip_then_rotate_then_shift():
    x = rand_images(n=1)
    out = make_augment_pipe("b").apply(x, params(1, xflip=[True], rot90=[1], shift=[[2, 0]]))
    ref = torch.rot90(x.flip(-1), 1, dims=(2, 3)).numpy()
    ref = np.pad(ref, [(0, 0), (0, 0), (0, 0), (2, 0)], mode="reflect")[..., :16]
    np.testing.assert_array_equal(out.numpy(), ref)


# --------------------------------------------------------------------------------- geometric
def scipy_warp(img: np.ndarray, g_inv: np.ndarray) -> np.ndarray:
    """Reference resampling: output pixel (x, y) reads input at g_inv @ (x, y) in centred coords."""
    c = (img.shape[-1] - 1) / 2
    swap = np.array([[0, 1], [1, 0]])  # (x, y) <-> (row, col)
    matrix = swap @ g_inv[:2, :2] @ swap
    offset = np.array([c, c]) - matrix @ np.array([c, c]) + swap @ g_inv[:2, 2]
    return np.stack([scipy.ndimage.affine_transform(ch, matrix, offset, order=3, mode="mirror") for ch in img])


@pytest.mark.parametrize("values", [
    dict(scale=[1.25]), dict(scale=[0.8]), dict(rotate_pre=[0.5]), dict(aniso=[1.2]),
    dict(rotate_post=[-2.0]), dict(frac_shift=[[1.5, -0.7]]),
    dict(scale=[1.1], rotate_pre=[0.3], aniso=[0.85], rotate_post=[1.0], frac_shift=[[0.5, 1.0]]),
])
def test_geometric_ops_match_scipy_affine_transform(values):
    img = smooth_image(32)
    prm = params(1, **values)
    g_inv = prm.geometric_matrix()[0].double().numpy()
    ref = scipy_warp(img, g_inv)
    out = make_augment_pipe("g").apply(torch.from_numpy(img)[None], prm)[0].numpy()
    centre = (slice(None), slice(8, 24), slice(8, 24))  # away from the differing border handling
    assert np.abs(out[centre] - ref[centre]).max() < 0.03


def test_geometric_matrix_is_the_documented_chain():
    s, t1, a, t2, tx, ty = 1.3, 0.4, 0.8, -1.1, 2.0, -3.0
    prm = params(1, scale=[s], rotate_pre=[t1], aniso=[a], rotate_post=[t2], frac_shift=[[tx, ty]])

    def rot(t):
        return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])

    forward = (np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]) @ rot(t2) @ np.diag([a, 1 / a, 1])
               @ rot(t1) @ np.diag([s, s, 1]))
    np.testing.assert_allclose(prm.geometric_matrix()[0].numpy(), np.linalg.inv(forward), atol=1e-5)


def test_quarter_turn_through_resampler_pivots_on_the_centre():
    img = torch.from_numpy(smooth_image(32))[None]
    out = make_augment_pipe("g").apply(img, params(1, rotate_pre=[math.pi / 2]))
    ref = torch.rot90(img, -1, dims=(2, 3))
    assert (out - ref)[..., 4:-4, 4:-4].abs().max() < 0.01


def test_integer_shift_through_resampler_is_nearly_exact():
    img = torch.from_numpy(smooth_image(32))[None]
    out = make_augment_pipe("g").apply(img, params(1, frac_shift=[[2.0, -3.0]]))
    ref = torch.roll(img, shifts=(-3, 2), dims=(2, 3))
    assert (out - ref)[..., 6:-6, 6:-6].abs().max() < 1e-4


def test_sym6_is_an_orthonormal_filter_with_six_vanishing_moments():
    h = np.array(SYM6)
    assert h.sum() == pytest.approx(math.sqrt(2))
    for n in range(6):
        assert np.dot(h[: len(h) - 2 * n], h[2 * n:]) == pytest.approx(float(n == 0), abs=1e-12)
    g = h[::-1] * (-1.0) ** np.arange(len(h))  # quadrature-mirror high-pass
    k = np.arange(len(h)) / len(h)
    for m in range(6):
        assert np.dot(k ** m, g) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------------- colour
def numpy_color(x: np.ndarray, b, c, flip, hue, s) -> np.ndarray:
    """Reference colour chain on [3, H, W]: brightness, contrast, luma flip, hue rotation, saturation."""
    x = (x + b) * c
    if flip:
        x = x - 2 * x.mean(axis=0, keepdims=True)
    axis = np.ones(3) / math.sqrt(3)
    rot = Rotation.from_rotvec(axis * hue).as_matrix()
    x = np.einsum("ij,jhw->ihw", rot, x)
    grey = x.mean(axis=0, keepdims=True)
    return grey + s * (x - grey)


def test_color_chain_matches_numpy_reference():
    x = rand_images(n=3)
    values = dict(brightness=[0.1, -0.3, 0.0], contrast=[1.5, 0.7, 1.0], lumaflip=[True, False, True],
                  hue=[0.7, -2.5, 0.0], saturation=[0.3, 1.8, 1.0])
    out = make_augment_pipe("c").apply(x, params(3, **values))
    for i in range(3):
        ref = numpy_color(x[i].numpy(), *(np.asarray(values[k])[i] for k in
                                          ["brightness", "contrast", "lumaflip", "hue", "saturation"]))
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)


def test_single_color_ops():
    x = rand_images(n=1)
    pipe = make_augment_pipe("c")
    np.testing.assert_allclose(pipe.apply(x, params(brightness=[0.25])).numpy(), x.numpy() + 0.25, atol=1e-6)
    np.testing.assert_allclose(pipe.apply(x, params(contrast=[2.0])).numpy(), x.numpy() * 2, atol=1e-6)
    grey = x.numpy().mean(axis=1, keepdims=True).repeat(3, axis=1)
    np.testing.assert_allclose(pipe.apply(x, params(saturation=[0.0])).numpy(), grey, atol=1e-6)
    np.testing.assert_allclose(pipe.apply(x, params(lumaflip=[True])).numpy(), x.numpy() - 2 * grey, atol=1e-6)
    # A third of a turn about the grey axis permutes the channels: (r, g, b) -> (b, r, g).
    np.testing.assert_allclose(pipe.apply(x, params(hue=[2 * math.pi / 3])).numpy(),
                               x.numpy()[:, [2, 0, 1]], atol=1e-5)


def test_greyscale_images_get_brightness_and_contrast_only():
    x = rand_images(n=1, c=1)
    out = make_augment_pipe("c").apply(x, params(brightness=[0.2], contrast=[0.5], hue=[1.0], saturation=[3.0]))
    np.testing.assert_allclose(out.numpy(), (x.numpy() + 0.2) * 0.5, atol=1e-6)


# --------------------------------------------------------------------------------- sampling
def test_sampled_parameters_follow_the_paper_distributions():
    n = 20000
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(1)
    prm = pipe.sample_params(n, 64, 64, generator=gen(5))
    assert prm.xflip.float().mean() == pytest.approx(0.5, abs=0.02)
    assert np.bincount(prm.rot90.numpy(), minlength=4) / n == pytest.approx([0.25] * 4, abs=0.02)
    assert prm.shift.abs().max() == 8 and prm.shift.float().std() == pytest.approx(16 / math.sqrt(12), rel=0.05)
    assert torch.log2(prm.scale).std() == pytest.approx(0.2, rel=0.05)
    assert torch.log2(prm.aniso).std() == pytest.approx(0.2, rel=0.05)
    assert (prm.frac_shift / 64).std() == pytest.approx(0.125, rel=0.05)
    assert prm.brightness.std() == pytest.approx(0.2, rel=0.05)
    assert torch.log2(prm.contrast).std() == pytest.approx(0.5, rel=0.05)
    assert torch.log2(prm.saturation).std() == pytest.approx(1.0, rel=0.05)
    assert prm.hue.abs().max() <= math.pi and prm.hue.std() == pytest.approx(math.pi / math.sqrt(3), rel=0.05)
    assert prm.lumaflip.float().mean() == pytest.approx(0.5, abs=0.02)

    pipe.p.fill_(0.3)
    prm = pipe.sample_params(n, 64, 64, generator=gen(6))
    assert (prm.brightness != 0).float().mean() == pytest.approx(0.3, abs=0.02)
    assert (prm.scale != 1).float().mean() == pytest.approx(0.3, abs=0.02)
    assert (prm.xflip).float().mean() == pytest.approx(0.15, abs=0.02)
    assert (prm.rot90 != 0).float().mean() == pytest.approx(0.3 * 0.75, abs=0.02)
    rotated = (prm.rotate_pre != 0) | (prm.rotate_post != 0)
    assert rotated.float().mean() == pytest.approx(0.3, abs=0.02)  # pre OR post fires with probability p


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (3, 3, 48, 48), (2, 1, 16, 24)])
def test_any_batch_and_resolution(shape):
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(1)
    x = torch.rand(shape, generator=gen(0))
    out = pipe(x, generator=gen(1))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_low_precision_input_under_autocast_keeps_its_dtype():
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(1)
    x = rand_images().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pipe(x, generator=gen(4))
    ref = pipe(x.float(), generator=gen(4))
    assert out.dtype == torch.bfloat16 and (out.float() - ref).abs().max() < 0.05


def test_p_is_a_checkpointed_buffer_and_presets():
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(0.42)
    state = pipe.state_dict()
    assert list(state) == ["p"] and state["p"].ndim == 0
    other = make_augment_pipe("bgc")
    other.load_state_dict(state)
    assert float(other.p) == pytest.approx(0.42)
    bg = make_augment_pipe("bg")
    assert bg.xflip == 1 and bg.scale == 1 and bg.brightness == 0 and bg.hue == 0
    assert make_augment_pipe("c", hue=0).hue == 0
    with pytest.raises(UserError, match="bgcx"):
        make_augment_pipe("bgcx")


# ------------------------------------------------------------------------------- DiffAugment
def test_diffaugment_shapes_gradients_and_fresh_randomness():
    aug = DiffAugment()
    x = rand_images(n=4, h=32, w=32).requires_grad_(True)
    out = aug(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert not torch.equal(aug(x, generator=gen(1)), aug(x, generator=gen(2)))
    assert torch.equal(aug(x, generator=gen(3)), aug(x, generator=gen(3)))
    assert torch.equal(DiffAugment("")(x), x)
    with pytest.raises(UserError, match="colour"):
        DiffAugment("colour")


def test_diffaugment_colour_ranges():
    x = rand_images(n=64, h=8, w=8)
    d = (DiffAugment("brightness")(x, generator=gen(0)) - x).numpy()
    assert np.ptp(d, axis=(1, 2, 3)).max() < 1e-6 and np.abs(d).max() <= 0.5
    assert d[:, 0, 0, 0].min() < -0.4 and d[:, 0, 0, 0].max() > 0.4

    out = DiffAugment("saturation")(x, generator=gen(0)).numpy()
    grey = x.numpy().mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out.mean(axis=1, keepdims=True), grey, atol=1e-5)
    k = ((out - grey) * (x.numpy() - grey)).sum(axis=(1, 2, 3)) / ((x.numpy() - grey) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(out - grey, k[:, None, None, None] * (x.numpy() - grey), atol=1e-5)
    assert k.min() >= 0 and k.max() <= 2 and k.max() - k.min() > 1.5

    out = DiffAugment("contrast")(x, generator=gen(0)).numpy()
    mean = x.numpy().mean(axis=(1, 2, 3), keepdims=True)
    k = (out - mean)[:, 0, 0, 0] / (x.numpy() - mean)[:, 0, 0, 0]
    np.testing.assert_allclose(out - mean, k[:, None, None, None] * (x.numpy() - mean), atol=1e-5)
    assert k.min() >= 0.5 and k.max() <= 1.5


def test_diffaugment_translation_is_a_zero_filled_shift_of_at_most_an_eighth():
    x = torch.rand(16, 3, 16, 16, generator=gen(0)) + 0.5  # no zeros in the input
    out = DiffAugment("translation")(x, generator=gen(1)).numpy()
    seen = set()
    for i in range(16):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = np.zeros((3, 20, 20), np.float32)
                ref[:, 2 + dy: 18 + dy, 2 + dx: 18 + dx] = x[i].numpy()
                if np.array_equal(ref[:, 2:18, 2:18], out[i]):
                    matches.append((dy, dx))
        assert len(matches) == 1
        dy, dx = matches[0]
        assert (out[i] == 0).mean() == pytest.approx(1 - (16 - abs(dy)) * (16 - abs(dx)) / 256)
        seen.add(matches[0])
    assert len(seen) > 5
    np.testing.assert_array_equal(translate(x[:1], torch.tensor([[1, -2]]))[0, :, 1:, :14].numpy(),
                                  x[0, :, :15, 2:].numpy())


def test_diffaugment_cutout_zeroes_half_size_square_with_expected_area():
    n, size = 2000, 16
    x = torch.ones(n, 1, size, size)
    out = DiffAugment("cutout")(x, generator=gen(2))[:, 0].numpy()
    rows, cols = (out == 0).any(axis=2), (out == 0).any(axis=1)
    # Each sample's zeros are exactly one rectangle (rows x cols), at most 8 x 8, touching the border
    # whenever it is clipped.
    np.testing.assert_array_equal(out == 0, rows[:, :, None] & cols[:, None, :])
    assert rows.sum(1).max() == 8 and cols.sum(1).max() == 8 and rows.sum(1).min() >= 4
    # Expected zero fraction: the 8-px box centre is uniform over the 17 even-size positions.
    covered = np.mean([len(set(range(c - 4, c + 4)) & set(range(size))) for c in range(size + 1)]) / size
    assert (out == 0).mean() == pytest.approx(covered ** 2, rel=0.05)
    box = cutout(torch.ones(1, 1, 6, 6), torch.tensor([[-1, 4]]), [3, 3])[0, 0]
    assert box.eq(0).nonzero().tolist() == [[0, 4], [0, 5], [1, 4], [1, 5]]
