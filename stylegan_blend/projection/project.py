"""Latent projection: find the w whose base-generator image matches a target photo.

The optimisation follows the schedule of NVIDIA's stylegan2-ada projector (Karras et al. 2020, "Analyzing
and Improving the Image Quality of StyleGAN", sec. 5): start at the mean w, Adam with a learning rate
that ramps up over the first 5 % of steps and down along a cosine over the last 25 %, Gaussian noise
added to w (scaled by the spread of W) that decays quadratically to zero at 75 % of the run so the
early steps explore, and the per-layer noise maps optimised alongside w under a penalty on their
spatial autocorrelation at every scale, so they cannot smuggle image content past w.
The noise maps are a nuisance variable: only w is kept. Renders use each generator's own `noise_const`.

Loss: LPIPS (VGG) when its weights are on disk, since pixel losses alone favour blurry matches; the
offline fallback is an L2 image pyramid plus, when the base discriminator is at hand, matching of its
(channel-normalised) block activations. `ProjectionResult.loss_name` records which one ran.
"""
from __future__ import annotations

import copy
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..networks.sampling import to_uint8
from ..run.files import atomic_write

LPIPS_ENV = "STYLEGAN_BLEND_LPIPS"


@dataclass
class ProjectionResult:
    w: torch.Tensor                 # [num_ws, w_dim] on the CPU: NVIDIA's projected_w layout
    loss_name: str                  # "lpips_vgg", "pyramid_l2" or "pyramid_l2+d_features"
    history: list[float] = field(default_factory=list)  # image-distance term per step


# ---------------------------------------------------------------------------------------------- losses

class _LpipsTorchScript(torch.nn.Module):
    """NVIDIA's metrics/vgg16.pt: `net(img_0_255, resize_images=False, return_lpips=True)` -> unit features."""
    name = "lpips_vgg"

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        feats = [self.net(_to_vgg_range(x), resize_images=False, return_lpips=True) for x in (synth, target)]
        return (feats[0] - feats[1]).square().sum()


class _LpipsPackage(torch.nn.Module):
    """The `lpips` package's LPIPS(net='vgg') with a full state dict from disk (backbone + linear heads)."""
    name = "lpips_vgg"

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.net(_limit_256(synth), _limit_256(target), normalize=False).sum()


class PyramidLoss(torch.nn.Module):
    """Offline fallback: mean-squared error summed over an average-pooled image pyramid (down to 8 px)
    plus, with a discriminator, squared distance of its channel-normalised block activations.

    The pyramid weighs coarse structure (pose, colours) as much as detail; D's features are the only
    learned perceptual features an offline machine has, and they know the base domain.
    """

    def __init__(self, D: torch.nn.Module | None = None, feature_weight: float = 1.0):
        super().__init__()
        self.D = D
        self.feature_weight = feature_weight
        self.name = "pyramid_l2" if D is None else "pyramid_l2+d_features"

    def forward(self, synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = synth.new_zeros([])
        a, b = synth, target
        while True:
            loss = loss + F.mse_loss(a, b)
            if a.shape[-1] <= 8:
                break
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        if self.D is not None:
            for fa, fb in zip(self._features(synth), self._features(target)):
                loss = loss + self.feature_weight * (_unit_channels(fa) - _unit_channels(fb)).square().sum(1).mean()
        return loss

    def _features(self, img: torch.Tensor) -> list[torch.Tensor]:
        x, feats = None, []
        for res in self.D.block_resolutions:
            x, img = getattr(self.D, f"b{res}")(x, img, force_fp32=True)
            feats.append(x)
        return feats


def _unit_channels(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True) + 1e-10).sqrt()


def _limit_256(img: torch.Tensor) -> torch.Tensor:
    """VGG was trained near 224 px: larger images go down to 256 by area averaging, as NVIDIA's projector does."""
    return F.interpolate(img, size=(256, 256), mode="area") if img.shape[-1] > 256 else img


def _to_vgg_range(img: torch.Tensor) -> torch.Tensor:
    return _limit_256((img + 1) * 127.5)


def resolve_lpips_path(lpips_path=None) -> Path | None:
    """The argument, else $STYLEGAN_BLEND_LPIPS, else None (fallback loss)."""
    path = lpips_path or os.environ.get(LPIPS_ENV) or None
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: LPIPS weights not found; expected NVIDIA's vgg16.pt TorchScript or an "
                        f"lpips.LPIPS(net='vgg') state dict (argument lpips_path or ${LPIPS_ENV})")
    return path


def load_lpips(path) -> torch.nn.Module:
    """A TorchScript VGG-LPIPS (NVIDIA's metrics/vgg16.pt) or a state dict of `lpips.LPIPS(net='vgg')`."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            return _LpipsTorchScript(torch.jit.load(str(path), map_location="cpu").eval())
        except RuntimeError:
            pass  # an ordinary torch.save zip: a state dict
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"{path}: not a TorchScript module or a state dict ({exc.__class__.__name__})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        import lpips
    except ImportError as exc:
        raise UserError(f"{path}: an LPIPS state dict needs the lpips package (pip install --no-deps lpips)") from exc
    net = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{path}: not an lpips.LPIPS(net='vgg') state dict ({first})") from exc
    return _LpipsPackage(net.eval())


def make_loss(D=None, lpips_path=None) -> torch.nn.Module:
    path = resolve_lpips_path(lpips_path)
    return load_lpips(path) if path is not None else PyramidLoss(D)


# ------------------------------------------------------------------------------------------ projection

def target_to_tensor(target, resolution: int) -> torch.Tensor:
    """uint8 HWC (NumPy or torch), uint8 CHW (NVIDIA's projector), or float [-1, 1] CHW/NCHW -> [1, C, R, R]."""
    t = torch.as_tensor(np.asarray(target)) if not isinstance(target, torch.Tensor) else target.detach()
    if t.dtype == torch.uint8:
        if t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3):
            t = t.permute(2, 0, 1)
        t = t.to(torch.float32) / 127.5 - 1
    t = t.to(torch.float32)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[0] != 1 or t.shape[-2:] != (resolution, resolution):
        raise ValueError(f"target shape {tuple(target.shape)}, expected {resolution}x{resolution} (HWC uint8 or CHW)")
    return t[:, :3]


def lr_schedule(t: float, ramp_up: float = 0.05, ramp_down: float = 0.25) -> float:
    """Multiplier at fraction t of the run: linear ramp up, flat, cosine ramp down to 0 at t = 1."""
    down = min(1.0, (1.0 - t) / ramp_down)
    return (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / ramp_up)


def noise_regularisation(noise: torch.Tensor) -> torch.Tensor:
    """Squared 1-pixel autocorrelation (x and y) at every scale down to 8 px: zero for white noise."""
    x = noise[None, None]
    reg = x.new_zeros([])
    while True:
        reg = reg + (x * x.roll(1, dims=3)).mean().square() + (x * x.roll(1, dims=2)).mean().square()
        if x.shape[-1] <= 8:
            return reg
        x = F.avg_pool2d(x, 2)


@torch.no_grad()
def w_statistics(G, num_samples: int = 10000, seed: int = 123, device="cpu") -> tuple[torch.Tensor, float]:
    """Mean w and the RMS distance of w samples from it (the scale of the exploration noise)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).to(device, torch.float32)
    w = torch.cat([G.mapping(chunk, None)[:, 0] for chunk in z.split(2048)])
    w_avg = w.mean(dim=0)
    return w_avg, float((w - w_avg).square().sum(dim=1).mean().sqrt())


def project(G, target, num_steps: int = 1000, w_plus: bool = False, D=None, seed: int = 0, device="cpu",
            progress: bool = True, lpips_path=None, initial_learning_rate: float = 0.1,
            initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75,
            regularize_noise_weight: float = 1e5, w_avg_samples: int = 10000,
            description: str = "projecting") -> ProjectionResult:
    """Optimise w (one w for all layers, or one per layer with `w_plus`) so G.synthesis(w) matches target.

    `target`: uint8 HWC/CHW or float [-1, 1] image at G's resolution. G and D are not modified.
    """
    device = torch.device(device)
    rng = torch.Generator(device).manual_seed(seed)  # local: the caller's global RNG stays untouched
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    if D is not None:
        D = copy.deepcopy(D).eval().requires_grad_(False).to(device)
    loss_fn = make_loss(D, lpips_path).to(device)
    target = target_to_tensor(target, G.img_resolution).to(device)

    w_avg, w_std = w_statistics(G, w_avg_samples, device=device)
    num_ws = G.num_ws
    w_opt = w_avg.reshape(1, 1, -1).repeat(1, num_ws if w_plus else 1, 1).clone().requires_grad_(True)
    noise_bufs = [buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")]
    for buf in noise_bufs:
        buf.copy_(torch.randn(buf.shape, generator=rng, device=device)).requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + noise_bufs, betas=(0.9, 0.999), lr=initial_learning_rate)

    history = []
    with _progress(progress, description, num_steps) as advance:
        for step in range(num_steps):
            t = step / num_steps
            for group in optimizer.param_groups:
                group["lr"] = initial_learning_rate * lr_schedule(t)
            w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
            ws = w_opt + torch.randn(w_opt.shape, generator=rng, device=device) * w_noise_scale
            synth = G.synthesis(ws.expand(1, num_ws, -1), noise_mode="const")
            dist = loss_fn(synth, target)
            reg = sum(noise_regularisation(buf) for buf in noise_bufs) if noise_bufs else 0.0
            optimizer.zero_grad(set_to_none=True)
            (dist + regularize_noise_weight * reg).backward()
            optimizer.step()
            with torch.no_grad():  # keep the noise maps white: zero mean, unit variance
                for buf in noise_bufs:
                    buf.sub_(buf.mean()).mul_(buf.square().mean().rsqrt())
            history.append(dist.item())
            advance(history[-1])
    w = w_opt.detach().expand(1, num_ws, -1)[0].cpu().clone()
    return ProjectionResult(w=w, loss_name=loss_fn.name, history=history)


class _progress:
    """Per-face progress on stderr: a rich bar (step, image distance, time left) on a terminal, else a
    plain `step N/M, loss x` line every 10% so logs of batch jobs show it too; or nothing."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda dist: None
        import sys

        if not sys.stderr.isatty():
            every = max(1, self.total // 10)
            state = {"step": 0}

            def line(dist):
                state["step"] += 1
                if state["step"] % every == 0 or state["step"] == self.total:
                    print(f"{self.description}: step {state['step']}/{self.total}, loss {dist:.4f}",
                          file=sys.stderr, flush=True)
            return line
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[dist]:.4f}"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total, dist=float("nan"))
        return lambda dist: self.bar.update(task, advance=1, dist=dist)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


# ------------------------------------------------------------------------------------------- w files

def save_w(path, w: torch.Tensor) -> None:
    """NVIDIA's projected_w.npz: key `w`, float32 [num_ws, w_dim]; written atomically."""
    arr = torch.as_tensor(w).detach().cpu().numpy().astype(np.float32)
    if arr.ndim != 2:
        raise ValueError(f"w shape {arr.shape}, expected [num_ws, w_dim]")
    atomic_write(path, lambda f: np.savez(f, w=arr))


def load_w(path, num_ws: int, w_dim: int) -> torch.Tensor:
    """Read `w` from an .npz as [num_ws, w_dim]; NVIDIA's files may also hold [1, num_ws, w_dim]."""
    try:
        with np.load(path) as data:
            if "w" not in data:
                raise UserError(f"{path}: no array 'w' (found {sorted(data.files)}); expected a projected_w .npz")
            w = data["w"]
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: cannot read as .npz ({exc.__class__.__name__}); expected a projected_w .npz") from exc
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    if w.shape != (num_ws, w_dim):
        raise UserError(f"{path}: w has shape {tuple(w.shape)}, expected ({num_ws}, {w_dim}) "
                        f"or (1, {num_ws}, {w_dim}) for this generator")
    return torch.from_numpy(np.asarray(w, dtype=np.float32))


@torch.no_grad()
def render(G, w: torch.Tensor, device="cpu") -> np.ndarray:
    """uint8 HWC image of G.synthesis(w) with G's own constant noise (NVIDIA's generate.py conversion)."""
    was_training = G.training
    G.eval()
    try:
        img = G.synthesis(w.to(device, torch.float32).unsqueeze(0), noise_mode="const")
    finally:
        G.train(was_training)
    return to_uint8(img)[0].cpu().numpy()
