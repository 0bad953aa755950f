"""Check `stylegan-blend convert --to nvidia-pkl` inside a real NVIDIA stylegan2-ada-pytorch checkout.

    .venv/bin/python tools/check_nvidia_export.py --nvidia-dir /path/to/stylegan2-ada-pytorch
    (or set NVIDIA_SG2ADA_DIR)

Exports randomised tiny networks (G, D, G_ema) with our code, then, in a separate process whose path
has only NVIDIA's checkout (not this package), loads the file with NVIDIA's `legacy.load_network_pkl`,
runs NVIDIA's G_ema and D (force_fp32) on fixed inputs, re-pickles the result as NVIDIA's own snapshot
and loads that again. Prints the largest differences from our networks; exit 1 if any check fails.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NVIDIA_SIDE = r"""
import io, pickle, sys, torch
import legacy
with open(sys.argv[1], "rb") as f:
    data = legacy.load_network_pkl(f)
ref = torch.load(sys.argv[2])
G, D = data["G_ema"], data["D"]
assert type(G).__module__ == "torch_utils.persistence", type(G)
with torch.no_grad():
    img = G(ref["z"], None, noise_mode="const", force_fp32=True)
    logits = D(ref["img"], None, force_fp32=True)
again = legacy.load_network_pkl(io.BytesIO(pickle.dumps(data)))
assert all(k in again for k in ("G", "D", "G_ema"))
print(f"img {(img - ref['img']).abs().max().item():.3g} logits {(logits - ref['logits']).abs().max().item():.3g}")
sys.exit(0 if (img - ref["img"]).abs().max() < 1e-4 and (logits - ref["logits"]).abs().max() < 1e-4 else 1)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia-dir", default=os.environ.get("NVIDIA_SG2ADA_DIR"))
    args = ap.parse_args()
    if not args.nvidia_dir or not (Path(args.nvidia_dir) / "legacy.py").is_file():
        print("error: --nvidia-dir (or NVIDIA_SG2ADA_DIR): expected a stylegan2-ada-pytorch checkout with legacy.py",
              file=sys.stderr)
        return 1
    from stylegan_blend.checkpoints.export import write_nvidia_pkl
    from stylegan_blend.checkpoints.network import Network
    from stylegan_blend.networks import Discriminator, Generator

    torch.manual_seed(0)
    nets = {}
    for key, seed in (("G_ema", 1), ("G", 2)):
        nets[key] = Generator(z_dim=24, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                              mapping_kwargs=dict(num_layers=3),
                              synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=2, conv_clamp=256))
    nets["D"] = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32)
    with torch.no_grad():
        for m in nets.values():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.2)
            m.eval()
    with tempfile.TemporaryDirectory() as tmp:
        pkl, ref = Path(tmp) / "export.pkl", Path(tmp) / "ref.pt"
        write_nvidia_pkl(Network("native", G_ema=nets["G_ema"], G=nets["G"], D=nets["D"], meta={}), pkl)
        z = torch.randn(4, 24, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            img = nets["G_ema"](z, None, noise_mode="const")
            torch.save({"z": z, "img": img, "logits": nets["D"](img)}, ref)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        r = subprocess.run([sys.executable, "-c", NVIDIA_SIDE, str(pkl), str(ref)], cwd=args.nvidia_dir, env=env,
                           capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr.strip().splitlines()[-1])
    print("NVIDIA legacy.load_network_pkl: " + ("loads, matches, re-pickles" if r.returncode == 0 else "FAILED"))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
