"""Tiny networks shared by the checkpoint and CLI tests."""
import torch

TINY_G = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
              mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))
TINY_D = dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
              epilogue_kwargs=dict(mbstd_group_size=4))


def randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial values everywhere (noise strengths, biases, w_avg) so no mapping error can hide behind a zero."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        for name, b in module.named_buffers():
            if name.endswith("w_avg"):
                b.normal_()
    return module.eval()


def tiny_nets() -> dict:
    from stylegan_blend.networks import Discriminator, Generator

    return dict(G_ema=randomized(Generator(**TINY_G), 1), G=randomized(Generator(**TINY_G), 2),
                D=randomized(Discriminator(**TINY_D), 3))
