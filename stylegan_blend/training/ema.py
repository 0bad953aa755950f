"""Exponential moving average of generator weights (G_ema), parameterised by half-life in kimg."""
from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, ema_kimg: float, cur_nimg: float, rampup: float | None) -> float:
    """Per-step decay so the weights' half-life is `ema_kimg` thousand images.

    With ramp-up, the half-life is capped at `rampup * cur_nimg` early in training (StyleGAN2-ADA); `cur_nimg` is
    the count before this minibatch, as NVIDIA's loop, so the first update from scratch copies G (beta = 0).
    `rampup=None`: no cap (NVIDIA when fine-tuning).
    """
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """p_ema <- p + beta * (p_ema - p); buffers (w_avg, noise_const) are copied, as NVIDIA's loop does."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
