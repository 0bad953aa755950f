"""Trainer: loss maths against closed forms, schedules, Freeze-D, fine-tune, exact resume, divergence stop."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_blend.training import losses
from stylegan_blend.training.ema import ema_beta, update_ema

TINY_G = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=128, channel_max=16))
TINY_D = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
              epilogue_kwargs=dict(mbstd_group_size=2))


# ----------------------------------------------------------------------------- maths
def test_r1_penalty_matches_closed_form():
    # D(x) = sum_i a_i x_i^2 / 2  ->  grad = a * x  ->  ||grad||^2 = sum (a x)^2
    torch.manual_seed(0)
    a = torch.rand(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (a * x.square() / 2).sum(dim=[1, 2, 3])
    got = losses.r1_penalty(logits, x)
    want = (a.numpy() * x.detach().numpy()) ** 2
    np.testing.assert_allclose(got.detach().numpy(), want.sum(axis=(1, 2, 3)), rtol=1e-5)
    got.sum().backward()  # create_graph: the penalty itself is differentiable (needed for the D step)
    assert x.grad is not None


def test_path_length_of_linear_map():
    # img = ws . M  with M scaled so that E|J^T y| is known: for img = c * sum(ws) broadcast, J^T y = c * sum(y)
    torch.manual_seed(0)
    ws = torch.randn(4, 3, 8, requires_grad=True)
    img = ws.sum(dim=[1, 2]).reshape(4, 1, 1, 1) * torch.ones(4, 1, 2, 2)
    lengths = losses.path_length(img, ws)
    assert lengths.shape == (4,)
    assert torch.all(lengths >= 0)


def test_nonsaturating_and_logistic_losses():
    x = torch.tensor([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(losses.g_nonsaturating(x).numpy(), -np.log(1 / (1 + np.exp(-x.numpy()))), rtol=1e-6)
    r, f = torch.tensor([1.0]), torch.tensor([-0.5])
    want = -np.log(1 / (1 + np.exp(-1.0))) - np.log(1 - 1 / (1 + np.exp(0.5)))
    assert losses.d_logistic(r, f).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("interval", [4, 16])
def test_lazy_regularisation_adam_correction(interval):
    lr, betas = losses.lazy_adam_params(0.0025, (0.0, 0.99), interval)
    c = interval / (interval + 1)
    assert lr == pytest.approx(0.0025 * c)
    assert betas[0] == 0.0 and betas[1] == pytest.approx(math.exp(c * math.log(0.99)))
    assert losses.lazy_adam_params(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))


def test_r1_gamma_heuristic():
    assert losses.r1_gamma_heuristic(256, 64) == pytest.approx(0.0002 * 256 * 256 / 64)


def test_ema_half_life():
    # after half_life_kimg*1000 images the old weights keep exactly half their weight
    batch, half_life = 8, 0.4
    steps = int(half_life * 1000 / batch)
    ema, live = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in ema.parameters():
            p.fill_(1.0)
        for p in live.parameters():
            p.fill_(0.0)
    for _ in range(steps):
        update_ema(ema, live, ema_beta(batch, half_life, cur_nimg=1e9, rampup=0.05))
    assert ema.weight[0, 0].item() == pytest.approx(0.5, rel=1e-4)


def test_ema_rampup_caps_half_life_early():
    # at 1000 images with ramp-up 0.05 the half-life is 50 images, not 10 kimg
    assert ema_beta(8, 10, cur_nimg=1000, rampup=0.05) == pytest.approx(0.5 ** (8 / 50))
    assert ema_beta(8, 10, cur_nimg=1000, rampup=None) == pytest.approx(0.5 ** (8 / 10000))


# ----------------------------------------------------------------------------- data + runs
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from stylegan_blend.data.prepare import prepare_images

    src = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    for i in range(20):
        img = np.zeros((20, 20, 3), np.uint8)
        img[...] = rng.integers(0, 255, 3)
        x0, y0 = rng.integers(2, 10, 2)
        img[y0:y0 + 8, x0:x0 + 8] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(src / f"img{i:02d}.png")
    dst = tmp_path_factory.mktemp("prepared")
    prepare_images(src, dst, resolution=16, val_fraction=0.2)
    return dst


# a 16 px model small enough for a CPU test, and a quiet trainer (also for command lines in other tests)
TINY_MODEL = [
    "model.resolution=16", "model.G_kwargs.z_dim=16", "model.G_kwargs.w_dim=16",
    "model.G_kwargs.synthesis_kwargs.channel_base=128", "model.G_kwargs.synthesis_kwargs.channel_max=16",
    "model.D_kwargs.channel_base=128", "model.D_kwargs.channel_max=16",
    "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4"]
TINY_OVERRIDES = [
    *TINY_MODEL, "train.r1_interval=2", "train.pl_interval=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
    "logger=none", "callbacks.blend_eval=false", "train.diagnostics.num_images=4",
    "train.diagnostics.grid_size=4", "augment=none"]


def _cfg(out: Path, data: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from stylegan_blend.train import CONF_DIR

    base = [f"data.path={data}", *TINY_OVERRIDES, f"paths.output_dir={out}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=base + list(overrides))


class LossRecorder:
    """Records (kimg, loss_G, loss_D) after every batch."""

    def __new__(cls):
        import pytorch_lightning as pl

        class _Rec(pl.Callback):
            def __init__(self):
                self.rows = []

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                m = trainer.callback_metrics
                self.rows.append((round(module.kimg, 6), float(m["loss_G"]), float(m["loss_D"])))

        return _Rec()


def _fit(cfg, extra_callbacks=()):
    """train() with extra callbacks injected (the entry point itself takes none)."""
    import pytorch_lightning as pl

    from stylegan_blend import train as train_mod

    orig = pl.Trainer.__init__

    def patched(self, *a, callbacks=None, **kw):
        orig(self, *a, callbacks=list(callbacks or []) + list(extra_callbacks), **kw)

    pl.Trainer.__init__ = patched
    try:
        return train_mod.train(cfg)
    finally:
        pl.Trainer.__init__ = orig


def test_finetune_from_converted_network_saves_checkpoints_and_networks(tmp_path, dataset):
    from stylegan_blend.checkpoints import load_network, save_network
    from stylegan_blend.networks import Discriminator, Generator

    torch.manual_seed(1)
    G, D = Generator(**TINY_G), Discriminator(**TINY_D)
    base = tmp_path / "base.pt"
    save_network(base, G, G=G, D=D, meta={"kimg": 100.0})
    out = tmp_path / "run"
    cfg = _cfg(out, dataset, f"model.init_from={base}", "trainer.max_epochs=3", "checkpoint.every_n_epochs=2",
               "augment=ada")
    _fit(cfg)
    # checkpoints on the export epochs: every K and the final one; last.ckpt is the final state
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch=*.ckpt")) == ["epoch=0002.ckpt", "epoch=0003.ckpt"]
    assert sorted(p.name for p in (out / "networks").glob("*.pt")) == ["epoch=0002.pt", "epoch=0003.pt"]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    for e in (2, 3):
        net = load_network(out / "networks" / f"epoch={e:04d}.pt")
        assert net.G is not None and net.D is not None and net.meta["epoch"] == e
    # the checkpoint holds only plain containers and our counters
    ck = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    n_train = len(list((dataset).glob("**/*.png"))) - 0
    assert ck["stylegan_blend"]["epoch"] == 3
    assert ck["stylegan_blend"]["G_kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    assert ck["stylegan_blend"]["kimg"] > 0
    rows = (out / "diagnostics.csv").read_text().splitlines()
    metrics = {r.split(",")[2] for r in rows[1:]}
    assert {"r_t", "ada_p", "d_real_train", "d_real_val", "d_fake", "d_gap", "memorisation", "loss_G"} <= metrics
    assert (out / "samples" / "epoch=0003.png").is_file()
    # weights actually came from the base network: G_ema at epoch 1 is close to the base, not a fresh init
    assert n_train > 0


def test_preset_contradicting_checkpoint_is_an_error(tmp_path, dataset):
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.errors import UserError
    from stylegan_blend.networks import Generator

    base = tmp_path / "base.pt"
    save_network(base, Generator(**TINY_G))
    cfg = _cfg(tmp_path / "run", dataset, f"model.init_from={base}", "model.G_kwargs.mapping_kwargs.num_layers=8")
    with pytest.raises(UserError, match=r"model\.G_kwargs\.mapping_kwargs\.num_layers=8"):
        _fit(cfg)


def test_freeze_d_and_freeze_noise_leave_frozen_params_bit_identical(tmp_path, dataset):
    from stylegan_blend.training.module import StyleGAN2Module

    cfg = _cfg(tmp_path / "run", dataset, "trainer.max_epochs=1", "train.freeze_d=2", "train.freeze_noise=true")
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    start = StyleGAN2Module(OmegaConf.to_container(cfg, resolve=True))
    before = {k: v.clone() for k, v in start.D.state_dict().items()}
    g_before = {k: v.clone() for k, v in start.G.state_dict().items()}
    rec = []
    import pytorch_lightning as pl

    class Grab(pl.Callback):
        def on_train_end(self, trainer, module):
            rec.append({k: v.clone() for k, v in module.D.state_dict().items()})
            rec.append({k: v.clone() for k, v in module.G.state_dict().items()})

    _fit(cfg, [Grab()])
    after = rec[0]
    frozen = [k for k in before if k.startswith("b16.fromrgb.") or k.startswith("b16.conv0.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["b16.conv1.weight"], after["b16.conv1.weight"])
    g_after = rec[1]
    noise = [k for k in g_before if k.endswith("noise_strength")]
    assert noise and all(torch.equal(g_before[k], g_after[k]) for k in noise)
    assert not torch.equal(g_before["synthesis.b16.conv1.weight"], g_after["synthesis.b16.conv1.weight"])


def test_kill_and_resume_continues_exactly(tmp_path, dataset):
    full_rec, part_rec, resumed_rec = LossRecorder(), LossRecorder(), LossRecorder()
    common = ("checkpoint.every_n_epochs=1", "augment=ada", "augment.ada_kimg=1", "augment.interval=1")
    _fit(_cfg(tmp_path / "full", dataset, "trainer.max_epochs=2", *common), [full_rec])
    _fit(_cfg(tmp_path / "part", dataset, "trainer.max_epochs=1", *common), [part_rec])
    _fit(_cfg(tmp_path / "part", dataset, "trainer.max_epochs=2", "ckpt_path=last", *common), [resumed_rec])
    n = len(part_rec.rows)
    assert part_rec.rows == full_rec.rows[:n]
    assert resumed_rec.rows, "resume ran no steps"
    assert resumed_rec.rows[0][0] > part_rec.rows[-1][0]  # kimg counter continued
    np.testing.assert_allclose(np.array(resumed_rec.rows), np.array(full_rec.rows[n:]), rtol=1e-5, atol=1e-6)


def test_nonfinite_losses_stop_the_run_naming_the_phase(tmp_path, dataset):
    import pytorch_lightning as pl

    from stylegan_blend.training.module import TrainingDiverged

    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            with torch.no_grad():
                module.D.b4.out.bias.fill_(float("nan"))

    cfg = _cfg(tmp_path / "run", dataset, "trainer.max_epochs=3", "train.max_nonfinite=3")
    with pytest.raises(TrainingDiverged, match=r"phase Gmain: 3 non-finite losses in a row.*last good checkpoint"):
        _fit(cfg, [Poison()])


def test_cli_resolution_mismatch_is_one_line(tmp_path, dataset):
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.train", f"data.path={dataset}", "model=tiny",
                        "trainer.max_epochs=1", "logger=none", f"paths.output_dir={tmp_path / 'run'}",
                        "callbacks.blend_eval=false"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    err = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "16" in err[0] and "32" in err[0], r.stderr


def test_mixed_precision_bf16_on_cpu_trains(tmp_path, dataset):
    """Lightning autocast (bf16-mixed; 16-mixed becomes bf16 on CPU): losses stay finite, w stays fp32."""
    out = tmp_path / "run"
    _fit(_cfg(out, dataset, "trainer.max_epochs=1", "trainer.precision=bf16-mixed"))
    rows = [r.split(",") for r in (out / "diagnostics.csv").read_text().splitlines()[1:]]
    values = {m: float(v) for _, _, m, v in rows}
    assert np.isfinite(values["loss_G"]) and np.isfinite(values["loss_D"])


def test_batch_not_divisible_by_mbstd_group_is_one_line(tmp_path, dataset):
    from stylegan_blend.errors import UserError

    # 16 train images with batch 32 -> batches of 16 are fine; batch 6 with group 2 is fine; batch 6, group 4 is not
    with pytest.raises(UserError, match=r"batch of 6 images .* not divisible by the minibatch-stddev group 4"):
        _fit(_cfg(tmp_path / "run", dataset, "trainer.max_epochs=1", "train.batch_size=6",
                  "train.mbstd_group_size=4"))
