"""stylegan-blend: StyleGAN2 transfer learning and layer-swap blending, measured."""
__version__ = "0.1.0"
