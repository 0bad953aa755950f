"""StyleGAN2 objective (Karras et al. 2020): non-saturating logistic loss, lazy R1 and path-length reg.

Each function returns per-sample terms so callers can average and log them; none of them steps an
optimizer. Lazy regularisation multiplies the regulariser by its interval (the "gain") so its
expected contribution per minibatch is unchanged (paper, sec. 3.1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits)


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return F.softplus(-real_logits) + F.softplus(fake_logits)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample (Mescheder et al. 2018). `real_images` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


def path_length(images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """|J_w^T y| per sample with y ~ N(0, I)/sqrt(H*W) (StyleGAN2 eq. 4), averaged over the ws."""
    noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def lazy_adam_params(lr: float, betas: tuple[float, float], interval: int | None):
    """Adam lr/betas corrected for lazy regularisation: c = k/(k+1), lr*c, beta**c (paper, sec. 3.1)."""
    if not interval:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, tuple(float(b) ** c for b in betas)


def r1_gamma_heuristic(resolution: int, batch_size: int) -> float:
    """NVIDIA's `auto` config: gamma = 0.0002 * res^2 / batch."""
    return 0.0002 * resolution ** 2 / batch_size
