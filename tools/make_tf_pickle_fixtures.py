"""TensorFlow-era StyleGAN2 / StyleGAN2-ADA network pickles for tests/data/tf_pickle/, checked with NVIDIA's code.

    .venv/bin/python tools/make_tf_pickle_fixtures.py --nvidia-dir /path/to/stylegan2-ada-pytorch
    (or tools/make_nvidia_fixtures.py --only tf_pickle; or set NVIDIA_SG2ADA_DIR)

A TF pickle is the tuple (G, D, Gs) of `dnnlib.tflib.network.Network` objects, each stored as the dict its
`__getstate__` returns: version (4 for StyleGAN2, 5 for StyleGAN2-ADA), name, static_kwargs, components (G's
`mapping` and `synthesis` sub-networks), build_module_src, build_func_name and variables (name, numpy value),
plus input/output shapes and names in version 5. Writing one needs no TensorFlow: the variables are numpy arrays
named and shaped as the TF build functions create them (StyleGAN2's training/networks_stylegan2.py: G_main,
G_mapping, G_synthesis_stylegan2, D_stylegan2; StyleGAN2-ADA's training/networks.py: G_main, G_mapping,
G_synthesis, D_main). Values are random; `build_module_src` is a one-line comment, never NVIDIA's source.

Each file is then loaded by NVIDIA's own `legacy.load_network_pkl` (stylegan2-ada-pytorch reads TF pickles
through a stub class; no TensorFlow needed), and `reference.pt` records what NVIDIA's converted networks compute
(force_fp32): G_ema images for seeds 0-3 at psi 1.0 and 0.7 (noise const, uint8 as generate.py writes them),
G's images for seeds 0-1 where G differs from Gs, and D logits for a fixed batch (uint8-free floats).
"""
from __future__ import annotations

import argparse
import copyreg
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "tf_pickle"
FIXTURE_SRC = "# stylegan-blend test fixture: the TensorFlow build code is not included\n"
IMAGE_CASES = [(seed, psi) for psi in (1.0, 0.7) for seed in range(4)]
G_IMAGE_SEEDS = (0, 1)  # G (not Gs) images, where the file's G differs from its Gs
# D input: np.random.RandomState(D_IMG_SEED).uniform(-1, 1, [8, C, R, R]), odd samples times D_ODD_SCALE (quieter:
# minibatch-stddev groups {0,2,..} and {1,3,..} then differ from the whole batch, so the group size shows in logits)
D_BATCH, D_IMG_SEED, D_ODD_SCALE = 8, 1000, 0.25

# Three files: StyleGAN2 config-f-like (skip G, resnet D, 32 px), config-e-like (resnet G, skip D, 16 px) and a
# StyleGAN2-ADA one (orig G, orig D, fp16 kwargs, conv_clamp that bites). Channels are tiny (fmap_max 8) but
# change across blocks, z_dim != w_dim, and mapping widths differ from both.
FIXTURES = {
    "sg2_config_f_32": dict(
        family="stylegan2", seed=500, separate_G=True,
        G=dict(num_channels=3, resolution=32, label_size=0, latent_size=10, dlatent_size=8, mapping_layers=2,
               mapping_fmaps=12, fmap_base=64, fmap_max=8),
        # no mbstd_group_size: D_stylegan2's default (4) applies, as in NVIDIA's config-f files
        D=dict(num_channels=3, resolution=32, label_size=0, fmap_base=64, fmap_max=8)),
    "sg2_config_e_16": dict(
        family="stylegan2", seed=510, separate_G=False,
        G=dict(num_channels=3, resolution=16, label_size=0, latent_size=8, dlatent_size=8, mapping_layers=3,
               mapping_fmaps=8, fmap_base=16, fmap_max=8, architecture="resnet", truncation_psi=0.5),
        D=dict(num_channels=3, resolution=16, label_size=0, fmap_base=16, fmap_max=8, architecture="skip",
               mbstd_group_size=2, mbstd_num_features=1)),
    "ada_16": dict(
        family="stylegan2-ada", seed=520, separate_G=False,
        G=dict(num_channels=3, resolution=16, label_size=0, latent_size=12, dlatent_size=8, mapping_layers=2,
               fmap_base=16, fmap_max=8, architecture="orig", num_fp16_res=2, conv_clamp=1),
        D=dict(num_channels=3, resolution=16, label_size=0, fmap_base=16, fmap_max=8, architecture="orig",
               mbstd_group_size=2, mbstd_num_features=2, num_fp16_res=2, conv_clamp=256, freeze_layers=2)),
}
BUILD_FUNCS = {"stylegan2": dict(G="G_main", mapping="G_mapping", synthesis="G_synthesis_stylegan2", D="D_stylegan2"),
               "stylegan2-ada": dict(G="G_main", mapping="G_mapping", synthesis="G_synthesis", D="D_main")}


class TFNetwork:
    """Pickles exactly as `dnnlib.tflib.network.Network` does: NEWOBJ of that class, then BUILD with the state."""

    def __init__(self, state: dict):
        self.state = state

    def __reduce__(self):
        return copyreg.__newobj__, (TFNetwork,), self.state


class TFEraPickler(pickle._Pickler):
    """Names globals as a 2019-2020 TF-era file does: TFNetwork -> dnnlib.tflib.network.Network and numpy's
    array rebuilders under numpy.core (today's numpy calls it numpy._core)."""

    def save_global(self, obj, name=None):
        if obj is TFNetwork:
            module, name = "dnnlib.tflib.network", "Network"
        elif getattr(obj, "__module__", "").startswith("numpy._core"):
            module, name = "numpy.core" + obj.__module__[len("numpy._core"):], name or obj.__qualname__
        else:
            return super().save_global(obj, name)
        self.save(module)
        self.save(name)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def write_tf_pickle(path, networks, protocol: int = 4) -> None:
    """`networks`: (G, D, Gs) TFNetwork objects (or any object graph holding them)."""
    with open(path, "wb") as f:
        TFEraPickler(f, protocol=protocol).dump(networks)


def network(name: str, func: str, static_kwargs: dict, variables: list, components=None, version: int = 4,
            src: str = FIXTURE_SRC, io: dict | None = None) -> TFNetwork:
    state = dict(version=version, name=name, static_kwargs=dict(static_kwargs), components=dict(components or {}),
                 build_module_src=src, build_func_name=func, variables=list(variables))
    if version >= 5:
        state.update(io or {})
    return TFNetwork(state)


def nf(kw: dict, stage: int) -> int:
    """TF's feature-map count: clip(int(fmap_base / 2**(stage * fmap_decay)), fmap_min, fmap_max)."""
    value = int(kw.get("fmap_base", 16384) / (2.0 ** (stage * kw.get("fmap_decay", 1.0))))
    return int(np.clip(value, kw.get("fmap_min", 1), kw.get("fmap_max", 512)))


class Values:
    """Random variable values that make every variable matter (nonzero biases, noise strengths, dlatent_avg)."""

    def __init__(self, seed: int):
        self.rng = np.random.RandomState(seed)

    def normal(self, shape, std=1.0):
        return (self.rng.randn(*shape) * std).astype(np.float32)

    def scalar(self, lo, hi):
        return np.float32(self.rng.uniform(lo, hi))  # TF's session.run gives 0-d variables as numpy scalars


def mapping_vars(kw: dict, family: str, v: Values) -> list:
    lrmul = kw.get("mapping_lrmul", 0.01)  # equalised LR: stored weights have std 1/lrmul
    hidden = kw.get("mapping_fmaps", 512 if family == "stylegan2" else None) or kw.get("dlatent_size", 512)
    n = kw.get("mapping_layers", 8)
    dims = [kw.get("latent_size", 512)] + [hidden] * (n - 1) + [kw.get("dlatent_size", 512)]
    out = []
    for i in range(n):
        out += [(f"Dense{i}/weight", v.normal([dims[i], dims[i + 1]], 1 / lrmul)),
                (f"Dense{i}/bias", v.normal([dims[i + 1]], 0.3 / lrmul))]
    return out


def modconv_vars(scope: str, k: int, cin: int, cout: int, w_dim: int, v: Values, noise=True, gain=1.0) -> list:
    out = [(f"{scope}/weight", v.normal([k, k, cin, cout], gain)), (f"{scope}/mod_weight", v.normal([w_dim, cin])),
           (f"{scope}/mod_bias", v.normal([cin], 0.2))]
    if noise:
        out.append((f"{scope}/noise_strength", v.scalar(0.1, 0.5)))
    return out + [(f"{scope}/bias", v.normal([cout], 0.3))]


def synthesis_vars(kw: dict, v: Values) -> list:
    log2 = int(np.log2(kw["resolution"]))
    arch, C, w_dim = kw.get("architecture", "skip"), kw.get("num_channels", 3), kw.get("dlatent_size", 512)
    num_layers = 2 * log2 - 2
    out = [(f"noise{i}", v.normal([1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)])) for i in range(num_layers - 1)]
    out.append(("4x4/Const/const", v.normal([1, nf(kw, 1), 4, 4])))
    out += modconv_vars("4x4/Conv", 3, nf(kw, 1), nf(kw, 1), w_dim, v)
    if arch == "skip":
        out += modconv_vars("4x4/ToRGB", 1, nf(kw, 1), C, w_dim, v, noise=False, gain=0.25)
    for res in range(3, log2 + 1):
        s = f"{2 ** res}x{2 ** res}"
        out += modconv_vars(f"{s}/Conv0_up", 3, nf(kw, res - 2), nf(kw, res - 1), w_dim, v)
        out += modconv_vars(f"{s}/Conv1", 3, nf(kw, res - 1), nf(kw, res - 1), w_dim, v)
        if arch == "resnet":
            out.append((f"{s}/Skip/weight", v.normal([1, 1, nf(kw, res - 2), nf(kw, res - 1)])))
        if arch == "skip" or res == log2:
            out += modconv_vars(f"{s}/ToRGB", 1, nf(kw, res - 1), C, w_dim, v, noise=False, gain=0.25)
    return out


def conv_vars(scope: str, k: int, cin: int, cout: int, v: Values, bias=True) -> list:
    out = [(f"{scope}/weight", v.normal([k, k, cin, cout]))]
    return out + ([(f"{scope}/bias", v.normal([cout], 0.3))] if bias else [])


def discriminator_vars(kw: dict, family: str, v: Values) -> list:
    log2 = int(np.log2(kw["resolution"]))
    arch, C = kw.get("architecture", "resnet"), kw.get("num_channels", 3)
    if family == "stylegan2":  # D_stylegan2: the layer exists when group size > 1 (default 4)
        mbstd = kw.get("mbstd_num_features", 1) if kw.get("mbstd_group_size", 4) > 1 else 0
    else:  # D_main: the layer exists when it adds features (default 1)
        mbstd = kw.get("mbstd_num_features", 1)
    out = []
    for res in range(log2, 2, -1):
        s = f"{2 ** res}x{2 ** res}"
        if arch == "skip" or res == log2:
            out += conv_vars(f"{s}/FromRGB", 1, C, nf(kw, res - 1), v)
        out += conv_vars(f"{s}/Conv0", 3, nf(kw, res - 1), nf(kw, res - 1), v)
        out += conv_vars(f"{s}/Conv1_down", 3, nf(kw, res - 1), nf(kw, res - 2), v)
        if arch == "resnet":
            out += conv_vars(f"{s}/Skip", 1, nf(kw, res - 1), nf(kw, res - 2), v, bias=False)
    if arch == "skip":
        out += conv_vars("4x4/FromRGB", 1, C, nf(kw, 1), v)
    out += conv_vars("4x4/Conv", 3, nf(kw, 1) + mbstd, nf(kw, 1), v)
    out += [("4x4/Dense0/weight", v.normal([nf(kw, 1) * 16, nf(kw, 0)])),
            ("4x4/Dense0/bias", v.normal([nf(kw, 0)], 0.3)),
            ("Output/weight", v.normal([nf(kw, 0), 1])), ("Output/bias", v.normal([1], 0.3))]
    return out


def generator(name: str, kw: dict, family: str, v: Values, src: str = FIXTURE_SRC) -> TFNetwork:
    funcs, version = BUILD_FUNCS[family], 4 if family == "stylegan2" else 5
    num_layers = 2 * int(np.log2(kw["resolution"])) - 2
    R, C = kw["resolution"], kw.get("num_channels", 3)
    io = lambda ins, outs: dict(input_shapes=ins, output_shapes=outs,  # noqa: E731 - version-5 extras
                                input_names=["latents_in", "labels_in"][:len(ins)], output_names=["images_out"])
    synthesis = network("G_synthesis", funcs["synthesis"], kw, synthesis_vars(kw, v), version=version, src=src,
                        io=dict(io([[None, num_layers, kw["dlatent_size"]]], [[None, C, R, R]]),
                                input_names=["dlatents_in"]))
    mapping = network("G_mapping", funcs["mapping"], dict(kw, dlatent_broadcast=num_layers),
                      mapping_vars(kw, family, v), version=version, src=src,
                      io=dict(io([[None, kw["latent_size"]], [None, 0]], [[None, num_layers, kw["dlatent_size"]]]),
                              output_names=["dlatents_out"]))
    top = ([("lod", np.float32(0))] if family == "stylegan2" else []) + \
        [("dlatent_avg", v.normal([kw["dlatent_size"]], 0.3))]
    return network(name, funcs["G"], kw, top, components=dict(synthesis=synthesis, mapping=mapping), version=version,
                   src=src, io=io([[None, kw["latent_size"]], [None, 0]], [[None, C, R, R]]))


def discriminator(kw: dict, family: str, v: Values, src: str = FIXTURE_SRC) -> TFNetwork:
    version = 4 if family == "stylegan2" else 5
    R, C = kw["resolution"], kw.get("num_channels", 3)
    return network("D", BUILD_FUNCS[family]["D"], kw, discriminator_vars(kw, family, v), version=version, src=src,
                   io=dict(input_shapes=[[None, C, R, R], [None, 0]], output_shapes=[[None, 1]],
                           input_names=["images_in", "labels_in"], output_names=["scores_out"]))


def fixture_networks(spec: dict, src: str = FIXTURE_SRC) -> tuple:
    """(G, D, Gs) for one FIXTURES entry. G is Gs itself (one pickled object) unless `separate_G`; then G has its
    own mapping, dlatent_avg, const and ToRGB values and shares Gs's other arrays (pickled once: a small file)."""
    v = Values(spec["seed"])
    Gs = generator("Gs", spec["G"], spec["family"], v, src)
    D = discriminator(spec["D"], spec["family"], v, src)
    if not spec["separate_G"]:
        return Gs, D, Gs
    G = generator("G", spec["G"], spec["family"], v, src)
    shared = dict(Gs.state["components"]["synthesis"].state["variables"])
    own = G.state["components"]["synthesis"].state
    own["variables"] = [(n, a if "ToRGB" in n or "Const" in n else shared[n]) for n, a in own["variables"]]
    return G, D, Gs


def d_input(resolution: int, channels: int = 3) -> torch.Tensor:
    img = np.random.RandomState(D_IMG_SEED).uniform(-1, 1, [D_BATCH, channels, resolution, resolution])
    img[1::2] *= D_ODD_SCALE
    return torch.from_numpy(img.astype(np.float32))


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def plain(obj):
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@torch.no_grad()
def nvidia_reference(nvidia_dir: Path, path: Path, spec: dict) -> dict:
    """Load `path` with NVIDIA's legacy.load_network_pkl and run what it returns."""
    if str(nvidia_dir) not in sys.path:
        sys.path.insert(0, str(nvidia_dir))
    import legacy  # noqa: PLC0415 - NVIDIA's
    from torch_utils import misc  # noqa: PLC0415
    from training import networks  # noqa: PLC0415

    with open(path, "rb") as f:
        data = legacy.load_network_pkl(f)
    G, D, G_ema = data["G"], data["D"], data["G_ema"]

    def images(net, cases):
        out = []
        for seed, psi in cases:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, net.z_dim))
            out.append(to_uint8(net(z, None, truncation_psi=psi, noise_mode="const", force_fp32=True))[0])
        return torch.stack(out)

    ref = dict(family=spec["family"], cases=[list(c) for c in IMAGE_CASES], G_ema_kwargs=plain(G_ema.init_kwargs),
               D_kwargs=plain(D.init_kwargs), G_ema_img=images(G_ema, IMAGE_CASES))
    if spec["separate_G"]:
        ref["G_img"] = images(G, [(s, 1.0) for s in G_IMAGE_SEEDS])
    img = d_input(D.img_resolution, D.img_channels)
    ref["logits"] = D(img, None, force_fp32=True).float()
    if spec["family"] == "stylegan2" and "mbstd_group_size" not in spec["D"]:
        # NVIDIA's converter leaves mbstd_group_size None (the whole batch) where the TF file relied on
        # D_stylegan2's default of 4; the reference is NVIDIA's D at the group size the TF network uses
        kwargs = plain(D.init_kwargs)
        kwargs["epilogue_kwargs"]["mbstd_group_size"] = 4
        D4 = networks.Discriminator(**kwargs).eval()
        misc.copy_params_and_buffers(D, D4, require_all=True)
        ref["logits_nvidia_group_none"] = ref["logits"]
        ref["logits"] = D4(img, None, force_fp32=True).float()
        ref["D_kwargs"] = kwargs
    return ref


def make_tf_pickles(nvidia_dir, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    refs = {}
    for name, spec in FIXTURES.items():
        path = out / f"{name}.tfpkl"
        write_tf_pickle(path, fixture_networks(spec))
        refs[name] = nvidia_reference(Path(nvidia_dir), path, spec)
        img = refs[name]["G_ema_img"].float()
        print(f"{name}: {path.stat().st_size} bytes; G_ema uint8 mean {img.mean():.1f}, "
              f"saturated {((img == 0) | (img == 255)).float().mean():.1%}; "
              f"logits {refs[name]['logits'].flatten()[:3]}")
    torch.save(dict(image_cases=[list(c) for c in IMAGE_CASES], G_image_seeds=list(G_IMAGE_SEEDS),
                    d_batch=D_BATCH, d_img_seed=D_IMG_SEED, d_odd_scale=D_ODD_SCALE, fixtures=refs),
               out / "reference.pt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvidia-dir", default=os.environ.get("NVIDIA_SG2ADA_DIR"),
                    help="stylegan2-ada-pytorch checkout (default: $NVIDIA_SG2ADA_DIR)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if not args.nvidia_dir or not (Path(args.nvidia_dir) / "legacy.py").is_file():
        sys.exit("error: pass --nvidia-dir or set NVIDIA_SG2ADA_DIR to a stylegan2-ada-pytorch checkout")
    make_tf_pickles(args.nvidia_dir, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
