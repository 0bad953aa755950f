"""Regenerate the NVIDIA parity fixtures under tests/data/nvidia/ from NVIDIA's own code.

NVIDIA's stylegan2-ada-pytorch is NOT part of this repository; point this script at a checkout:

    .venv/bin/python tools/make_nvidia_fixtures.py --nvidia-dir /path/to/stylegan2-ada-pytorch
    (or set NVIDIA_SG2ADA_DIR)

What it writes (tensors and plain values only, loadable with torch.load(weights_only=True); no NVIDIA
modules or source are pickled):
  g32_skip.pt, g16_resnet.pt   - G init_kwargs, state dict, and per-case z, ws, float image
  d32_resnet.pt, d16_skip.pt, d16_orig.pt - D init_kwargs, state dict, an input batch and its logits
  g32_skip_seedNNNN_psiX.png   - uint8 images, NVIDIA generate.py convention
  train_loop.pt                - 8 minibatches of NVIDIA's own training_loop() (run on the CPU, see
                                 tools/nvidia_train_step.py) on a tiny 16 px G/D: every random draw, the reals, ADA's p
                                 and r_t, and G, D, G_ema, pl_mean afterwards (LOOP_CASES; more cases by one entry)
  paper256_manifest.json       - names/shapes/parameter counts of NVIDIA's paper256 G and D at 256 px
  augment.pt                   - NVIDIA's AugmentPipe (training/augment.py) per op at p = 1 and 0.5, per preset, at
                                 p = 0, greyscale, non-square and with every strength changed: the seeds of the
                                 inputs and of torch's global RNG, p, kwargs, NVIDIA's output and the next global
                                 draws after it; gradients (first order, and R1's second order) for bgc; NVIDIA's
                                 presets (parsed from its train.py) and AugmentPipe's defaults
  fp16.pt                      - g32_skip / d32_resnet (their state dicts above) run by NVIDIA with the fp16
                                 blocks on (its code runs fp16 on the CPU too) and with force_fp32, same inputs
  ../tf_pickle/*                - TensorFlow-era StyleGAN2(-ADA) pickles and NVIDIA's legacy.py conversion of them
                                 (tools/make_tf_pickle_fixtures.py; `--only tf_pickle` makes just these)
  train_step.pt                - one minibatch of NVIDIA's training loop (StyleGAN2Loss phases Gmain, Greg,
                                 Dmain, Dreg, nan_to_num'd gradients) on a tiny 16 px G/D, fp32 and with the fp16
                                 blocks on: the inputs, every random draw, losses, per-phase gradients (fp32)
                                 and, per gradient tensor, NVIDIA's own fp16-vs-fp32 relative error (the full
                                 fp16 gradients only for Dreg)

Every parameter is randomised (biases, noise strengths, w_avg, affine biases), so a key that is loaded
but not used, or used in the wrong place, changes the output. Every value the maker invents (weights, inputs,
recorded draws) is drawn on an int8 grid and stored as one byte (tests/fixture_pack.py): the fixtures stay small,
and NVIDIA's code saw exactly the stored values; its outputs stay float32. References run NVIDIA's networks with
force_fp32=True: on CPU our fp16 blocks run in fp32, and NVIDIA's reference ops are used on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))
import fixture_pack  # noqa: E402 - tests/fixture_pack.py, shared with the tests
from fixture_pack import on_grid, pack, pack_state  # noqa: E402

from stylegan_blend.networks import PAPER256_D_KWARGS, PAPER256_G_KWARGS  # noqa: E402

G_CASES = {
    # skip generator (the paper256 architecture) with channels that change across blocks and z_dim != w_dim
    "g32_skip": dict(z_dim=24, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                     mapping_kwargs=dict(num_layers=3),
                     synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=4, conv_clamp=256)),
    "g16_resnet": dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                       mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=128, channel_max=32, architecture="resnet",
                                             num_fp16_res=2, conv_clamp=256)),
}
D_CASES = {
    "d32_resnet": dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
                       num_fp16_res=4, conv_clamp=256, block_kwargs={}, mapping_kwargs={},
                       epilogue_kwargs=dict(mbstd_group_size=4)),
    "d16_skip": dict(c_dim=0, img_resolution=16, img_channels=3, architecture="skip", channel_base=128,
                     channel_max=32, num_fp16_res=2, conv_clamp=256, block_kwargs={}, mapping_kwargs={},
                     epilogue_kwargs=dict(mbstd_group_size=2, mbstd_num_channels=2)),
    "d16_orig": dict(c_dim=0, img_resolution=16, img_channels=3, architecture="orig", channel_base=128,
                     channel_max=32, conv_clamp=0.5, block_kwargs={}, mapping_kwargs={},
                     epilogue_kwargs=dict(mbstd_group_size=None)),
}
# (seed, truncation_psi, noise_mode, conv_clamp override). The clamp-1 case makes clamping bite.
G_IMAGE_CASES = [(0, 1.0, "const", None), (1, 1.0, "const", None), (2, 0.7, "const", None),
                 (3, 1.0, "none", None), (4, 1.0, "const", 1.0)]
FREEZE_D = (10, 13)


def import_nvidia(nvidia_dir: str):
    """Import NVIDIA's training.networks from a checkout (its CPU path uses the reference ops)."""
    if not (Path(nvidia_dir) / "training" / "networks.py").is_file():
        sys.exit(f"error: {nvidia_dir} has no training/networks.py; expected a stylegan2-ada-pytorch checkout")
    sys.path.insert(0, str(nvidia_dir))
    from training import networks  # noqa: PLC0415
    return networks


def plain(obj):
    """NVIDIA's init_kwargs are EasyDicts; store JSON-able plain containers."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def save(obj, path: Path) -> None:
    """torch.save, atomically (a stopped run leaves the old fixture, not half a new one)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def randomise(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Make every tensor matter: nonzero biases/noise strengths, affine biases around 1, w_avg != 0. Every tensor
    ends on its int8 grid (fixture_pack.on_grid), so the fixture stores NVIDIA's exact weights in a byte each."""
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        if name.endswith("resample_filter"):  # NVIDIA's fixed filter, not drawn: stored as float32
            continue
        noise = torch.randn(t.shape, generator=gen)
        if name.endswith("affine.bias"):
            t.copy_(1 + 0.2 * noise)
        elif name.endswith("noise_strength"):
            t.copy_(0.1 + 0.4 * torch.rand(t.shape, generator=gen))
        elif name.endswith("bias") or name.endswith("w_avg"):
            t.copy_(0.3 * noise)
        elif name.endswith("torgb.weight"):  # keep images mostly inside [-1, 1] so uint8 rarely saturates
            t.mul_(0.25)
        t.copy_(on_grid(t))


def state_dict_of(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def make_generator(networks, name: str, kwargs: dict, out: Path, seed: int) -> None:
    torch.manual_seed(seed)
    G = networks.Generator(**kwargs).eval()
    randomise(G, torch.Generator().manual_seed(seed))
    sd = state_dict_of(G)
    cases = []
    for img_seed, psi, noise_mode, clamp in G_IMAGE_CASES:
        net = G
        if clamp is not None:
            kw = json.loads(json.dumps(kwargs))
            kw["synthesis_kwargs"]["conv_clamp"] = clamp
            net = networks.Generator(**kw).eval()
            net.load_state_dict(sd)
        z = torch.from_numpy(np.random.RandomState(img_seed).randn(1, G.z_dim))
        ws = net.mapping(z, None, truncation_psi=psi)
        img = net.synthesis(ws, noise_mode=noise_mode, force_fp32=True)
        cases.append(dict(seed=img_seed, truncation_psi=psi, noise_mode=noise_mode, conv_clamp=clamp,
                          z=z.float(), ws=ws.float(), img=img.float()))
        if name == "g32_skip":
            suffix = "" if clamp is None else f"_clamp{clamp:g}"
            png = out / f"{name}_seed{img_seed:04d}_psi{psi:g}_{noise_mode}{suffix}.png"
            tmp = png.with_name(png.name + ".tmp")
            Image.fromarray(to_uint8(img)[0], "RGB").save(tmp, format="PNG")
            os.replace(tmp, png)
    save(dict(init_kwargs=plain(G.init_kwargs), state_dict=pack_state(sd, grid=True), cases=cases), out / f"{name}.pt")


@torch.no_grad()
def make_discriminator(networks, name: str, kwargs: dict, out: Path, seed: int) -> None:
    torch.manual_seed(seed)
    D = networks.Discriminator(**kwargs).eval()
    randomise(D, torch.Generator().manual_seed(seed))
    res = kwargs["img_resolution"]
    img = on_grid(torch.rand([8, 3, res, res], generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1)
    logits = D(img, None, force_fp32=True)
    save(dict(init_kwargs=plain(D.init_kwargs), state_dict=pack_state(state_dict_of(D), grid=True), img=pack(img),
              logits=logits.float()), out / f"{name}.pt")


@torch.no_grad()
def make_fp16(networks, out: Path) -> None:
    """NVIDIA's fp16 forward next to its fp32 one for the same weights and inputs (the parity tolerance)."""
    g, d = fixture_pack.load(out / "g32_skip.pt"), fixture_pack.load(out / "d32_resnet.pt")
    G = networks.Generator(**g["init_kwargs"]).eval()
    G.load_state_dict(g["state_dict"])
    D = networks.Discriminator(**d["init_kwargs"]).eval()
    D.load_state_dict(d["state_dict"])
    z = torch.from_numpy(np.random.RandomState(7).randn(4, G.z_dim))
    ws = G.mapping(z, None)
    img16, img32 = (G.synthesis(ws, noise_mode="const", force_fp32=f).float() for f in (False, True))
    logits16, logits32 = (D(d["img"], None, force_fp32=f).float() for f in (False, True))
    # D's input is d32_resnet.pt's `img`, not stored twice
    save(dict(ws=ws.float(), img_fp16=img16, img_fp32=img32, logits_fp16=logits16, logits_fp32=logits32),
         out / "fp16.pt")


# One minibatch of NVIDIA's training loop on a tiny G/D (paper256's skip G / resnet D, fp16 on b8 and b16).
STEP_G = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=2, conv_clamp=256))
STEP_D = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16, num_fp16_res=2,
              conv_clamp=256, block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4))
STEP_TRAIN = dict(batch_size=4, r1_gamma=1.0, r1_interval=16, pl_weight=2.0, pl_interval=4, pl_decay=0.01,
                  pl_batch_shrink=2, style_mixing=0.0)
STEP_PHASES = (("Gmain", "G", 1), ("Greg", "G", STEP_TRAIN["pl_interval"]), ("Dmain", "D", 1),
               ("Dreg", "D", STEP_TRAIN["r1_interval"]))


class RandomDraws:
    """Records (or replays) every torch.randn / randn_like a phase makes: the synthesis noise and the path-length
    noise, so another implementation can be fed exactly the same random numbers. Recorded draws are rounded to their
    int8 grid (fixture_pack.on_grid) before NVIDIA's code sees them: the fixture stores a byte per value."""

    def __init__(self, replay=None):
        self.draws = [] if replay is None else list(replay)
        self.replay = replay is not None

    def __enter__(self):
        self.saved = torch.randn, torch.randn_like

        def take(shape, like_dtype=torch.float32):
            if self.replay:
                t = self.draws.pop(0)
                assert tuple(t.shape) == tuple(shape), (t.shape, shape)
                return t.clone().to(like_dtype)
            t = on_grid(self.saved[0](*shape))
            self.draws.append(t.clone())
            return t.to(like_dtype)

        def randn(*size, **kw):
            shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple)) else size
            return take(shape, kw.get("dtype") or torch.float32).to(kw.get("device") or "cpu")

        torch.randn = randn
        torch.randn_like = lambda x, **kw: take(x.shape, kw.get("dtype") or x.dtype).to(x.device)
        return self

    def __exit__(self, *exc):
        torch.randn, torch.randn_like = self.saved


def run_nvidia_minibatch(networks, loss_mod, misc, sd_G, sd_D, real, zs, draws, fp16: bool) -> dict:
    """NVIDIA's training_loop phase sequence for one minibatch without the optimizer steps (so every phase sees the
    same weights): requires_grad_ on the phase's module, accumulate_gradients with the phase's gain, nan_to_num of
    the gradients. Returns losses, gradients per phase, pl_mean and w_avg. `draws` None: record every random draw
    (returned under "draws"); otherwise replay them phase by phase."""
    gk = json.loads(json.dumps(STEP_G))
    dk = json.loads(json.dumps(STEP_D))
    if not fp16:
        gk["synthesis_kwargs"]["num_fp16_res"] = 0
        dk["num_fp16_res"] = 0
    G = networks.Generator(**gk).train().requires_grad_(False)
    D = networks.Discriminator(**dk).train().requires_grad_(False)
    G.load_state_dict(sd_G)
    D.load_state_dict(sd_D)
    t = STEP_TRAIN
    loss = loss_mod.StyleGAN2Loss(device=torch.device("cpu"), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D,
                                  style_mixing_prob=t["style_mixing"], r1_gamma=t["r1_gamma"],
                                  pl_batch_shrink=t["pl_batch_shrink"], pl_decay=t["pl_decay"],
                                  pl_weight=t["pl_weight"])
    seen = {}  # the per-sample loss terms NVIDIA reports, by name
    report = loss_mod.training_stats.report
    loss_mod.training_stats.report = lambda name, value: seen.setdefault(name, value.detach().float().mean())
    c = torch.zeros([real.shape[0], 0])
    out = dict(grads={}, losses={}, draws={})
    try:
        for phase, which, gain in STEP_PHASES:
            module = G if which == "G" else D
            seen.clear()
            with RandomDraws(replay=None if draws is None else draws[phase]) as rd:
                module.requires_grad_(True)
                loss.accumulate_gradients(phase=phase, real_img=real, real_c=c, gen_z=zs[phase], gen_c=c,
                                          sync=True, gain=gain)
                module.requires_grad_(False)
            grads = {}
            for name, p in module.named_parameters():
                if p.grad is not None:
                    misc.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                    grads[name] = p.grad.detach().clone()
                    p.grad = None
            out["grads"][phase] = grads
            out["draws"][phase] = rd.draws
            key = {"Gmain": "Loss/G/loss", "Greg": "Loss/pl_penalty", "Dmain": "Loss/D/loss",
                   "Dreg": "Loss/r1_penalty"}[phase]
            out["losses"][phase] = float(seen[key])
    finally:
        loss_mod.training_stats.report = report
    out["pl_mean"] = loss.pl_mean.clone()
    out["w_avg"] = G.mapping.w_avg.clone()
    return out


def make_train_step(networks, loss_mod, misc, out: Path, seed: int = 300) -> None:
    """The fp16 comparison is statistical and some seeds are chaotic for it (a pre-activation within fp16 rounding of
    the lrelu kink); seed 300 is not. tests/data/README.md lists the seeds measured."""
    torch.manual_seed(seed)
    G = networks.Generator(**STEP_G)
    D = networks.Discriminator(**STEP_D)
    gen = torch.Generator().manual_seed(seed)
    randomise(G, gen)
    randomise(D, gen)
    sd_G, sd_D = state_dict_of(G), state_dict_of(D)
    n = STEP_TRAIN["batch_size"]
    real = on_grid(torch.rand([n, 3, 16, 16], generator=gen) * 2 - 1)
    zs = {phase: on_grid(torch.randn([n, STEP_G["z_dim"]], generator=gen)) for phase, _, _ in STEP_PHASES}
    torch.manual_seed(seed + 1)  # the fp32 run records the random draws, the fp16 run replays the same numbers
    runs = {"fp32": run_nvidia_minibatch(networks, loss_mod, misc, sd_G, sd_D, real, zs, None, fp16=False)}
    draws = runs["fp32"].pop("draws")
    runs["fp16"] = run_nvidia_minibatch(networks, loss_mod, misc, sd_G, sd_D, real, zs, draws, fp16=True)
    del runs["fp16"]["draws"]
    # the fp16 gradients only serve as NVIDIA's own fp16-vs-fp32 error (the tolerance): keep that, per tensor
    g16 = runs["fp16"].pop("grads")
    runs["fp16"]["grad_rel_err"] = {
        phase: {n: float((g.double() - runs["fp32"]["grads"][phase][n].double()).norm()
                         / runs["fp32"]["grads"][phase][n].double().norm().clamp_min(1e-30)) for n, g in grads.items()}
        for phase, grads in g16.items()}
    runs["fp16"]["grads"] = {"Dreg": g16["Dreg"]}  # R1 on the reals: the same inputs reach D, so compared directly
    for run in runs.values():  # NVIDIA's gradients: float32, one flat vector per phase
        run["grads"] = {phase: pack_state(grads, grid=False) for phase, grads in run["grads"].items()}
    save(dict(G_kwargs=plain(STEP_G), D_kwargs=plain(STEP_D), train=STEP_TRAIN, G=pack_state(sd_G, grid=True),
              D=pack_state(sd_D, grid=True), real=pack(real), z={phase: pack(z) for phase, z in zs.items()},
              draws={phase: [pack(d) for d in ds] for phase, ds in draws.items()}, **runs), out / "train_step.pt")


# K consecutive minibatches of NVIDIA's own training loop (training_loop.training_loop, run on the CPU by
# tools/nvidia_train_step.py) fine-tuning a tiny 16 px skip G / resnet D it resumes from: Adam steps at lr > 0 with the
# lazy-regularisation correction, style mixing 0.9, path length every 2 and R1 every 4 minibatches, the G_ema update
# with ramp-up, and the ADA p update (r_t over an interval of 2, ada_kimg small enough for p to move by 0.08).
LOOP_G = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256))
LOOP_D = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=64, channel_max=8, num_fp16_res=0,
              conv_clamp=256, block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4))
LOOP_MINIBATCHES = 8
# in our config's words (train / augment sections); `nvidia_loop_kwargs` says the same to NVIDIA's loop
LOOP_TRAIN = dict(batch_size=4, g_lr=0.002, d_lr=0.002, betas=(0.0, 0.99), eps=1e-8, r1_gamma=1.0, r1_interval=4,
                  pl_weight=2.0, pl_interval=2, pl_decay=0.01, pl_batch_shrink=2, style_mixing=0.9, ema_kimg=0.01,
                  ema_rampup=0.05)
BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1,
           hue=1, saturation=1)  # NVIDIA train.py's augpipe_specs['bgc']
LOOP_CASES = {
    # augmentation off: NVIDIA measures r_t only with an AugmentPipe, so it gets one with every op disabled (it returns
    # its input and draws nothing); the ADA controller still runs and p moves
    "train_loop": dict(augment=dict(kind="ada", target=0.2, interval=2, ada_kimg=0.1, initial_p=0.05), augpipe={}),
    # ADA 'bgc' at a fixed p (NVIDIA's --aug=fixed): its draws are recorded like the others, and our AugmentPipe
    # draws as NVIDIA's does, so the same replay drives both pipelines
    "train_loop_bgc_p05": dict(augment=dict(kind="ada", preset="bgc", target=None, initial_p=0.5), augpipe=BGC),
}
DEFAULT_LOOP_CASES = ("train_loop", "train_loop_bgc_p05")


def nvidia_loop_kwargs(t: dict, a: dict, augpipe: dict) -> dict:
    """NVIDIA training_loop() arguments for our `train` / `augment` config sections (train.py's names)."""
    def adam(lr):
        return dict(class_name="torch.optim.Adam", lr=lr, betas=list(t["betas"]), eps=t["eps"])
    return dict(batch_size=t["batch_size"], batch_gpu=t["batch_size"], G_opt_kwargs=adam(t["g_lr"]),
                D_opt_kwargs=adam(t["d_lr"]), G_reg_interval=t["pl_interval"], D_reg_interval=t["r1_interval"],
                loss_kwargs=dict(class_name="training.loss.StyleGAN2Loss", r1_gamma=t["r1_gamma"],
                                 style_mixing_prob=t["style_mixing"], pl_weight=t["pl_weight"],
                                 pl_batch_shrink=t["pl_batch_shrink"], pl_decay=t["pl_decay"]),
                ema_kimg=t["ema_kimg"], ema_rampup=t["ema_rampup"],
                augment_kwargs=dict(class_name="training.augment.AugmentPipe", **augpipe), augment_p=a["initial_p"],
                ada_target=a.get("target"), ada_interval=a.get("interval", 4), ada_kimg=a.get("ada_kimg", 500))


def pack_draws(entries: list, scale: int) -> dict:
    """Draws in order: spec rows [minibatch, phase, kind, shape, low, high] and one flat tensor per kind; normal draws
    as int8 codes k (value k / scale, exact)."""
    spec, flat = [], {"normal": [], "uniform": [], "int": []}
    for mb, phase, (kind, value, low, high) in entries:
        spec.append([mb, phase, kind, list(value.shape), low, high])
        flat[kind].append(value.flatten().double())
    out = {k: torch.cat(v) if v else torch.zeros([0], dtype=torch.float64) for k, v in flat.items()}
    codes = out["normal"] * scale
    assert torch.equal(codes, codes.round()) and bool((codes.abs() <= 127).all())
    return dict(spec=spec, normal=codes.to(torch.int8), uniform=out["uniform"].float(), int=out["int"].long())


def _center_real_logits(D, images, share_real: float) -> None:
    """Shift D's output bias so that it calls `share_real` of the training images real: r_t then varies around
    2 * share_real - 1 between intervals, so p can rise and fall (a random D calls every image real or none)."""
    with torch.no_grad():
        logits = D(torch.from_numpy(images).float() / 127.5 - 1, None, force_fp32=True)
        D.b4.out.bias.sub_(logits.flatten().quantile(1 - share_real))
        D.b4.out.bias.copy_(on_grid(D.b4.out.bias))


def make_train_loop(networks, nvidia_dir: str, out: Path, case: str, seed: int = 400) -> None:
    import copy
    import tempfile

    from nvidia_train_step import DrawLog, run_training_loop  # noqa: PLC0415 - tools/ is on sys.path

    c = LOOP_CASES[case]
    torch.manual_seed(seed)
    G = networks.Generator(**LOOP_G).train().requires_grad_(False)
    D = networks.Discriminator(**LOOP_D).train().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    randomise(G, gen)
    randomise(D, gen)
    images = (torch.rand([12, 3, 16, 16], generator=gen) * 255).round().to(torch.uint8).numpy()
    _center_real_logits(D, images, share_real=0.8)
    start = dict(G=state_dict_of(G), D=state_dict_of(D))
    draws = DrawLog(seed + 1)
    loop = nvidia_loop_kwargs(LOOP_TRAIN, c["augment"], c["augpipe"])
    common = ("c_dim", "img_resolution", "img_channels")  # the loop takes these from the training set
    with tempfile.TemporaryDirectory() as tmp:
        run = run_training_loop(nvidia_dir, tmp, images, {k: v for k, v in LOOP_G.items() if k not in common},
                                {k: v for k, v in LOOP_D.items() if k not in common}, loop,
                                dict(G=G, D=D, G_ema=copy.deepcopy(G)), draws, LOOP_MINIBATCHES)
    floats = torch.from_numpy(images).to(torch.float32) / 127.5 - 1  # NVIDIA's conversion
    real_index, entries = [], []
    for b, mb in enumerate(run["minibatches"]):
        match = (mb["real"][:, None] == floats[None]).flatten(2).all(2)  # [batch, images]
        assert bool((match.sum(1) == 1).all()), "every real is exactly one training image"
        real_index.append(match.float().argmax(1))
        entries.append((b, "z", ("normal", mb["z"], None, None)))
        entries += [(b, phase, d) for phase, d in mb["draws"].items() for d in d]
    ps = [mb["p"] for mb in run["minibatches"]] + [run["p"]]
    if c["augment"].get("target") is not None:  # the fixture must tell NVIDIA's controller from a wrong one
        steps = [b - a for a, b in zip(ps, ps[1:])]
        assert max(steps) > 0 > min(steps) and 0.0 in ps, f"ADA p should rise, fall and clamp at 0: {ps}"
        dmain_only = []
        for end, r_t, count in run["adjustments"]:
            picked = [(s, n) for (mb, phase), s, n in run["signs"] if end - c["augment"]["interval"] <= mb < end
                      and phase == "Dmain"]
            dmain_only.append(sum(s for s, _ in picked) / sum(n for _, n in picked))
        assert dmain_only != [r for _, r, _ in run["adjustments"]], "Dreg's signs change no r_t; choose another seed"
    after = dict(G=pack_state(run["G"], grid=False), D=pack_state(run["D"], grid=False),
                 G_ema=pack_state(run["G_ema"], grid=False), pl_mean=run["pl_mean"].clone(), p=run["p"])
    save(dict(G_kwargs=plain(LOOP_G), D_kwargs=plain(LOOP_D), train=dict(LOOP_TRAIN, betas=list(LOOP_TRAIN["betas"])),
              augment=c["augment"], augpipe=c["augpipe"], normal_scale=DrawLog.NORMAL_SCALE,
              G=pack_state(start["G"], grid=True), D=pack_state(start["D"], grid=True), images=torch.from_numpy(images),
              real_index=torch.stack(real_index), draws=pack_draws(entries, DrawLog.NORMAL_SCALE), p=ps,
              adjustments=[list(a) for a in run["adjustments"]], after=after), out / f"{case}.pt")


def manifest(networks) -> dict:
    """Names and shapes of NVIDIA's paper256 networks, with which D tensors Freeze-D turns into buffers."""
    G = networks.Generator(**PAPER256_G_KWARGS)
    D = networks.Discriminator(**PAPER256_D_KWARGS)
    frozen = {}
    for k in FREEZE_D:
        Dk = networks.Discriminator(**{**PAPER256_D_KWARGS, "block_kwargs": {"freeze_layers": k}})
        params = {n for n, _ in Dk.named_parameters()}
        frozen[str(k)] = sorted(n for n in Dk.state_dict() if n not in params and not n.endswith("resample_filter"))

    def describe(net):
        return dict(init_kwargs=plain(net.init_kwargs),
                    num_params=sum(p.numel() for p in net.parameters()),
                    parameters=sorted(n for n, _ in net.named_parameters()),
                    state_dict={n: list(t.shape) for n, t in net.state_dict().items()})
    return dict(source="NVlabs/stylegan2-ada-pytorch training/networks.py, cfg=paper256 at 256 px",
                G=describe(G), D=dict(describe(D), frozen_by_freeze_layers=frozen),
                num_ws=G.num_ws)


# NVIDIA's AugmentPipe, op by op. Inputs are not stored: each case's images are
# torch.rand(shape, generator=torch.Generator().manual_seed(input_seed)) * 2 - 1.
AUG_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast", "lumaflip",
           "hue", "saturation", "imgfilter", "noise", "cutout")
AUG_STRENGTHS = dict(xint_max=0.25, scale_std=0.4, rotate_max=0.25, aniso_std=0.3, xfrac_std=0.05, brightness_std=0.5,
                     contrast_std=0.2, hue_max=0.3, saturation_std=0.5, imgfilter_bands=[0, 1, 0.5, 2],
                     imgfilter_std=0.5, noise_std=0.3, cutout_size=0.3)
AUG_MULTIPLIERS = dict(xflip=0.5, rotate90=0.7, xint=1, scale=0.6, rotate=0.8, aniso=1, xfrac=0.9, brightness=0.7,
                       contrast=1, lumaflip=0.6, hue=0.8, saturation=1, imgfilter=0.9, noise=1, cutout=0.5)


def augpipe_presets(nvidia_dir: str) -> dict:
    """The `augpipe_specs` dict literal in NVIDIA's train.py, read with ast (train.py is not importable as is)."""
    import ast  # noqa: PLC0415
    tree = ast.parse((Path(nvidia_dir) / "train.py").read_text(encoding="utf-8-sig"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "augpipe_specs" for t in node.targets):
            return {ast.literal_eval(k): {kw.arg: ast.literal_eval(kw.value) for kw in v.keywords}
                    for k, v in zip(node.value.keys, node.value.values)}
    sys.exit("error: no augpipe_specs in NVIDIA's train.py")


def aug_cases(presets: dict) -> list[dict]:
    """(name, kwargs, p, shape). Single ops on 8 px (22 px for imgfilter, whose reflect padding needs > 21 px)."""
    cases = []
    for op in AUG_OPS:
        size = 22 if op == "imgfilter" else 8
        cases.append(dict(name=f"{op}_p1", kwargs={op: 1}, p=1.0, shape=[2, 3, size, size]))
        cases.append(dict(name=f"{op}_p0.5", kwargs={op: 1}, p=0.5, shape=[6 if size == 8 else 4, 3, size, size]))
    cases += [
        dict(name="bgc_p0.5", kwargs=presets["bgc"], p=0.5, shape=[8, 3, 16, 16]),
        dict(name="bgcfnc_p0.5", kwargs=presets["bgcfnc"], p=0.5, shape=[4, 3, 22, 22]),
        dict(name="bgcfnc_p0", kwargs=presets["bgcfnc"], p=0.0, shape=[1, 3, 22, 22]),
        dict(name="bgc_p0.6_nonsquare", kwargs=presets["bgc"], p=0.6, shape=[4, 3, 12, 20]),
        dict(name="bgc_p0.7_grey", kwargs=presets["bgc"], p=0.7, shape=[4, 1, 16, 16]),
        dict(name="strengths_p1", kwargs={**AUG_MULTIPLIERS, **AUG_STRENGTHS}, p=1.0, shape=[3, 3, 22, 22]),
    ]
    return cases


def aug_input(shape, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def make_augment(nvidia_dir: str, out: Path, seed: int = 400) -> None:
    import inspect  # noqa: PLC0415

    from training import augment  # noqa: PLC0415 - NVIDIA's, importable once import_nvidia put it on the path
    presets = augpipe_presets(nvidia_dir)
    cases = []
    for i, case in enumerate(aug_cases(presets)):
        pipe = augment.AugmentPipe(**case["kwargs"])
        pipe.p.fill_(case["p"])
        x = aug_input(case["shape"], seed + 1000 + i)
        torch.manual_seed(seed + i)
        y = pipe(x)
        cases.append(dict(case, input_seed=seed + 1000 + i, seed=seed + i, out=y.detach().clone(),
                          next_draws=torch.rand(4)))  # the global RNG after the pipe: were as many numbers drawn?

    # Gradients through bgc at p = 0.5: of a fixed projection (what G gets through D's input), and of an R1-like
    # penalty |d sum(w * tanh(aug(x))) / dx|^2 (a second derivative through the pipe, as R1 on augmented reals).
    grads = {}
    for j, kind in enumerate(("projection", "r1")):
        shape, input_seed, weight_seed, rng_seed = [4, 3, 16, 16], seed + 2000 + j, seed + 3000 + j, seed + 100 + j
        pipe = augment.AugmentPipe(**presets["bgc"])
        pipe.p.fill_(0.5)
        x = aug_input(shape, input_seed).requires_grad_(True)
        w = torch.randn(shape, generator=torch.Generator().manual_seed(weight_seed))
        torch.manual_seed(rng_seed)
        y = pipe(x)
        if kind == "projection":
            (g,) = torch.autograd.grad((w * y).sum(), x)
        else:
            (g1,) = torch.autograd.grad((w * torch.tanh(y)).sum(), x, create_graph=True)
            (g,) = torch.autograd.grad(g1.square().sum(), x)
        grads[kind] = dict(kwargs=presets["bgc"], p=0.5, shape=shape, input_seed=input_seed, weight_seed=weight_seed,
                           seed=rng_seed, grad=g.detach().clone())
    # persistent_class wraps the class in a subclass taking *args, **kwargs: read the signature of NVIDIA's own class
    signature = inspect.signature(augment.AugmentPipe.__bases__[0].__init__)
    defaults = {k: v.default for k, v in signature.parameters.items() if k != "self"}
    assert all(v is not inspect.Parameter.empty for v in defaults.values()), defaults
    data = dict(source="NVlabs/stylegan2-ada-pytorch training/augment.py AugmentPipe on CPU (reference ops)",
                inputs="torch.rand(shape, generator=torch.Generator().manual_seed(input_seed)) * 2 - 1",
                presets=presets, defaults=plain(defaults), cases=cases, grads=grads)
    save(data, out / "augment.pt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvidia-dir", default=os.environ.get("NVIDIA_SG2ADA_DIR"),
                    help="stylegan2-ada-pytorch checkout (default: $NVIDIA_SG2ADA_DIR)")
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "nvidia"))
    ap.add_argument("--only", choices=["networks", "train_step", "augment", "tf_pickle", *LOOP_CASES],
                    action="append", help="regenerate just this fixture (repeatable); networks: the G and D "
                    "fixtures, their PNGs, fp16.pt and the paper256 manifest")
    args = ap.parse_args(argv)
    if not args.nvidia_dir:
        sys.exit("error: pass --nvidia-dir or set NVIDIA_SG2ADA_DIR to a stylegan2-ada-pytorch checkout")
    networks = import_nvidia(args.nvidia_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ())
    if not only or "tf_pickle" in only:
        from make_tf_pickle_fixtures import make_tf_pickles  # noqa: PLC0415 - sibling script in tools/
        make_tf_pickles(args.nvidia_dir, out.parent / "tf_pickle")
        if only == {"tf_pickle"}:
            return 0
    from torch_utils import misc  # noqa: PLC0415 - NVIDIA's, importable once import_nvidia put it on the path
    from torch_utils.ops import conv2d_gradfix  # noqa: PLC0415
    from training import loss as loss_mod  # noqa: PLC0415
    conv2d_gradfix.enabled = False  # its custom op exists only for CUDA with torch 1.7-1.9
    if not only or "augment" in only:
        make_augment(args.nvidia_dir, out)
    if not only or "train_step" in only:
        make_train_step(networks, loss_mod, misc, out)
    for case in LOOP_CASES:
        if case in only or (not only and case in DEFAULT_LOOP_CASES):
            make_train_loop(networks, args.nvidia_dir, out, case)
    if only and "networks" not in only:
        return 0
    for i, (name, kw) in enumerate(G_CASES.items()):
        make_generator(networks, name, kw, out, seed=100 + i)
    for i, (name, kw) in enumerate(D_CASES.items()):
        make_discriminator(networks, name, kw, out, seed=200 + i)
    make_fp16(networks, out)
    tmp = out / "paper256_manifest.json.tmp"
    tmp.write_text(json.dumps(manifest(networks), indent=1) + "\n")
    os.replace(tmp, out / "paper256_manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
