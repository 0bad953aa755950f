"""ADA pipeline against NVIDIA's AugmentPipe (fixture), ADA controller and DiffAugment against hand cases.

`tests/data/nvidia/augment.pt` holds NVIDIA's outputs for seeded inputs and a seeded global RNG (see
tests/data/README.md): ours, given the same seed, must make the same draws and the same images.
"""
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan_blend.errors import UserError
from stylegan_blend.training.augment import OPS, AugmentPipe, DiffAugment, make_augment_pipe
from stylegan_blend.training.diffaugment import cutout, translate

NVIDIA = torch.load(Path(__file__).parent / "data" / "nvidia" / "augment.pt", weights_only=True)
# Both pipelines do the same float32 arithmetic in a different order (polyphase vs zero-stuffed FIR, one
# strided conv vs filter-then-drop, matrix products grouped differently): measured at most 6e-7 here (1.4e-6 on
# outputs up to |7| in trial runs), a few float32 ulps through ~5 stages. The p = 0 case differs by NVIDIA's own
# resampling error (4.8e-6), because ours returns the input. 1e-5 stays far below what a semantic slip moves (a
# flipped rotation, a gate drawn before its value, a flip done as a pixel gather: > 0.1). Gradients: relative to
# their largest entry (the R1 one reaches ~100).
TOL = 1e-5


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(n=4, c=3, h=16, w=16, seed=0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=gen(seed)) * 2 - 1


def nvidia_input(case: dict) -> torch.Tensor:
    """The fixture's inputs, made the way tools/make_nvidia_fixtures.py made them."""
    return torch.rand(case["shape"], generator=gen(case["input_seed"])) * 2 - 1


def pipe_for(case: dict) -> AugmentPipe:
    pipe = AugmentPipe(**case["kwargs"])
    pipe.p.fill_(case["p"])
    return pipe


# ------------------------------------------------------------------------------ NVIDIA parity
@pytest.mark.parametrize("case", NVIDIA["cases"], ids=[c["name"] for c in NVIDIA["cases"]])
def test_same_seed_same_images_as_nvidia(case):
    """Per op at p = 1 and 0.5, presets bgc / bgcfnc, p = 0, non-square, greyscale, changed strengths."""
    x = nvidia_input(case)
    torch.manual_seed(case["seed"])
    out = pipe_for(case)(x)
    after = torch.rand(4)
    torch.testing.assert_close(out, case["out"], atol=TOL, rtol=0)
    assert torch.equal(after, case["next_draws"]), "a different number of random draws than NVIDIA's"


SINGLE_OP_HALF_P = [c for c in NVIDIA["cases"] if c["name"].split("_")[0] in OPS and c["p"] == 0.5]


@pytest.mark.parametrize("case", SINGLE_OP_HALF_P, ids=[c["name"] for c in SINGLE_OP_HALF_P])
def test_half_probability_cases_fire_on_some_samples_only(case):
    """Guard on the fixture: at p = 0.5 each single-op case holds augmented and untouched samples, so the
    draws' gates (not just their values) are compared."""
    moved = (case["out"] - nvidia_input(case)).abs().amax(dim=(1, 2, 3))
    assert (moved > 1e-3).any() and (moved < 1e-3).any(), moved


@pytest.mark.parametrize("kind", ["projection", "r1"])
def test_gradients_match_nvidia(kind):
    """G trains through D's augmented input (first order); R1 on augmented reals differentiates the input
    gradient again (second order through grid_sample and the filters)."""
    ref = NVIDIA["grads"][kind]
    x = nvidia_input(ref).requires_grad_(True)
    w = torch.randn(ref["shape"], generator=gen(ref["weight_seed"]))
    torch.manual_seed(ref["seed"])
    y = pipe_for(ref)(x)
    if kind == "projection":
        (g,) = torch.autograd.grad((w * y).sum(), x)
    else:
        (g1,) = torch.autograd.grad((w * torch.tanh(y)).sum(), x, create_graph=True)
        (g,) = torch.autograd.grad(g1.square().sum(), x)
    scale = ref["grad"].abs().max()
    torch.testing.assert_close(g, ref["grad"], atol=TOL * scale, rtol=0)


@pytest.mark.parametrize("preset", sorted(NVIDIA["presets"]))
def test_presets_are_nvidias(preset):
    pipe = make_augment_pipe(preset)
    assert {op: getattr(pipe, op) for op in OPS} == {op: NVIDIA["presets"][preset].get(op, 0) for op in OPS}


def test_arguments_and_defaults_are_nvidias():
    ours = {k: v.default for k, v in inspect.signature(AugmentPipe.__init__).parameters.items() if k != "self"}
    assert ours.pop("p") == 0.0  # NVIDIA's training loop sets p itself; ours starts at ADA's initial 0
    ours["imgfilter_bands"] = list(ours["imgfilter_bands"])
    assert ours == NVIDIA["defaults"]


# --------------------------------------------------------------------------- our own contracts
def test_p_zero_returns_input_exactly_but_draws_as_at_p_above_zero():
    """NVIDIA resamples even at p = 0 (moving pixels by ~4e-6); ours hands D the true images, yet consumes
    the global RNG as NVIDIA does, so the rest of the training step sees the same random numbers."""
    x = rand_images(c=3, h=22, w=22)
    pipe = make_augment_pipe("bgcfnc")
    torch.manual_seed(5)
    assert torch.equal(pipe(x), x)
    after_p0 = torch.rand(4)
    pipe.p.fill_(0.5)
    torch.manual_seed(5)
    assert not torch.equal(pipe(x), x)
    assert torch.equal(torch.rand(4), after_p0)


def test_low_precision_input_under_autocast_keeps_its_dtype():
    pipe = make_augment_pipe("bgc")
    pipe.p.fill_(1)
    x = rand_images().bfloat16()
    torch.manual_seed(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pipe(x)
    torch.manual_seed(4)
    ref = pipe(x.float())
    assert out.dtype == torch.bfloat16 and (out.float() - ref).abs().max() < 0.05


def test_only_p_is_checkpointed():
    pipe = make_augment_pipe("bgcfnc")
    pipe.p.fill_(0.42)
    state = pipe.state_dict()
    assert list(state) == ["p"] and state["p"].ndim == 0
    other = make_augment_pipe("bgcfnc")
    other.load_state_dict(state)
    assert float(other.p) == pytest.approx(0.42)
    assert make_augment_pipe("color", hue=0).hue == 0


def test_bad_configuration_is_one_clear_error():
    with pytest.raises(UserError, match="bgcx"):
        make_augment_pipe("bgcx")
    with pytest.raises(UserError, match="imgfilter_bands"):
        AugmentPipe(imgfilter=1, imgfilter_bands=[1, 1])
    pipe = make_augment_pipe("filter")
    pipe.p.fill_(1)
    with pytest.raises(UserError, match="16x16"):
        pipe(rand_images(h=16, w=16))
    pipe = make_augment_pipe("color")
    pipe.p.fill_(1)
    with pytest.raises(UserError, match="2 channels"):
        pipe(rand_images(c=2))


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
