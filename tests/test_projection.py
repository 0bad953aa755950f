"""Face alignment geometry, latent projection on a tiny generator, w files, and the stylize command."""
from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from stylegan_blend.errors import UserError
from stylegan_blend.networks import Discriminator, Generator
from stylegan_blend.projection.align import align_face, alignment_quad, center_crop
from stylegan_blend.projection.project import (
    PyramidLoss,
    load_lpips,
    load_w,
    lr_schedule,
    noise_regularisation,
    project,
    render,
    save_w,
    target_to_tensor,
    w_statistics,
)

TINY_G = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=32))
TINY_D = dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
              epilogue_kwargs=dict(mbstd_group_size=4))


def canonical_landmarks(R: float) -> np.ndarray:
    """Where the FFHQ recipe puts five landmarks in an R x R crop, derived by hand from its definition:
    the crop side is 4 x the eye distance (when that beats 3.6 x eye-to-mouth), and its centre is the eye
    midpoint moved 10 % of the way to the mouth. With the eye-to-mouth distance d = R/4 (< R/3.6), eyes
    sit R/4 apart at height R/2 - 0.1 d; the mouth is d below them; the nose plays no part in the crop."""
    d = R / 4
    eye_y = R / 2 - 0.1 * d
    return np.array([[R / 2 - R / 8, eye_y], [R / 2 + R / 8, eye_y], [R / 2, eye_y + 0.5 * d],
                     [R / 2 - 0.1 * R, eye_y + d], [R / 2 + 0.1 * R, eye_y + d]])


def similarity(angle_deg: float, scale: float, shift) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), shift[0]],
                     [scale * math.sin(a), scale * math.cos(a), shift[1]]])


def apply(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ T[:, :2].T + T[:, 2]


def dot_centroid(img: np.ndarray, near, radius: int = 4) -> np.ndarray:
    """Brightness-weighted centre of the dot around `near`, in continuous coordinates (pixel centre = i + 0.5)."""
    g = img.astype(np.float64).mean(axis=2)
    x0, y0 = int(near[0]), int(near[1])
    ys, xs = np.mgrid[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1]
    wgt = g[ys, xs]
    return np.array([(wgt * (xs + 0.5)).sum() / wgt.sum(), (wgt * (ys + 0.5)).sum() / wgt.sum()])


# --------------------------------------------------------------------------------------------- alignment

def test_canonical_landmarks_give_the_whole_crop():
    R = 64
    quad = alignment_quad(canonical_landmarks(R))
    np.testing.assert_allclose(quad, [[0, 0], [0, R], [R, R], [R, 0]], atol=1e-9)


def test_quad_follows_a_similarity_transform():
    lm = canonical_landmarks(64)
    T = similarity(-33, 2.2, (120, 80))
    np.testing.assert_allclose(alignment_quad(apply(T, lm)), apply(T, alignment_quad(lm)), atol=1e-9)


@pytest.mark.parametrize("angle, scale, shift, size", [(25, 3.0, (150, 40), 340), (-50, 10.0, (700, 350), 1400)])
def test_align_face_puts_planted_dots_at_canonical_positions(angle, scale, shift, size):
    """Dots drawn at transformed canonical landmarks must land back on the canonical positions."""
    R = 64
    canon = canonical_landmarks(R)
    T = similarity(angle, scale, shift)
    planted = apply(T, canon)
    photo = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(photo)
    r = 2 * scale  # 2 px in the output
    for x, y in planted:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))
    aligned = align_face(np.asarray(photo), planted, R)
    assert aligned.shape == (R, R, 3) and aligned.dtype == np.uint8
    for want in canon:
        got = dot_centroid(aligned, want)
        assert np.hypot(*(got - want)) < 1.0, (got, want)


def test_align_face_mirrors_instead_of_black_borders():
    """A face at the photo's corner: the crop leaves the image, which must be filled from the photo."""
    R = 32
    photo = np.full((120, 120, 3), 128, np.uint8)
    lm = apply(similarity(10, 2.0, (-10, -15)), canonical_landmarks(R))
    aligned = align_face(photo, lm, R)
    assert abs(aligned.astype(int) - 128).max() <= 1


def test_center_crop():
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[:, 10:50] = 200  # the central 40x40 square
    out = center_crop(photo, 16)
    assert out.shape == (16, 16, 3) and out.min() == 200


def test_mtcnn_finds_a_real_face_and_none_in_noise():
    pytest.importorskip("facenet_pytorch")
    import matplotlib.cbook

    from stylegan_blend.projection.align import detect_faces, load_image
    photo = load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    faces = detect_faces(photo)
    assert len(faces) == 1
    box, lm, prob = faces[0]
    assert prob > 0.9 and lm.shape == (5, 2)
    assert np.all((lm >= box[:2]) & (lm <= box[2:]))                    # landmarks inside the box
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]                 # left/right order
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])  # eyes, nose, mouth top to bottom
    flat = np.random.RandomState(0).randint(100, 140, (96, 96, 3)).astype(np.uint8)
    assert detect_faces(flat) == []


# -------------------------------------------------------------------------------------------- projection

@pytest.fixture(scope="module")
def tiny_G():
    torch.manual_seed(0)
    return Generator(**TINY_G).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a shared CPU extra threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(G, seed: int):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        w = G.mapping(z, None)
        return w[0], G.synthesis(w, noise_mode="const")[0]


def test_lr_schedule_shape():
    assert lr_schedule(0.0) == 0.0
    assert lr_schedule(0.025) == pytest.approx(0.5)          # halfway up the 5 % ramp
    assert lr_schedule(0.5) == 1.0
    assert lr_schedule(1 - 0.125) == pytest.approx(0.5)      # halfway down the 25 % cosine
    assert lr_schedule(0.999) < 1e-3


def test_noise_regularisation_penalises_correlated_noise():
    white = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.avg_pool2d(white[None, None], 5, 1, 2)[0, 0]
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert noise_regularisation(white) < 1e-3 < 0.1 < noise_regularisation(smooth)


def test_target_formats_agree():
    img = torch.rand(3, 32, 32) * 2 - 1
    u8 = ((img + 1) * 127.5).round().to(torch.uint8)
    from_hwc = target_to_tensor(u8.permute(1, 2, 0).numpy(), 32)
    assert torch.equal(from_hwc, target_to_tensor(u8, 32))                    # NVIDIA's uint8 CHW
    assert (from_hwc - target_to_tensor(img, 32)).abs().max() <= 0.5 / 127.5 + 1e-6
    with pytest.raises(ValueError, match="32x32"):
        target_to_tensor(np.zeros((16, 16, 3), np.uint8), 32)


def test_projection_recovers_planted_w(tiny_G):
    """Bound: the reconstruction's MSE must be < 10 % of the MSE of the mean-w image, i.e. the projection
    explains > 90 % of what separates the target from the generator's 'average face' (measured: 2-5 %).
    The target is passed as float: an untrained G's images exceed [-1, 1], which uint8 would clip."""
    G = tiny_G
    w_avg, _ = w_statistics(G)
    with torch.no_grad():
        avg_img = G.synthesis(w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), noise_mode="const")[0]
    for seed in (100, 102):
        w_true, target = planted(G, seed)
        result = project(G, target, num_steps=80, progress=False)
        assert result.w.shape == (G.num_ws, G.w_dim) and result.loss_name == "pyramid_l2"
        assert torch.equal(result.w[0], result.w[-1])  # W: one w broadcast to every layer
        with torch.no_grad():
            recon = G.synthesis(result.w[None], noise_mode="const")[0]
        mse_rec = float((recon - target).square().mean())
        mse_avg = float((avg_img - target).square().mean())
        assert mse_rec < 0.1 * mse_avg, (seed, mse_rec, mse_avg)
        assert result.history[-1] < result.history[0]


def test_projection_w_plus_and_discriminator_features(tiny_G):
    G = tiny_G
    torch.manual_seed(1)
    D = Discriminator(**TINY_D).eval()
    state = {k: v.clone() for k, v in G.state_dict().items()}
    _, target = planted(G, 101)
    result = project(G, target, num_steps=30, w_plus=True, D=D, progress=False, w_avg_samples=1000)
    assert result.loss_name == "pyramid_l2+d_features"
    assert result.w.shape == (G.num_ws, G.w_dim) and not torch.equal(result.w[0], result.w[-1])
    assert result.history[-1] < result.history[0]
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in state.items())  # G (noise buffers too) untouched
    torch.manual_seed(999)
    again = project(G, target, num_steps=30, w_plus=True, D=D, progress=False, w_avg_samples=1000)
    assert torch.equal(again.w, result.w)  # the seed argument alone decides the result


class _FakeVgg(torch.nn.Module):
    """Stands in for NVIDIA's vgg16.pt: same call signature, unit-length features of a fixed projection."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        f = self.conv(img / 255).flatten(1)
        return f / f.square().sum(dim=1, keepdim=True).sqrt()


def test_lpips_torchscript_is_used_when_given(tiny_G, tmp_path):
    path = tmp_path / "vgg16.pt"
    torch.jit.save(torch.jit.script(_FakeVgg()), str(path))
    _, target = planted(tiny_G, 103)
    result = project(tiny_G, target, num_steps=5, progress=False, lpips_path=path, w_avg_samples=500)
    assert result.loss_name == "lpips_vgg" and all(map(math.isfinite, result.history))


def test_lpips_state_dict_and_bad_weights(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="missing.pt"):
        project(Generator(**TINY_G), np.zeros((32, 32, 3), np.uint8), num_steps=1, progress=False,
                lpips_path=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    monkeypatch.setenv("STYLEGAN_BLEND_LPIPS", str(bad))
    with pytest.raises(UserError, match="bad.pt"):
        project(Generator(**TINY_G), np.zeros((32, 32, 3), np.uint8), num_steps=1, progress=False)
    lpips = pytest.importorskip("lpips")
    good = tmp_path / "lpips_vgg.pt"
    torch.save(lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False).state_dict(), good)
    loss = load_lpips(good)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss.name == "lpips_vgg" and float(loss(x, x).detach()) == pytest.approx(0.0, abs=1e-6)


def test_pyramid_loss_matches_numpy():
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    want = 0.0
    na, nb = a.numpy()[0], b.numpy()[0]
    for _ in range(3):  # 32, 16, 8 px
        want += ((na - nb) ** 2).mean()
        na = na.reshape(3, na.shape[1] // 2, 2, -1, 2).mean(axis=(2, 4))
        nb = nb.reshape(3, nb.shape[1] // 2, 2, -1, 2).mean(axis=(2, 4))
    assert float(PyramidLoss()(a, b)) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------------------------------- w files

def test_npz_round_trip_and_nvidia_layout(tmp_path):
    w = torch.randn(6, 32)
    save_w(tmp_path / "a.npz", w)
    assert np.load(tmp_path / "a.npz")["w"].shape == (6, 32)
    assert torch.equal(load_w(tmp_path / "a.npz", 6, 32), w)
    np.savez(tmp_path / "nv.npz", w=w.numpy()[None])  # NVIDIA projector's [1, num_ws, w_dim]
    assert torch.equal(load_w(tmp_path / "nv.npz", 6, 32), w)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_load_w_errors_name_file_and_shapes(tmp_path):
    np.savez(tmp_path / "short.npz", w=np.zeros((4, 32), np.float32))
    with pytest.raises(UserError, match=r"short\.npz.*\(4, 32\).*\(6, 32\)"):
        load_w(tmp_path / "short.npz", 6, 32)
    np.savez(tmp_path / "nokey.npz", latent=np.zeros((6, 32)))
    with pytest.raises(UserError, match="nokey.npz.*'w'"):
        load_w(tmp_path / "nokey.npz", 6, 32)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(UserError, match="junk.npz"):
        load_w(tmp_path / "junk.npz", 6, 32)


# ------------------------------------------------------------------------------------------ stylize CLI

@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A tiny base network (with D), a 'fine-tuned' one, a blend file and a run directory."""
    from stylegan_blend.blending import blend_generators
    from stylegan_blend.checkpoints import save_network
    root = tmp_path_factory.mktemp("nets")
    torch.manual_seed(10)
    base, D, tuned = Generator(**TINY_G).eval(), Discriminator(**TINY_D).eval(), Generator(**TINY_G).eval()
    save_network(root / "base.pt", base, D=D)
    blend = blend_generators(base, tuned, 8).eval()
    save_network(root / "blend.pt", blend)
    (root / "run" / "networks").mkdir(parents=True)
    save_network(root / "run" / "networks" / "epoch=0003.pt", tuned)
    photo = root / "photo.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (40, 50, 3)).astype(np.uint8)).save(photo)
    return dict(root=root, base=base, tuned=tuned, blend=blend, photo=photo)


def run_cli(argv, capsys):
    from stylegan_blend.app.cli import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_stylize_with_blend_file_then_rerender_from_saved_w(nets, tmp_path, capsys):
    out = tmp_path / "out"
    code, cap = run_cli(["stylize", nets["photo"], "--base", nets["root"] / "base.pt", "--blend",
                         nets["root"] / "blend.pt", "--outdir", out, "--steps", 20, "--no-align", "--device", "cpu"],
                        capsys)
    assert code == 0, cap.err
    assert "pyramid_l2+d_features" in cap.out  # the base file carries a D, so its features join the loss
    assert "photo.png: centre crop of the 50x40 photo" in cap.out
    assert "face 1/1 photo: step 20/20, loss" in cap.err  # progress lines when stderr is not a terminal
    row = np.asarray(Image.open(out / "photo_stylized.png"))
    w = load_w(out / "photo.npz", nets["base"].num_ws, nets["base"].w_dim)
    cols = sheet_tiles(row, 3, ["input (centre crop)", "base reconstruction", "blend blend"], "photo")
    np.testing.assert_array_equal(cols[0], center_crop(np.asarray(Image.open(nets["photo"])), 32))
    np.testing.assert_array_equal(cols[1], render(nets["base"], w))
    np.testing.assert_array_equal(cols[2], render(nets["blend"], w))

    again = tmp_path / "again"
    code, cap = run_cli(["stylize", nets["photo"], "--base", nets["root"] / "base.pt", "--blend",
                         nets["root"] / "blend.pt", "--outdir", again, "--w", out / "photo.npz", "--no-align"], capsys)
    assert code == 0 and "given w" in cap.out, cap.err
    np.testing.assert_array_equal(np.asarray(Image.open(again / "photo_stylized.png")), row)


def test_stylize_run_row_over_swap_resolutions(nets, tmp_path, capsys):
    w = torch.randn(nets["base"].num_ws, nets["base"].w_dim)
    save_w(tmp_path / "w.npz", w)
    code, cap = run_cli(["stylize", nets["photo"], "--base", nets["root"] / "base.pt", "--run", nets["root"] / "run",
                         "--epoch", 3, "--swap-res", "8,16,none", "--w", tmp_path / "w.npz", "--no-align",
                         "--outdir", tmp_path], capsys)
    assert code == 0, cap.err
    row = np.asarray(Image.open(tmp_path / "photo_stylized.png"))
    labels = ["input (centre crop)", "base reconstruction", "swap 8\n(low_base)", "swap 16\n(low_base)",
              "fine-tuned\n(epoch 3)"]
    cols = sheet_tiles(row, 5, labels, "photo")
    np.testing.assert_array_equal(cols[1], render(nets["base"], w))
    np.testing.assert_array_equal(cols[4], render(nets["tuned"], w))  # 'none' = the fine-tuned model
    np.testing.assert_array_equal(cols[2], render(nets["blend"], w))  # swap 8, base coarse blocks
    assert not np.array_equal(cols[2], cols[3])


def test_stylize_prints_identity_to_the_input(nets, tmp_path, capsys):
    """32 px -> the proxy: each render's (1 - Pearson r of 16x16 RGB thumbnails) / 2 to the input crop, and that
    over the base model's mean distance between seeds 0-99, recomputed here with NumPy."""
    from stylegan_blend.networks.sampling import generate_images

    w = torch.randn(nets["base"].num_ws, nets["base"].w_dim)
    save_w(tmp_path / "w.npz", w)
    code, cap = run_cli(["stylize", nets["photo"], "--base", nets["root"] / "base.pt", "--run", nets["root"] / "run",
                         "--epoch", 3, "--swap-res", "8,none", "--w", tmp_path / "w.npz", "--no-align",
                         "--outdir", tmp_path], capsys)
    assert code == 0, cap.err
    (line,) = [x for x in cap.out.splitlines() if "identity to the input photo" in x]
    assert "idloss_proxy, a proxy" in line

    def thumbs(imgs):
        x = np.asarray(imgs, np.float64).reshape(len(imgs), 16, 2, 16, 2, 3).mean(axis=(2, 4))
        return x.reshape(len(imgs), -1)

    def dist(a, b):
        return (1 - np.corrcoef(a, b)[0, 1]) / 2

    base_t = thumbs(generate_images(nets["base"], range(100), batch_size=50).numpy())
    idbase = np.mean([dist(base_t[i], base_t[j]) for i in range(100) for j in range(100) if i != j])
    crop = center_crop(np.asarray(Image.open(nets["photo"])), 32)
    renders = [render(nets["base"], w), render(nets["blend"], w), render(nets["tuned"], w)]
    t = thumbs(np.stack([crop, *renders]))
    for label, r in zip(["base reconstruction", "swap 8 (low_base)", "fine-tuned (epoch 3)"], range(1, 4)):
        d = dist(t[0], t[r])
        assert f"{label} {d:.3f} ({d / idbase:.2f})" in line, (label, d, d / idbase, line)
    assert f"another-person distance {idbase:.3f}" in line

    code, cap = run_cli(["stylize", nets["photo"], "--base", nets["root"] / "base.pt", "--blend",
                         nets["root"] / "blend.pt", "--w", tmp_path / "w.npz", "--no-align", "--outdir", tmp_path,
                         "--identity", "none"], capsys)
    assert code == 0 and "identity to the input" not in cap.out, cap.err


def sheet_tiles(sheet: np.ndarray, n: int, labels: list[str], title: str, native: int = 32) -> list[np.ndarray]:
    """The n images of a one-row stylize sheet, enlarged 4x (32 px -> 128): each 4x4 block is one pixel."""
    from stylegan_blend.reporting.sheet import sheet_layout

    lay = sheet_layout(native, 1, n, col_labels=labels, title=title)
    assert lay.scale == 4 and sheet.shape[:2] == (lay.height, lay.width)
    out = []
    for c in range(n):
        x0, y0, x1, y1 = lay.tile_box(0, c)
        block = sheet[y0:y1, x0:x1]
        small = block[::4, ::4]
        assert np.array_equal(block, np.kron(small, np.ones((4, 4, 1), np.uint8)))  # nearest-neighbour
        out.append(small)
    return out


def one_error_line(cap, *needles):
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def test_stylize_errors(nets, tmp_path, capsys):
    base = ["--base", nets["root"] / "base.pt", "--blend", nets["root"] / "blend.pt", "--outdir", tmp_path / "o"]
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    code, cap = run_cli(["stylize", junk, *base, "--no-align"], capsys)
    assert code == 1
    one_error_line(cap, junk)

    np.savez(tmp_path / "bad_w.npz", w=np.zeros((3, 32), np.float32))
    code, cap = run_cli(["stylize", nets["photo"], *base, "--no-align", "--w", tmp_path / "bad_w.npz"], capsys)
    assert code == 1
    one_error_line(cap, "bad_w.npz", "(3, 32)", f"({nets['base'].num_ws}, 32)")

    code, cap = run_cli(["stylize", nets["photo"], "--base", nets["root"] / "base.pt", "--run", nets["root"] / "run",
                         "--epoch", 7, "--swap-res", 8, "--outdir", tmp_path / "o", "--no-align"], capsys)
    assert code == 1
    one_error_line(cap, "epoch=0007.pt", "epoch=0003.pt")

    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.open(nets["photo"]).save(two / name)
    code, cap = run_cli(["stylize", two, *base, "--no-align", "--w", tmp_path / "bad_w.npz"], capsys)
    assert code == 1
    one_error_line(cap, "--w")
    assert not (tmp_path / "o").exists()  # nothing written by any failed run


def test_stylize_no_face(nets, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    grey = tmp_path / "wall.png"
    Image.new("RGB", (96, 96), (120, 120, 120)).save(grey)
    code, cap = run_cli(["stylize", grey, "--base", nets["root"] / "base.pt", "--blend", nets["root"] / "blend.pt",
                         "--outdir", tmp_path / "o"], capsys)
    assert code == 1
    one_error_line(cap, grey, "no face")
    assert not (tmp_path / "o").exists()


def test_stylize_aligns_a_real_photo(nets, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    import matplotlib.cbook

    from stylegan_blend.projection.align import detect_faces, load_image
    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    code, cap = run_cli(["stylize", photo, "--base", nets["root"] / "base.pt", "--blend", nets["root"] / "blend.pt",
                         "--outdir", tmp_path, "--steps", 3, "--all-faces"], capsys)
    assert code == 0, cap.err
    image = load_image(photo)
    want = align_face(image, detect_faces(image)[0][1], 32)
    row = np.asarray(Image.open(tmp_path / "grace_hopper_face0_stylized.png"))
    labels = ["input (aligned)", "base reconstruction", "blend blend"]
    np.testing.assert_array_equal(sheet_tiles(row, 3, labels, "grace_hopper_face0")[0], want)
    assert re.search(r"face 1 of 1 at box \(\d+, \d+, \d+, \d+\), score (0\.9|1\.0)", cap.out), cap.out
    assert (tmp_path / "grace_hopper_face0.npz").is_file()


def test_stylize_image_for_the_demo(nets):
    from stylegan_blend.projection import stylize_image
    photo = np.asarray(Image.open(nets["photo"]))
    aligned, recon, stylised, w = stylize_image(nets["base"], nets["blend"], photo, steps=3, align=False)
    assert aligned.shape == recon.shape == stylised.shape == (32, 32, 3)
    assert w.shape == (nets["base"].num_ws, nets["base"].w_dim)
    np.testing.assert_array_equal(stylised, render(nets["blend"], w))


def test_load_image_applies_exif_orientation(tmp_path):
    from stylegan_blend.projection.align import load_image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": how phones store portrait shots
    Image.new("RGB", (20, 10)).save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").shape == (20, 10, 3)
