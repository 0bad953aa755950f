"""Layer-swap blending against hand-computed expectations.

Expected tensors come from the definition: key `synthesis.b{r}.*` is LOW's when r <= swap_res and HIGH's
above it (hard), or (1 - a) LOW + a HIGH with a = 1 / (1 + exp(-(log2 r - log2 s - 0.5) / w)) (soft);
`mapping.*` comes whole from the chosen model.
"""
from __future__ import annotations

import math
import re

import pytest
import torch

from stylegan_blend.app.cli import main
from stylegan_blend.blending import blend_generators, blend_state_dicts, direction_pair, swap_alpha
from stylegan_blend.checkpoints import load_network, save_network
from stylegan_blend.errors import UserError
from stylegan_blend.networks import Generator

TINY = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=256, channel_max=32))


def tiny_G(seed: int, **synthesis_overrides) -> Generator:
    torch.manual_seed(seed)
    kwargs = dict(TINY, synthesis_kwargs=dict(TINY["synthesis_kwargs"], **synthesis_overrides))
    G = Generator(**kwargs).eval()
    with torch.no_grad():  # make every tensor, buffers included, differ between models
        for t in list(G.parameters()) + [b for n, b in G.named_buffers() if not n.endswith("resample_filter")]:
            t.add_(torch.randn_like(t) * 0.3)
    return G


@pytest.fixture(scope="module")
def pair():
    return tiny_G(1), tiny_G(2)


def block_res(key: str) -> int | None:
    m = re.match(r"synthesis\.b(\d+)\.", key)
    return int(m.group(1)) if m else None


def by_hand_alpha(r: int, s: int, w: float) -> float:
    return 1 / (1 + math.exp(-(math.log2(r) - math.log2(s) - 0.5) / w))


@pytest.mark.parametrize("swap_res", [4, 8, 16])
@pytest.mark.parametrize("mapping", ["low", "high"])
def test_hard_swap_takes_each_key_from_the_expected_model(pair, swap_res, mapping):
    low, high = pair
    B = blend_generators(low, high, swap_res, mapping=mapping)
    lsd, hsd = low.state_dict(), high.state_dict()
    for key, value in B.state_dict().items():
        r = block_res(key)
        if r is None:
            assert key.startswith("mapping.")
            src = lsd if mapping == "low" else hsd
        else:
            src = lsd if r <= swap_res else hsd
        assert torch.equal(value, src[key]), key
    assert "mapping.w_avg" in B.state_dict()


def test_soft_swap_mixes_every_block_tensor_by_the_sigmoid_weight(pair):
    low, high = pair
    s, w = 8, 0.7
    B = blend_generators(low, high, s, width=w)
    lsd, hsd = low.state_dict(), high.state_dict()
    for key, value in B.state_dict().items():
        r = block_res(key)
        if r is None:
            assert torch.equal(value, lsd[key]), key
            continue
        a = by_hand_alpha(r, s, w)
        assert 0 < a < 1
        expected = (1 - a) * lsd[key].double() + a * hsd[key].double()
        assert torch.allclose(value.double(), expected, atol=1e-6), key


def test_swap_alpha_matches_formula_and_is_symmetric_about_the_boundary():
    assert swap_alpha(16, 16) == 0.0 and swap_alpha(32, 16) == 1.0 and swap_alpha(4, 16) == 0.0
    for w in (0.1, 0.5, 2.0):
        for r in (4, 8, 16, 32, 64):
            assert swap_alpha(r, 16, w) == pytest.approx(by_hand_alpha(r, 16, w), rel=1e-12)
        assert swap_alpha(16, 16, w) + swap_alpha(32, 16, w) == pytest.approx(1.0)
    assert swap_alpha(4, 64, 1e-6) == 0.0 and swap_alpha(256, 4, 1e-6) == 1.0  # no overflow at tiny widths


def test_tiny_width_matches_hard_swap(pair):
    low, high = pair
    hard = blend_generators(low, high, 16).state_dict()
    soft = blend_generators(low, high, 16, width=1e-3).state_dict()
    for key in hard:
        assert torch.allclose(hard[key], soft[key], atol=1e-7, rtol=0), key


def test_inputs_untouched_and_result_is_a_new_module(pair):
    low, high = pair
    before = {k: v.clone() for k, v in list(low.state_dict().items()) + [("H" + k, v) for k, v in high.state_dict().items()]}
    B = blend_generators(low, high, 8, width=0.3)
    with torch.no_grad():
        for p in B.parameters():
            p.add_(1.0)
    after = {k: v for k, v in list(low.state_dict().items()) + [("H" + k, v) for k, v in high.state_dict().items()]}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert B is not low and B is not high
    assert B.init_kwargs == low.init_kwargs and not B.training


def test_hard_blend_renders_like_low_blocks_then_high_blocks(pair):
    low, high = pair
    s = 8
    B = blend_generators(low, high, s)
    z = torch.randn(3, TINY["z_dim"], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ws = low.mapping(z, None)
        x = img = None
        idx = 0
        for r in low.synthesis.block_resolutions:  # each block eats its convs' ws plus its toRGB's
            block = getattr((low if r <= s else high).synthesis, f"b{r}")
            x, img = block(x, img, ws[:, idx:idx + block.num_conv + block.num_torgb], noise_mode="const")
            idx += block.num_conv
        manual = img
        blended = B(z, None, noise_mode="const")
    assert torch.allclose(blended, manual, atol=1e-6)
    assert not torch.allclose(blended, low(z, None, noise_mode="const"), atol=1e-3)


def test_state_dict_blend_equals_module_blend(pair):
    low, high = pair
    sd = blend_state_dicts(low.state_dict(), high.state_dict(), 16, width=0.4, mapping="high")
    mod = blend_generators(low, high, 16, width=0.4, mapping="high").state_dict()
    assert sd.keys() == mod.keys() and all(torch.equal(sd[k], mod[k]) for k in sd)


def test_different_shapes_name_the_first_key_and_both_shapes(pair):
    low, _ = pair
    other = tiny_G(3, channel_max=16)
    with pytest.raises(UserError, match=r"synthesis\.b4\.const.*\(32, 4, 4\).*\(16, 4, 4\)"):
        blend_generators(low, other, 8)


def test_same_shapes_but_different_kwargs_is_refused(pair):
    low, _ = pair
    other = tiny_G(3, conv_clamp=256)
    with pytest.raises(UserError, match=r"synthesis_kwargs\.conv_clamp"):
        blend_generators(low, other, 8)


@pytest.mark.parametrize("bad", [12, 32, 64, 2, 0])
def test_bad_swap_resolution_lists_the_valid_ones(pair, bad):
    with pytest.raises(UserError, match=r"swap resolution .*4, 8, 16"):
        blend_generators(*pair, bad)


@pytest.mark.parametrize("width", [-0.1, float("nan"), float("inf")])
def test_bad_width(pair, width):
    with pytest.raises(UserError, match="width"):
        blend_generators(*pair, 8, width=width)


def test_unknown_mapping_choice(pair):
    with pytest.raises(UserError, match="mapping 'mid'.*low, high"):
        blend_generators(*pair, 8, mapping="mid")


def test_direction_pair():
    assert direction_pair("B", "T", "low_base") == ("B", "T")
    assert direction_pair("B", "T", "low_tuned") == ("T", "B")
    with pytest.raises(UserError, match="direction"):
        direction_pair("B", "T", "sideways")


# --- CLI ---------------------------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path, pair):
    low, high = pair
    a, b = tmp_path / "low.pt", tmp_path / "high.pt"
    save_network(a, low)
    save_network(b, high)
    return a, b


def test_blend_command_writes_native_file_with_blend_meta(files, tmp_path, pair, capsys):
    a, b = files
    out = tmp_path / "blend.pt"
    rc = main(["blend", "--low", str(a), "--high", str(b), "--swap-res", "8", "--width", "0.5",
               "--mapping", "high", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    data = torch.load(out, weights_only=True)
    assert data["format"] == "stylegan_blend.network" and load_network(out).format == "native"
    assert data["meta"]["blend"] == dict(low=str(a), high=str(b), swap_res=8, width=0.5, mapping="high")
    expected = blend_generators(*pair, 8, width=0.5, mapping="high").state_dict()
    got = data["G_ema"]["state_dict"]
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


@pytest.mark.parametrize("extra, message", [
    (["--swap-res", "12"], "swap resolution 12"),
    (["--swap-res", "8", "--width", "-1"], "width -1"),
])
def test_blend_command_errors_are_one_line_and_write_nothing(files, tmp_path, capsys, extra, message):
    a, b = files
    out = tmp_path / "blend.pt"
    rc = main(["blend", "--low", str(a), "--high", str(b), "--out", str(out)] + extra)
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_blend_command_architecture_mismatch(files, tmp_path, capsys):
    a, _ = files
    c = tmp_path / "other.pt"
    save_network(c, tiny_G(4, channel_max=16))
    out = tmp_path / "blend.pt"
    rc = main(["blend", "--low", str(a), "--high", str(c), "--swap-res", "8", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "architectures differ" in err and err.count("\n") == 1 and not out.exists()
