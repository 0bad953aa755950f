"""TensorFlow-era StyleGAN2 and StyleGAN2-ADA `.pkl` files, read without TensorFlow and WITHOUT running their code.

NVIDIA's TF releases (stylegan2 config-e/f, stylegan2-ada TF) and the community models trained with that code
(anime, toonify, MetFaces fine-tunes...) are pickles of the tuple (G, D, Gs), each a
`dnnlib.tflib.network.Network` whose state is {version, name, static_kwargs, components, variables,
build_func_name, build_module_src, ...}. TF's own `__setstate__` exec()s `build_module_src`, the network's Python
source. The restricted unpickler (nvidia_pkl.py, one allow-list for every pickle we read) resolves that class to
`TFNetworkRecord`, which keeps the names, static kwargs, components and variables (numpy arrays) and drops the
source unread: it is never compiled, let alone executed. Any other global in the stream is refused by name.

Conversion: our state-dict keys are NVIDIA's PyTorch ones, so each key names the TF variable it comes from
(`mapping.fc{i}` <- `mapping/Dense{i}`, `synthesis.b{r}.conv0` <- `synthesis/{r}x{r}/Conv0_up`, D `b{r}.conv1` <-
`{r}x{r}/Conv1_down`, ...) with TF's layouts turned into PyTorch's: dense [in, out] -> [out, in], conv
[kh, kw, in, out] -> [out, in, kh, kw] (spatially flipped for TF's transposed up-convolutions), `mod_bias` + 1
(TF adds the 1 at run time), const and noise without their batch axes, `dlatent_avg` -> `mapping.w_avg`. The
architecture comes from the file's static kwargs with the defaults of the TF function that built it, which
differ between StyleGAN2 and StyleGAN2-ADA (mapping width 512 vs w_dim; minibatch-stddev group 4 vs the whole
batch, and group <= 1 means no stddev layer in StyleGAN2). NVIDIA's legacy.py applies the ADA defaults to both,
so for a StyleGAN2 D without an explicit group size it averages over the whole batch where TF used groups of 4;
here the TF value is kept. Kwargs that only affect training or TF's default truncation are ignored; unknown
kwargs, leftover variables and other build functions (StyleGAN v1, StyleGAN2 configs A-D, conditional models,
ADA's comparison methods) are refused in one line naming what is not supported.
"""
from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..networks import Discriminator, Generator
from ..networks.generator import channels_per_resolution
from .network import Network, build, plain
from .rosinality import channel_kwargs


class TFNetworkRecord:
    """Stand-in for `dnnlib.tflib.network.Network` while unpickling: keeps data, never `build_module_src`."""

    version: Any = None
    name: Any = None
    build_func_name: Any = None
    static_kwargs: dict = {}
    components: dict = {}
    variables: list = []

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("TF network state is not a dict")
        # build_module_src (and TF's shapes/names) are deliberately not kept: nothing here compiles or runs code
        self.version, self.name = state.get("version"), state.get("name")
        self.build_func_name = state.get("build_func_name")
        self.static_kwargs = state.get("static_kwargs") or {}
        self.components = state.get("components") or {}
        self.variables = state.get("variables") or []


FAMILIES = {  # TF build functions -> the code base that wrote them
    ("G_main", "G_mapping", "G_synthesis_stylegan2"): "stylegan2",
    ("G_main", "G_mapping", "G_synthesis"): "stylegan2-ada",
    ("D_stylegan2",): "stylegan2",
    ("D_main",): "stylegan2-ada",
}
NOT_SUPPORTED = {
    "G_style": "StyleGAN (v1) generators", "D_basic": "StyleGAN (v1) discriminators",
    "G_synthesis_stylegan_revised": "StyleGAN2 configs A-D (progressive growing)",
    "D_stylegan": "StyleGAN2 configs A-D (progressive growing)",
}
# kwargs that change nothing the converted network computes: TF's run-time truncation/mixing defaults,
# noise randomisation, op fusion, TF dtypes, label-only layers of an unconditional D, training-only regularisers
G_IGNORED = {"truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val", "style_mixing_prob",
             "randomize_noise", "fused_modconv", "dtype", "structure", "mapping_func", "synthesis_func",
             "label_fmaps"}
D_IGNORED = {"dtype", "structure", "augment_strength", "mapping_layers", "mapping_fmaps", "mapping_lrmul",
             "pagan_num", "pagan_fade", "adaptive_dropout"}
# kwargs that must keep their default: anything else is a variant our networks do not implement
G_FIXED = {"label_size": 0, "normalize_latents": True}
D_FIXED = {"label_size": 0, "use_pagan": False, "use_spectral_norm": False, "score_size": 1, "score_max": 1}
G_USED = {"latent_size", "dlatent_size", "resolution", "num_channels", "mapping_layers", "mapping_fmaps",
          "mapping_lrmul", "mapping_nonlinearity", "dlatent_avg_beta", "fmap_base", "fmap_decay", "fmap_min",
          "fmap_max", "fmap_const", "architecture", "nonlinearity", "resample_kernel", "use_noise", "num_fp16_res",
          "conv_clamp"}
D_USED = {"resolution", "num_channels", "fmap_base", "fmap_decay", "fmap_min", "fmap_max", "architecture",
          "nonlinearity", "resample_kernel", "mbstd_group_size", "mbstd_num_features", "num_fp16_res", "conv_clamp",
          "freeze_layers"}
UNUSED_VARIABLES = {"lod"}  # StyleGAN2's progressive-growing level of detail, always 0 in config-e/f


def is_tf_pickle(data) -> bool:
    """A (G, D, Gs) tuple of TF networks, or a lone TF generator (some collections share only Gs)."""
    if isinstance(data, (tuple, list)) and len(data) == 3:
        return all(isinstance(net, TFNetworkRecord) for net in data)
    return isinstance(data, TFNetworkRecord)


# ----------------------------------------------------------------------------------------------- variables

def _variables(net: TFNetworkRecord, what: str, source, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of `net` and its components by TF path (`mapping/Dense0/weight`, `synthesis/noise0`)."""
    out = {}
    for item in net.variables:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise UserError(f"{source}: {what} variables hold {type(item).__name__}; expected (name, array) pairs")
        name, value = item
        if not isinstance(value, (np.ndarray, np.generic, float, int)):
            raise UserError(f"{source}: {what} variable {prefix}{name} is {type(value).__name__}; expected an array")
        out[prefix + name] = np.asarray(value, dtype=np.float32)
    for name, child in net.components.items():
        if not isinstance(child, TFNetworkRecord):
            raise UserError(f"{source}: {what} component {name!r} is {type(child).__name__}; expected a TF network")
        out.update(_variables(child, what, source, f"{prefix}{name}/"))
    return out


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A C-ordered float32 copy (np.ascontiguousarray would turn TF's 0-d noise strengths into shape [1])."""
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))


def _dense(a: np.ndarray) -> torch.Tensor:  # TF [in, out] -> [out, in]
    return _tensor(a.T)


def _conv(a: np.ndarray) -> torch.Tensor:  # TF [kh, kw, in, out] -> [out, in, kh, kw]
    return _tensor(a.transpose(3, 2, 0, 1))


def _conv_transposed(a: np.ndarray) -> torch.Tensor:
    """TF upsamples with a transposed convolution of the kernel; NVIDIA's stores the kernel the other way round."""
    return _conv(a[::-1, ::-1])


def _same(a: np.ndarray) -> torch.Tensor:
    return _tensor(a)


def _plus_one(a: np.ndarray) -> torch.Tensor:  # TF's styles are mod_bias + 1 at run time; NVIDIA stores bias init 1
    return _tensor(a + 1)


def _const(a: np.ndarray) -> torch.Tensor:  # TF [1, C, 4, 4] -> [C, 4, 4]
    return _tensor(a[0])


def _noise(a: np.ndarray) -> torch.Tensor:  # TF [1, 1, r, r] -> [r, r]
    return _tensor(a[0, 0])


Rule = tuple[str, Callable[[np.ndarray], torch.Tensor]]
_MODCONV = {"weight": ("weight", _conv), "bias": ("bias", _same), "affine.weight": ("mod_weight", _dense),
            "affine.bias": ("mod_bias", _plus_one), "noise_strength": ("noise_strength", _same)}


def _generator_rule(key: str) -> Rule | None:
    """Which TF variable (and layout change) fills our G key; None for derived buffers (FIR filters)."""
    if key.endswith("resample_filter"):
        return None
    if key == "mapping.w_avg":
        return "dlatent_avg", _same
    if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", key):
        return f"mapping/Dense{m[1]}/{m[2]}", _dense if m[2] == "weight" else _same
    if key == "synthesis.b4.const":
        return "synthesis/4x4/Const/const", _const
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", key)
    if m is None:
        raise KeyError(key)
    r, layer, param = int(m[1]), m[2], m[3]
    if param == "noise_const":  # TF numbers noise inputs by layer: b4.conv1 0, then conv0/conv1 of each block
        return f"synthesis/noise{0 if r == 4 else 2 * int(math.log2(r)) - 5 + (layer == 'conv1')}", _noise
    scope = f"synthesis/{r}x{r}/" + ("Conv" if r == 4 and layer == "conv1" else
                                     {"conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB", "skip": "Skip"}[layer])
    name, fn = _MODCONV[param]
    if param == "weight" and layer in ("conv0", "skip"):  # the two up-sampling convolutions
        fn = _conv_transposed
    return f"{scope}/{name}", fn


def _discriminator_rule(key: str) -> Rule | None:
    if key.endswith("resample_filter"):
        return None
    m = re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip|conv|fc|out)\.(weight|bias)", key)
    if m is None:
        raise KeyError(key)
    r, layer, param = int(m[1]), m[2], m[3]
    scope = {"fromrgb": f"{r}x{r}/FromRGB", "conv0": f"{r}x{r}/Conv0", "conv1": f"{r}x{r}/Conv1_down",
             "skip": f"{r}x{r}/Skip", "conv": "4x4/Conv", "fc": "4x4/Dense0", "out": "Output"}[layer]
    dense = layer in ("fc", "out")
    return f"{scope}/{param}", (_dense if dense else _conv) if param == "weight" else _same


def _state(keys, params: dict[str, np.ndarray], rule, what: str, source) -> dict:
    """Fill every key from its TF variable; a variable left over is a variant we do not know."""
    state, used = {}, set(UNUSED_VARIABLES)
    for key in keys:
        try:
            found = rule(key)
        except KeyError:
            raise UserError(f"{source}: {what} key {key} has no TF counterpart this converter knows") from None
        if found is None:  # build() takes it from the kwargs
            continue
        name, fn = found
        if name not in params:
            raise UserError(f"{source}: {what} has no TF variable {name} (needed for {key}); "
                            f"not a StyleGAN2 layout this converter knows")
        state[key] = fn(params[name])
        used.add(name)
    extra = sorted(set(params) - used)
    if extra:
        raise UserError(f"{source}: {what} has TF variable {extra[0]}, which no supported StyleGAN2 variant has "
                        f"(spectral norm, PA-GAN, labels or another architecture are not supported)")
    return state


# -------------------------------------------------------------------------------------------------- kwargs

def _family(net: TFNetworkRecord, what: str, source) -> str:
    funcs = (net.build_func_name,) + tuple(
        getattr(net.components.get(c), "build_func_name", None) for c in ("mapping", "synthesis")
        if c in net.components)
    for func in funcs:
        if func in NOT_SUPPORTED:
            raise UserError(f"{source}: {what} is built by {func}: {NOT_SUPPORTED[func]} are not supported; "
                            f"expected a StyleGAN2 config-e/f or StyleGAN2-ADA network")
    if funcs not in FAMILIES:
        raise UserError(f"{source}: {what} is built by {' / '.join(map(str, funcs))}, not a StyleGAN2 or "
                        f"StyleGAN2-ADA network this converter knows")
    if not isinstance(net.version, int) or net.version < 4:
        raise UserError(f"{source}: {what} is a TF network pickle of version {net.version!r} (StyleGAN v1 era); "
                        f"expected version 4 (StyleGAN2) or 5 (StyleGAN2-ADA)")
    return FAMILIES[funcs]


def _kwargs(net: TFNetworkRecord, used: set, ignored: set, fixed: dict, what: str, source) -> dict:
    kw = net.static_kwargs
    if not isinstance(kw, dict):
        raise UserError(f"{source}: {what} static kwargs are {type(kw).__name__}; expected a dict")
    for key, value in kw.items():
        if key in fixed and value != fixed[key]:
            kind = "conditional (labelled) models are" if key == "label_size" else "this variant is"
            raise UserError(f"{source}: {what} has {key}={value!r}: {kind} not supported "
                            f"(expected {key}={fixed[key]!r})")
        if key not in used and key not in ignored and key not in fixed:
            raise UserError(f"{source}: {what} has the TF kwarg {key}={value!r}, which this converter does not "
                            f"know; it may change the architecture, so the file is not converted")
    return kw


def _nf(kw: dict, stage: int) -> int:
    """TF's feature maps per stage: clip(int(fmap_base / 2**(stage * fmap_decay)), fmap_min, fmap_max)."""
    value = int(kw.get("fmap_base", 16384) / (2.0 ** (stage * kw.get("fmap_decay", 1.0))))
    return int(min(max(value, kw.get("fmap_min", 1)), kw.get("fmap_max", 512)))


def _channels(kw: dict, resolutions, what: str, source) -> dict:
    """channel_base/channel_max giving TF's channels (block at 2**k px has nf(k-1)); NVIDIA's 2*fmap_base if it
    fits, so the kwargs equal those of legacy.py's conversion."""
    channels = {r: _nf(kw, int(math.log2(r)) - 1) for r in resolutions}
    base, cmax = kw.get("fmap_base", 16384) * 2, kw.get("fmap_max", 512)
    if float(base).is_integer() and channels_per_resolution(resolutions, int(base), cmax) == channels:
        return dict(channel_base=int(base), channel_max=cmax)
    return channel_kwargs(channels, what, source)


def _resample_filter(kw: dict, what: str, source) -> list:
    kernel = kw.get("resample_kernel", [1, 3, 3, 1])
    if kernel is None:  # TF-ADA's "box filter"; our networks take explicit taps only
        raise UserError(f"{source}: {what} has resample_kernel=None (box filter); not supported")
    return list(kernel)


def generator_kwargs(net: TFNetworkRecord, family: str, what: str, source) -> dict:
    kw = _kwargs(net, G_USED, G_IGNORED, G_FIXED, what, source)
    R = kw.get("resolution", 1024)
    w_dim = kw.get("dlatent_size", 512)
    resolutions = [2 ** i for i in range(2, int(math.log2(R)) + 1)]
    if kw.get("fmap_const") not in (None, _nf(kw, 1)):
        raise UserError(f"{source}: {what} has fmap_const={kw['fmap_const']} != the 4x4 block's {_nf(kw, 1)} "
                        f"channels; not supported")
    beta = kw.get("dlatent_avg_beta", 0.995)
    return dict(
        z_dim=kw.get("latent_size", 512), c_dim=0, w_dim=w_dim, img_resolution=R,
        img_channels=kw.get("num_channels", 3),
        mapping_kwargs=dict(
            num_layers=kw.get("mapping_layers", 8), embed_features=None,
            # StyleGAN2's G_mapping is 512 wide by default; StyleGAN2-ADA's as wide as w
            layer_features=kw.get("mapping_fmaps", 512 if family == "stylegan2" else None),
            activation=kw.get("mapping_nonlinearity", "lrelu"), lr_multiplier=kw.get("mapping_lrmul", 0.01),
            w_avg_beta=1.0 if beta is None else beta),  # TF's None = w_avg frozen
        synthesis_kwargs=dict(
            **_channels(kw, resolutions, what, source), num_fp16_res=kw.get("num_fp16_res", 0),
            conv_clamp=kw.get("conv_clamp"), architecture=kw.get("architecture", "skip"),
            resample_filter=_resample_filter(kw, what, source), use_noise=kw.get("use_noise", True),
            activation=kw.get("nonlinearity", "lrelu")))


def discriminator_kwargs(net: TFNetworkRecord, family: str, what: str, source) -> dict:
    kw = _kwargs(net, D_USED, D_IGNORED, D_FIXED, what, source)
    R = kw.get("resolution", 1024)
    resolutions = [2 ** i for i in range(2, int(math.log2(R)) + 1)]
    group, features = kw.get("mbstd_group_size", 4 if family == "stylegan2" else None), kw.get("mbstd_num_features", 1)
    if family == "stylegan2" and group is not None and group <= 1:  # D_stylegan2 has no stddev layer then
        group, features = None, 0
    activation = kw.get("nonlinearity", "lrelu")
    return dict(
        c_dim=0, img_resolution=R, img_channels=kw.get("num_channels", 3),
        architecture=kw.get("architecture", "resnet"), **_channels(kw, resolutions, what, source),
        num_fp16_res=kw.get("num_fp16_res", 0), conv_clamp=kw.get("conv_clamp"), cmap_dim=None,
        block_kwargs=dict(activation=activation, resample_filter=_resample_filter(kw, what, source),
                          freeze_layers=kw.get("freeze_layers", 0)),
        mapping_kwargs=dict(num_layers=0, embed_features=None, layer_features=None, activation=activation,
                            lr_multiplier=0.1),
        epilogue_kwargs=dict(mbstd_group_size=group, mbstd_num_channels=features, activation=activation))


# ------------------------------------------------------------------------------------------------ networks

def _convert(cls, kwargs: dict, net: TFNetworkRecord, rule, what: str, source):
    """Our `cls` from its kwargs with every state key filled from the TF variables (FIR filters from the kwargs)."""
    params = _variables(net, what, source)
    return build(cls, kwargs, lambda keys: _state(keys, params, rule, what, source), what, source,
                 derived=("resample_filter",))


def _generator(net: TFNetworkRecord, what: str, source) -> Generator:
    family = _family(net, what, source)
    if net.build_func_name != "G_main":
        raise UserError(f"{source}: {what} is built by {net.build_func_name}; expected a generator (G_main)")
    return _convert(Generator, generator_kwargs(net, family, what, source), net, _generator_rule, what, source)


def _discriminator(net: TFNetworkRecord, source) -> Discriminator:
    family = _family(net, "D", source)
    if net.build_func_name not in ("D_stylegan2", "D_main"):
        raise UserError(f"{source}: D is built by {net.build_func_name}; expected a discriminator (D_stylegan2/D_main)")
    kwargs = discriminator_kwargs(net, family, "D", source)
    return _convert(Discriminator, kwargs, net, _discriminator_rule, "D", source)


def from_tf_pickle(data, path) -> Network:
    """(G, D, Gs) -> G, D, G_ema; a lone generator -> G_ema only. Gs first: errors name the network users sample."""
    source = Path(path).name
    Gs_net = data if isinstance(data, TFNetworkRecord) else data[2]
    G_ema = _generator(Gs_net, "Gs", source)
    G = D = None
    if not isinstance(data, TFNetworkRecord):
        G, D = _generator(data[0], "G", source), _discriminator(data[1], source)
    meta: dict = {"tf_family": _family(Gs_net, "Gs", source)}
    try:
        meta["tf_kwargs"] = plain(Gs_net.static_kwargs)
    except TypeError:
        pass  # informational only
    snapshot = re.search(r"network-snapshot-(\d+)\.pkl$", source)
    if snapshot:  # TF's training loop names snapshots by kimg, like NVIDIA's PyTorch one
        meta["kimg"] = float(snapshot.group(1))
    return Network("tf-pkl", G_ema=G_ema, G=G, D=D, meta=meta)
