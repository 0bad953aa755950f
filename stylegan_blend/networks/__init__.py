"""Pure-PyTorch StyleGAN2 networks whose state dicts are NVIDIA stylegan2-ada-pytorch's."""
from .discriminator import Discriminator
from .generator import Generator, set_fp16_mode

__all__ = ["Generator", "Discriminator", "set_fp16_mode", "PAPER256_G_KWARGS", "PAPER256_D_KWARGS"]

# The configuration of NVIDIA's FFHQ-256 transfer-learning source network (cfg=paper256).
PAPER256_G_KWARGS = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                         mapping_kwargs=dict(num_layers=8),
                         synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256))
PAPER256_D_KWARGS = dict(c_dim=0, img_resolution=256, img_channels=3, channel_base=16384, channel_max=512,
                         num_fp16_res=4, conv_clamp=256, block_kwargs={}, mapping_kwargs={},
                         epilogue_kwargs=dict(mbstd_group_size=8))
