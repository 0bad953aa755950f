"""rosinality/stylegan2-pytorch checkpoints (`g`, `d`, `g_ema`, `latent_avg`, `args`) <-> NVIDIA's layout.

Both ports store weights unscaled (equalised-LR gains applied at run time) with the same gains, the
same affine bias convention (bias initialised to 1 and stored as is), the same conv orientation
(both flip TF's Conv0_up kernel when porting, so their transposed-conv paths agree) and the same FIR
filter [1,3,3,1]. Hence every transform is a rename plus a reshape:

- G: `style.{i+1}` = `mapping.fc{i}`; `input.input` [1,C,4,4] = `synthesis.b4.const` [C,4,4];
  `conv1` / `convs.{2k}` / `convs.{2k+1}` = `b4.conv1` / `b{r}.conv0` / `b{r}.conv1` with
  `conv.weight` [1,O,I,3,3] = `weight` [O,I,3,3], `conv.modulation` = `affine`, `noise.weight` [1] =
  `noise_strength` [], `activate.bias` = `bias`; `noises.noise_j` [1,1,r,r] = `noise_const` [r,r] with
  j = 0 for b4 and 2*log2(r)-5 / 2*log2(r)-4 for conv0 / conv1; `to_rgb1` / `to_rgbs.k` = `torgb`
  (bias [1,3,1,1] = [3]); `latent_avg` = `mapping.w_avg`.
- Blur kernels: rosinality stores the upsampling FIR pre-multiplied by up**2 = 4
  (`convs.{2k}.conv.blur.kernel`, `to_rgbs.k.upsample.kernel`) and the downsampling one as is.
- D: `convs.0` = `b{R}.fromrgb`; `convs.i` = ResBlock of b{R/2**(i-1)} with `conv1.0/1.1` = `conv0`,
  `conv2.1/2.2` = `conv1`, `skip.1` = `skip`; `final_conv` = `b4.conv`; `final_linear.0/1` = `b4.fc/out`.
  rosinality's minibatch-stddev group is 4 (one feature), which is what a converted D gets.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping

import torch

from ..errors import UserError
from ..networks import Discriminator, Generator
from ..networks.layers import DEFAULT_FILTER
from ..networks.ops import setup_filter
from .network import Network, build, plain

Rule = tuple[str, str, Callable, Callable]  # (nvidia_key, rosinality_key, to_rosinality, to_nvidia)
DERIVED = ("resample_filter",)  # NVIDIA buffers with no rosinality key: the [1,3,3,1] FIR the kwargs define


def _same(t):
    return t


_UNSQUEEZE0 = (lambda t: t.unsqueeze(0), lambda t: t.squeeze(0))
_SCALAR_TO_1 = (lambda t: t.reshape(1), lambda t: t.reshape([]))
_BIAS_4D = (lambda t: t.reshape(1, -1, 1, 1), lambda t: t.reshape(-1))
_NOISE = (lambda t: t.reshape(1, 1, *t.shape), lambda t: t.reshape(t.shape[-2:]))
_UP_KERNEL = (lambda f: f * 4, lambda k: k / 4)  # rosinality keeps the up**2 gain inside the kernel


def _styled_conv_rules(nv: str, ros: str, noise_index: int, upsample: bool) -> list[Rule]:
    rules = [(f"{nv}.weight", f"{ros}.conv.weight", *_UNSQUEEZE0),
             (f"{nv}.affine.weight", f"{ros}.conv.modulation.weight", _same, _same),
             (f"{nv}.affine.bias", f"{ros}.conv.modulation.bias", _same, _same),
             (f"{nv}.noise_strength", f"{ros}.noise.weight", *_SCALAR_TO_1),
             (f"{nv}.bias", f"{ros}.activate.bias", _same, _same),
             (f"{nv}.noise_const", f"noises.noise_{noise_index}", *_NOISE)]
    if upsample:
        rules.append((f"{nv}.resample_filter", f"{ros}.conv.blur.kernel", *_UP_KERNEL))
    return rules


def _torgb_rules(nv: str, ros: str) -> list[Rule]:
    return [(f"{nv}.weight", f"{ros}.conv.weight", *_UNSQUEEZE0),
            (f"{nv}.affine.weight", f"{ros}.conv.modulation.weight", _same, _same),
            (f"{nv}.affine.bias", f"{ros}.conv.modulation.bias", _same, _same),
            (f"{nv}.bias", f"{ros}.bias", *_BIAS_4D)]


def generator_rules(img_resolution: int, num_mapping_layers: int) -> list[Rule]:
    """Key-by-key correspondence for a skip generator (mapping.w_avg <-> latent_avg is handled apart)."""
    rules: list[Rule] = []
    for i in range(num_mapping_layers):
        rules += [(f"mapping.fc{i}.{p}", f"style.{i + 1}.{p}", _same, _same) for p in ("weight", "bias")]
    rules.append(("synthesis.b4.const", "input.input", *_UNSQUEEZE0))
    rules += _styled_conv_rules("synthesis.b4.conv1", "conv1", 0, upsample=False)
    rules += _torgb_rules("synthesis.b4.torgb", "to_rgb1")
    for k, log_r in enumerate(range(3, int(math.log2(img_resolution)) + 1)):
        b = f"synthesis.b{2 ** log_r}"
        rules += _styled_conv_rules(f"{b}.conv0", f"convs.{2 * k}", 2 * log_r - 5, upsample=True)
        rules += _styled_conv_rules(f"{b}.conv1", f"convs.{2 * k + 1}", 2 * log_r - 4, upsample=False)
        rules += _torgb_rules(f"{b}.torgb", f"to_rgbs.{k}")
        rules.append((f"{b}.resample_filter", f"to_rgbs.{k}.upsample.kernel", *_UP_KERNEL))
    return rules


def discriminator_rules(img_resolution: int) -> list[Rule]:
    """Key-by-key correspondence for a resnet discriminator."""
    R = img_resolution
    rules: list[Rule] = [(f"b{R}.fromrgb.weight", "convs.0.0.weight", _same, _same),
                         (f"b{R}.fromrgb.bias", "convs.0.1.bias", _same, _same)]
    for i, log_r in enumerate(range(int(math.log2(R)), 2, -1), start=1):
        b, c = f"b{2 ** log_r}", f"convs.{i}"
        rules += [(f"{b}.conv0.weight", f"{c}.conv1.0.weight", _same, _same),
                  (f"{b}.conv0.bias", f"{c}.conv1.1.bias", _same, _same),
                  (f"{b}.conv1.resample_filter", f"{c}.conv2.0.kernel", _same, _same),
                  (f"{b}.conv1.weight", f"{c}.conv2.1.weight", _same, _same),
                  (f"{b}.conv1.bias", f"{c}.conv2.2.bias", _same, _same),
                  (f"{b}.skip.resample_filter", f"{c}.skip.0.kernel", _same, _same),
                  (f"{b}.skip.weight", f"{c}.skip.1.weight", _same, _same)]
    rules += [("b4.conv.weight", "final_conv.0.weight", _same, _same),
              ("b4.conv.bias", "final_conv.1.bias", _same, _same),
              ("b4.fc.weight", "final_linear.0.weight", _same, _same),
              ("b4.fc.bias", "final_linear.0.bias", _same, _same),
              ("b4.out.weight", "final_linear.1.weight", _same, _same),
              ("b4.out.bias", "final_linear.1.bias", _same, _same)]
    return rules


def _apply(rules: list[Rule], state: Mapping, to_rosinality: bool, what: str, source) -> dict:
    src, dst, fn = (0, 1, 2) if to_rosinality else (1, 0, 3)
    out = {}
    for rule in rules:
        if rule[src] not in state:
            raise UserError(f"{source}: {what} has no {rule[src]}; not a StyleGAN2 {what} layout this code knows")
        out[rule[dst]] = rule[fn](state[rule[src]])
    known = {rule[src] for rule in rules}
    if to_rosinality:  # NVIDIA-only buffers (filters of non-resampling layers, w_avg) have no rosinality key
        known |= {k for k in state if k.endswith("resample_filter") or k == "mapping.w_avg"}
    extra = [k for k in state if k not in known]
    if extra:
        raise UserError(f"{source}: {what} has {extra[0]}, which no StyleGAN2 {what} layout this code knows has")
    return out


def _count(state: Mapping, fmt: str, start: int = 0) -> int:
    """How many consecutive indices start, start+1, ... have `fmt.format(index)` in `state`."""
    n = 0
    while fmt.format(start + n) in state:
        n += 1
    return n


def channel_kwargs(channels: Mapping[int, int], what: str, source) -> dict:
    """channel_base/channel_max reproducing `channels` (resolution -> channels) as min(base // res, max)."""
    cmax = max(channels.values())
    candidates = sorted({c * r for r, c in channels.items() if c < cmax} or {cmax * max(channels)})
    for base in candidates:
        if all(min(base // r, cmax) == c for r, c in channels.items()):
            return dict(channel_base=base, channel_max=cmax)
    raise UserError(f"{source}: {what} channels {dict(sorted(channels.items()))} do not follow "
                    f"min(channel_base / resolution, channel_max); unknown layout")


def _check_kernels(nv_state: Mapping, keys, what: str, source) -> None:
    """Our networks build their FIR filters from kwargs; a file with another blur kernel is a different model."""
    expected = setup_filter(DEFAULT_FILTER)
    for key in keys:
        t = nv_state[key]
        if t.shape != expected.shape or not torch.allclose(t.float(), expected):
            raise UserError(f"{source}: {what} blur kernel for {key} is not [1,3,3,1]; only that filter is supported")


def rosinality_to_nvidia_G(state: Mapping, source="rosinality") -> tuple[dict, dict]:
    """rosinality generator state -> (NVIDIA-keyed state, NVIDIA Generator kwargs).

    The state lacks `mapping.w_avg` (rosinality keeps it apart as `latent_avg`) and the filter buffers of
    layers that do not resample (rosinality has none); `build(..., derived=DERIVED)` supplies the latter.
    """
    if "input.input" not in state or "style.1.weight" not in state:
        raise UserError(f"{source}: generator has no input.input/style.1.weight; not a rosinality StyleGAN2 layout")
    num_mapping = _count(state, "style.{}.weight", start=1)
    num_up = _count(state, "to_rgbs.{}.conv.weight")
    R = 4 * 2 ** num_up
    nv = _apply(generator_rules(R, num_mapping), state, False, "generator", source)
    _check_kernels(nv, [k for k in nv if k.endswith("resample_filter")], "generator", source)
    channels = {r: nv[f"synthesis.b{r}.conv1.weight"].shape[0] for r in (2 ** i for i in range(2, 3 + num_up))}
    kwargs = dict(z_dim=nv["mapping.fc0.weight"].shape[1], c_dim=0,
                  w_dim=nv[f"mapping.fc{num_mapping - 1}.weight"].shape[0], img_resolution=R,
                  img_channels=nv["synthesis.b4.torgb.weight"].shape[0],
                  mapping_kwargs=dict(num_layers=num_mapping),
                  synthesis_kwargs=channel_kwargs(channels, "generator", source))
    return nv, kwargs


def nvidia_to_rosinality_G(state: Mapping, source="generator") -> dict:
    """NVIDIA-keyed skip-generator state -> rosinality layout (noise buffers and blur kernels included)."""
    num_mapping = _count(state, "mapping.fc{}.weight")
    R = max(int(k.split(".")[1][1:]) for k in state if k.startswith("synthesis.b"))
    return _apply(generator_rules(R, num_mapping), state, True, "generator", source)


def rosinality_to_nvidia_D(state: Mapping, source="rosinality") -> tuple[dict, dict]:
    """rosinality discriminator state -> (NVIDIA-keyed state without non-resampling filters, D kwargs)."""
    if "convs.0.0.weight" not in state or "final_conv.0.weight" not in state:
        raise UserError(f"{source}: discriminator has no convs.0.0.weight/final_conv.0.weight; "
                        f"not a rosinality StyleGAN2 layout")
    num_blocks = _count(state, "convs.{}.conv1.0.weight", start=1)
    R = 4 * 2 ** num_blocks
    nv = _apply(discriminator_rules(R), state, False, "discriminator", source)
    _check_kernels(nv, [k for k in nv if k.endswith("resample_filter")], "discriminator", source)
    channels = {r: nv[f"b{r}.conv0.weight"].shape[0] for r in (2 ** i for i in range(3, 3 + num_blocks))}
    channels[4] = nv["b4.conv.weight"].shape[0]
    kwargs = dict(c_dim=0, img_resolution=R, img_channels=nv[f"b{R}.fromrgb.weight"].shape[1],
                  architecture="resnet", **channel_kwargs(channels, "discriminator", source),
                  epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=1))
    return nv, kwargs


def nvidia_to_rosinality_D(state: Mapping, source="discriminator") -> dict:
    """NVIDIA-keyed resnet-discriminator state -> rosinality layout."""
    R = max(int(k.split(".")[0][1:]) for k in state if k.startswith("b"))
    return _apply(discriminator_rules(R), state, True, "discriminator", source)


def is_rosinality(data) -> bool:
    return isinstance(data, Mapping) and isinstance(data.get("g_ema"), Mapping)


def _estimate_w_avg(G: Generator, n: int = 4096) -> torch.Tensor:
    """Files without latent_avg (rosinality's train.py does not save one): mean w of n fixed-seed z."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return G.mapping(z, None, skip_w_avg_update=True)[:, 0].mean(dim=0)


def from_rosinality(data: Mapping, source) -> Network:
    meta: dict = {}
    latent_avg = data.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise UserError(f"{source}: latent_avg is {type(latent_avg).__name__}; expected a tensor")

    def generator(key):
        if data.get(key) is None:
            return None
        nv, kwargs = rosinality_to_nvidia_G(data[key], f"{source} [{key}]")
        if latent_avg is not None:
            nv["mapping.w_avg"] = latent_avg.reshape(-1)
        G = build(Generator, kwargs, nv, key, source,
                  derived=DERIVED if latent_avg is not None else DERIVED + ("mapping.w_avg",))
        if latent_avg is None:
            G.mapping.w_avg.copy_(_estimate_w_avg(G))
        return G

    G_ema, G = generator("g_ema"), generator("g")
    if latent_avg is None:
        meta["w_avg"] = "estimated: mean w of 4096 fixed-seed z (file has no latent_avg)"
    D = None
    if data.get("d") is not None:
        nv, kwargs = rosinality_to_nvidia_D(data["d"], f"{source} [d]")
        D = build(Discriminator, kwargs, nv, "d", source, derived=DERIVED)
    args = data.get("args")
    if isinstance(args, argparse.Namespace):
        try:
            meta["args"] = plain(vars(args))
        except TypeError:
            pass  # informational only
    if isinstance(data.get("ada_aug_p"), (int, float)):
        meta["ada_p"] = float(data["ada_aug_p"])
    return Network("rosinality", G_ema=G_ema, G=G, D=D, meta=meta)
