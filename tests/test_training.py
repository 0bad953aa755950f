"""Trainer: loss maths against closed forms, NVIDIA's bookkeeping (ADA controller, G_ema, lazy regularisation),
schedules, Freeze-D, fine-tune, exact resume, divergence stop."""
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
from stylegan_blend.training.augment import ADAController
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


def test_path_length_of_a_linear_synthesis_is_its_closed_form():
    """img_i = sum_k M_k ws_ik (a linear synthesis): J_k^T y = M_k^T y, so the length is sqrt(mean_k |M_k^T y|^2)
    with y the N(0, I)/sqrt(H*W) draw (StyleGAN2 eq. 4); computed here in NumPy from the same draw."""
    gen = torch.Generator().manual_seed(0)
    n, num_ws, w_dim, c, h, w = 3, 4, 5, 2, 3, 6
    M = torch.randn(num_ws, c * h * w, w_dim, generator=gen, dtype=torch.float64)
    ws = torch.randn(n, num_ws, w_dim, generator=gen, dtype=torch.float64, requires_grad=True)
    img = torch.einsum("kpw,nkw->np", M, ws).reshape(n, c, h, w)
    torch.manual_seed(7)
    lengths = losses.path_length(img, ws)
    torch.manual_seed(7)
    y = torch.randn(n, c, h, w, dtype=torch.float64).numpy().reshape(n, -1) / math.sqrt(h * w)
    jty = np.einsum("kpw,np->nkw", M.numpy(), y)
    want = np.sqrt((jty ** 2).sum(axis=2).mean(axis=1))
    np.testing.assert_allclose(lengths.detach().numpy(), want, rtol=1e-12)


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


def test_lazy_correction_applies_even_without_the_regularisers():
    """NVIDIA always has the Greg/Dreg phases, so its Adam gets lr*c, beta**c (c = k/(k+1)) even with pl_weight=0 and
    r1_gamma=0: G at interval 4 trains with lr 0.002 and beta2 0.99**0.8, D at 16 with 0.0025*16/17."""
    for weights in (dict(pl_weight=0.0, r1_gamma=0.0), dict(pl_weight=2.0, r1_gamma=1.0)):
        module = _module(train=dict(g_lr=0.0025, d_lr=0.0025, betas=(0.0, 0.99), pl_interval=4, r1_interval=16,
                                    **weights))
        opt_G, opt_D = module.configure_optimizers()
        for opt, c in ((opt_G, 4 / 5), (opt_D, 16 / 17)):
            (group,) = opt.param_groups
            assert group["lr"] == pytest.approx(0.0025 * c, rel=1e-12), weights
            assert group["betas"] == pytest.approx((0.0, 0.99 ** c), rel=1e-12), weights


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


# ----------------------------------------------------------------------------- ADA controller
class Pipe(torch.nn.Module):
    def __init__(self, p=0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(p))


def run_ada(ctrl, pipe, logits, batches, batch_size=8):
    results = []
    for _ in range(batches):
        ctrl.accumulate(logits)
        results.append(ctrl.step(pipe, batch_size))
    return results


def test_ada_p_rises_by_the_exact_step_when_d_overfits():
    ctrl, pipe = ADAController(target=0.6, interval=4, ada_kimg=500), Pipe(0.1)
    results = run_ada(ctrl, pipe, torch.full((8, 1), 3.0), 4)
    assert results[:3] == [None, None, None] and results[3] == 1.0 and ctrl.r_t == 1.0
    assert float(pipe.p) == pytest.approx(0.1 + 8 * 4 / (500 * 1000), abs=1e-8)


def test_ada_p_is_clamped_at_zero_only():
    """NVIDIA: p = max(p + adjust, 0); nothing stops it above 1."""
    ctrl, pipe = ADAController(target=0.6, interval=2, ada_kimg=100), Pipe(0.0001)
    logits = torch.tensor([[1.0], [-1.0], [2.0], [-3.0]])  # r_t = 0
    assert run_ada(ctrl, pipe, logits, 2)[1] == 0.0
    assert float(pipe.p) == 0.0
    pipe.p.fill_(0.9999)
    run_ada(ctrl, pipe, torch.ones(4, 1), 2)
    assert float(pipe.p) == pytest.approx(0.9999 + 8 * 2 / (100 * 1000), abs=1e-7)


def test_ada_r_t_is_the_mean_sign_over_the_interval():
    ctrl, pipe = ADAController(target=0.6, interval=2, ada_kimg=500), Pipe(0.5)
    ctrl.accumulate(torch.tensor([1.0, 1.0, -1.0, 0.0]))
    assert ctrl.step(pipe, 4) is None and math.isnan(ctrl.r_t)
    ctrl.accumulate(torch.tensor([2.0, 3.0, 4.0, -5.0]))
    ctrl.accumulate(torch.tensor([-1.0, -2.0]))  # a second batch of real logits (Dreg's) in the same minibatch
    assert ctrl.step(pipe, 4) == pytest.approx((1 + 2 - 2) / 10)
    assert float(pipe.p) == pytest.approx(0.5 - 4 * 2 / 500000, abs=1e-8)


def test_ada_observe_only_leaves_p_alone():
    ctrl, pipe = ADAController(), Pipe(0.3)
    assert run_ada(ctrl, pipe, torch.ones(8, 1), 4)[3] == 1.0
    assert float(pipe.p) == pytest.approx(0.3)
    assert run_ada(ctrl, None, -torch.ones(8, 1), 4)[3] == -1.0


def test_ada_state_round_trip_resumes_mid_interval():
    import io

    logits = [torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0]), torch.tensor([-1.0, -1.0, 1.0])]
    a, pa = ADAController(interval=3, ada_kimg=500), Pipe(0.2)
    a.accumulate(logits[0])
    a.step(pa, 3)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b, pb = ADAController(interval=3, ada_kimg=500), Pipe(0.2)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for x in logits[1:]:
        ra, rb = (a.accumulate(x), a.step(pa, 3))[1], (b.accumulate(x), b.step(pb, 3))[1]
        assert ra == rb
    assert ra == pytest.approx(3 / 9) and float(pa.p) == float(pb.p)


# ----------------------------------------------------------------------------- NVIDIA's bookkeeping
def _module(tmp_path=None, fine_tune=False, train=None, augment=None):
    """Our module on TINY_G/TINY_D, from scratch or fine-tuning a base file whose G_ema differs from its G."""
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.networks import Discriminator, Generator
    from stylegan_blend.training.module import StyleGAN2Module

    model = {"G_kwargs": TINY_G, "D_kwargs": TINY_D}
    if fine_tune:
        torch.manual_seed(3)
        G, G_ema, D = Generator(**TINY_G), Generator(**TINY_G), Discriminator(**TINY_D)
        save_network(tmp_path / "base.pt", G_ema, G=G, D=D)
        model = {"init_from": str(tmp_path / "base.pt")}
    torch.manual_seed(0)
    return StyleGAN2Module({"model": model, "train": dict(dict(batch_size=4, diagnostics={"num_images": 4}),
                                                          **(train or {})),
                            "augment": augment or {"kind": "none"}})


def _train(module, batches: int = 1, callbacks=()):
    """`batches` minibatches of 4 random 16 px reals through our Lightning loop (the product's training_step)."""
    import pytorch_lightning as pl

    reals = torch.rand(4 * batches, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(reals), batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="32-true", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks))
    trainer.fit(module, train_dataloaders=loader)
    return reals


def test_schedule_defaults_are_nvidias_for_scratch_and_fine_tuning(tmp_path, dataset):
    """NVIDIA train.py: ada_kimg 500 and (cfg auto) EMA ramp-up 0.05 from scratch; --resume sets ada_kimg=100 and
    ema_rampup=None. Through the Hydra config (augment=ada, train defaults), so the YAML cannot drift from it."""
    from omegaconf import OmegaConf

    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.networks import Discriminator, Generator
    from stylegan_blend.training.module import StyleGAN2Module

    base = tmp_path / "base.pt"
    save_network(base, Generator(**TINY_G), D=Discriminator(**TINY_D))

    def build(*overrides):
        cfg = _cfg(tmp_path / "run", dataset, "augment=ada", *overrides)
        module = StyleGAN2Module(OmegaConf.to_container(cfg, resolve=True))
        return module.ema_rampup, module.ada.ada_kimg

    assert build() == (0.05, 500)
    assert build(f"model.init_from={base}") == (None, 100)
    for start in ((), (f"model.init_from={base}",)):  # explicit values win; 0 turns the ramp-up off
        assert build(*start, "augment.ada_kimg=7", "train.ema_rampup=0.2") == (0.2, 7)
        assert build(*start, "train.ema_rampup=0")[0] is None
    assert build("augment.target=null")[1] is None  # NVIDIA's --aug=fixed: the controller only measures r_t


def test_g_ema_beta_uses_the_images_before_the_minibatch(tmp_path):
    """From scratch, ramp-up on, first minibatch: NVIDIA's ema_nimg = min(ema_kimg*1000, 0 * 0.05) = 0, so beta = 0 and
    G_ema becomes G exactly (with the count after the minibatch, beta = 0.5**20 would keep a trace of the old G_ema);
    buffers (w_avg) are copied from G."""
    module = _module(train=dict(ema_kimg=10.0))
    assert module.ema_rampup == 0.05
    with torch.no_grad():
        for p in module.G_ema.parameters():
            p.add_(1.0)
    _train(module)
    for (name, a), b in zip(module.G_ema.state_dict().items(), module.G.state_dict().values()):
        assert torch.equal(a, b), name


def test_g_ema_without_ramp_up_when_fine_tuning(tmp_path):
    """Fine-tuning (model.init_from): no ramp-up, so the first update already has the half-life's beta:
    ema_kimg = 0.004 at batch 4 gives beta = 0.5 and G_ema = (G + G_ema of the base file) / 2 after one minibatch."""
    module = _module(tmp_path, fine_tune=True, train=dict(ema_kimg=0.004))
    assert module.ema_rampup is None and module.fine_tuning
    ema_before = {k: v.clone() for k, v in module.G_ema.named_parameters()}
    assert not torch.equal(ema_before["synthesis.b16.conv1.weight"], module.G.synthesis.b16.conv1.weight)
    _train(module)
    G = dict(module.G.named_parameters())
    for name, p in module.G_ema.named_parameters():
        g, before = G[name].detach(), ema_before[name]
        scale = float(torch.maximum(g.abs(), before.abs()).max())  # lerp rounds at the operands' ulp
        assert float((p - (g + before) / 2).abs().max()) <= 1e-6 * scale, name
    assert torch.equal(module.G_ema.mapping.w_avg, module.G.mapping.w_avg)


class _RealLogitSigns:
    """Forces D's logits on the reals: +1 in Dmain (input is the real batch) and -1 in Dreg (the reals with grad)."""

    def __new__(cls, module):
        import pytorch_lightning as pl

        class _Force(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                real = batch[0]

                def force(_mod, args, out):
                    if args[0].shape == real.shape and torch.equal(args[0].detach(), real):
                        return out * 0 + (-1.0 if args[0].requires_grad else 1.0)
                    return None
                self.handle = pl_module.D.register_forward_hook(force)

            def on_train_batch_end(self, *_):
                self.handle.remove()

        return _Force()


def test_r_t_counts_dmain_and_dreg_real_logits():
    """NVIDIA's Loss/signs/real is reported by Dmain and by Dreg; its Collector averages all of them: with Dmain's
    signs +1 and Dreg's -1 over one interval, r_t = (4 - 4) / 8 = 0 (Dmain's alone would give 1)."""
    module = _module(train=dict(r1_interval=1, pl_weight=0.0), augment={"kind": "none", "interval": 1})
    _train(module, callbacks=[_RealLogitSigns(module)])
    assert module.ada.r_t == 0.0


def test_every_d_call_sees_augmented_images():
    """NVIDIA's run_D augments every D input: Gmain's fakes, Dmain's fakes and reals, Dreg's reals."""
    import pytorch_lightning as pl

    module = _module(train=dict(r1_interval=1, pl_interval=1))
    pipe_out, d_in = [], []

    class Flip(torch.nn.Module):
        def forward(self, x):
            pipe_out.append(-x.flip(3))
            return pipe_out[-1]

    class Watch(pl.Callback):  # the step only (the epoch-end diagnostics run D on plain images)
        def on_train_batch_start(self, trainer, pl_module, *_):
            self.handle = pl_module.D.register_forward_pre_hook(lambda _m, args: d_in.append(args[0]) and None)

        def on_train_batch_end(self, *_):
            self.handle.remove()

    module.augment = Flip()
    reals = _train(module, callbacks=[Watch()])
    assert len(d_in) == len(pipe_out) == 4
    assert all(x is y for x, y in zip(d_in, pipe_out)), "D saw an image the augment pipe did not produce"
    assert torch.equal(d_in[2], -reals.flip(3)) and torch.equal(d_in[3].detach(), -reals.flip(3))


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

    from stylegan_blend.app.train import CONF_DIR

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

    from stylegan_blend.app import train as train_mod

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
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", f"data.path={dataset}", "model=tiny",
                        "trainer.max_epochs=1", "logger=none", f"paths.output_dir={tmp_path / 'run'}",
                        "callbacks.blend_eval=false"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    err = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "16" in err[0] and "32" in err[0], r.stderr


def test_mixed_precision_bf16_on_cpu_trains(tmp_path, dataset):
    """Lightning autocast (bf16-mixed; 16-mixed becomes bf16 on CPU) against 32-true from the same weights and draws:
    the first minibatch's losses differ, but only by bf16 rounding."""
    rows = {}
    for precision in ("32-true", "bf16-mixed"):
        rows[precision] = LossRecorder()
        _fit(_cfg(tmp_path / precision, dataset, "trainer.max_epochs=1", f"trainer.precision={precision}"),
             [rows[precision]])
    (_, g32, d32), (_, g16, d16) = rows["32-true"].rows[0], rows["bf16-mixed"].rows[0]
    assert (g16, d16) != (g32, d32), "bf16-mixed computed exactly the fp32 losses: autocast did not run"
    # bf16 keeps 8 significant bits (unit roundoff u = 2^-9); a loss passes ~16 bf16 convs/matmuls in sequence here
    # (G: 2 mapping + 7 synthesis layers, D: 7), and first-order rounding errors add up to at most ~16u relative
    u = 2.0 ** -9
    assert abs(g16 - g32) <= 16 * u * abs(g32) and abs(d16 - d32) <= 16 * u * abs(d32), (g16, g32, d16, d32)


def test_batch_not_divisible_by_mbstd_group_is_one_line(tmp_path, dataset):
    from stylegan_blend.errors import UserError

    # 16 train images with batch 32 -> batches of 16 are fine; batch 6 with group 2 is fine; batch 6, group 4 is not
    with pytest.raises(UserError, match=r"batch of 6 images .* not divisible by the minibatch-stddev group 4"):
        _fit(_cfg(tmp_path / "run", dataset, "trainer.max_epochs=1", "train.batch_size=6",
                  "train.mbstd_group_size=4"))
