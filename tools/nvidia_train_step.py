"""One StyleGAN2 training minibatch with NVIDIA's own code, for the training-speed benchmark.

NVIDIA's stylegan2-ada-pytorch is NOT part of this repository; point `NVIDIA_SG2ADA_DIR` (or the
`nvidia_dir` argument) at a checkout. Its networks and `training/loss.py` StyleGAN2Loss are imported
from there and driven the way its `training_loop.py` drives them: phases Gmain, Greg (every
pl_interval), Dmain, Dreg (every r1_interval), each zero_grad -> accumulate_gradients -> nan_to_num
on the grads -> Adam step with the lazy-regularisation correction, then the G_ema update. On CPU its
custom ops fall back to their reference implementations by themselves; conv2d_gradfix is switched off
because its custom op only exists for CUDA with torch 1.7-1.9.
"""
from __future__ import annotations

import copy
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

NVIDIA_ENV = "NVIDIA_SG2ADA_DIR"


def nvidia_dir_from_env() -> str | None:
    return os.environ.get(NVIDIA_ENV) or None


def import_nvidia(nvidia_dir: str):
    """(training.networks, training.loss, torch_utils.misc) from a checkout."""
    if not (Path(nvidia_dir) / "training" / "loss.py").is_file():
        raise SystemExit(f"error: {NVIDIA_ENV}={nvidia_dir} has no training/loss.py; "
                         "expected a stylegan2-ada-pytorch checkout")
    if str(nvidia_dir) not in sys.path:
        sys.path.insert(0, str(nvidia_dir))
    from torch_utils import misc  # noqa: PLC0415
    from torch_utils.ops import conv2d_gradfix  # noqa: PLC0415
    conv2d_gradfix.enabled = False
    from training import loss, networks  # noqa: PLC0415
    return networks, loss, misc


class NvidiaTrainStep:
    """NVIDIA's per-minibatch training work for the given G/D kwargs and our `train` config section.

    `init_from` (optional) is a module with G, D, G_ema whose weights are copied in (the state-dict keys
    are NVIDIA's), so both implementations start from the same point.
    """

    def __init__(self, nvidia_dir: str, G_kwargs: dict, D_kwargs: dict, train: dict, init_from=None,
                 device: str = "cpu"):
        networks, loss, self.misc = import_nvidia(nvidia_dir)
        self.device = torch.device(device)
        self.G = networks.Generator(**copy.deepcopy(G_kwargs)).train().requires_grad_(False).to(self.device)
        self.D = networks.Discriminator(**copy.deepcopy(D_kwargs)).train().requires_grad_(False).to(self.device)
        if init_from is not None:
            self.G.load_state_dict(init_from.G.state_dict())
            self.D.load_state_dict(init_from.D.state_dict())
        self.G_ema = copy.deepcopy(self.G).eval()
        self.batch_size = int(train["batch_size"])
        self.loss = loss.StyleGAN2Loss(
            device=self.device, G_mapping=self.G.mapping, G_synthesis=self.G.synthesis, D=self.D,
            style_mixing_prob=train["style_mixing"], r1_gamma=train["r1_gamma"],
            pl_batch_shrink=train["pl_batch_shrink"], pl_decay=train["pl_decay"], pl_weight=train["pl_weight"])
        self.phases = []
        for name, module, lr, interval in (("G", self.G, train["g_lr"], train["pl_interval"]),
                                           ("D", self.D, train["d_lr"], train["r1_interval"])):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=[b ** ratio for b in train["betas"]],
                                   eps=train["eps"])
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.ema_kimg = train["ema_kimg"] if train.get("ema_kimg") is not None else self.batch_size * 10 / 32
        self.ema_rampup = train.get("ema_rampup")
        self.cur_nimg = 0
        self.batch_idx = 0
        self.phase_seconds = defaultdict(float)  # phase name (and "Gema") -> seconds spent, for profiles

    def __call__(self, real_img: torch.Tensor) -> None:
        """One minibatch: float NCHW reals in [-1, 1]."""
        n = self.batch_size
        real_img = real_img.to(self.device, torch.float32)
        real_c = torch.zeros([n, 0], device=self.device)
        all_gen_z = torch.randn([len(self.phases) * n, self.G.z_dim], device=self.device).split(n)
        for (name, module, opt, interval), gen_z in zip(self.phases, all_gen_z):
            if self.batch_idx % interval != 0:
                continue
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(phase=name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=real_c,
                                           sync=True, gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    self.misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
            self.phase_seconds[name] += time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            ema_nimg = self.ema_kimg * 1000
            if self.ema_rampup is not None:
                ema_nimg = min(ema_nimg, self.cur_nimg * self.ema_rampup)
            beta = 0.5 ** (n / max(ema_nimg, 1e-8))
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.phase_seconds["Gema"] += time.perf_counter() - start
        self.cur_nimg += n
        self.batch_idx += 1
