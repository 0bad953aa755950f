"""Network files in every format the product meets: ours, our Lightning .ckpt, NVIDIA .pkl, rosinality .pt.

`load_network(path)` detects the format from content; `save_network(path, G_ema, G, D, meta)` writes ours.
"""
from .loader import load_network
from .native import save_network
from .network import Network

__all__ = ["load_network", "save_network", "Network"]
