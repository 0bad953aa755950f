"""Checkpoint formats: native round trip and atomic writes, Lightning .ckpt, NVIDIA-style pickles read without
running their embedded code, code-carrying pickles refused, rosinality layout checked against an independent
re-implementation of rosinality's forward pass."""
from __future__ import annotations

import argparse
import builtins
import math
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_nets import TINY_D, TINY_G, tiny_nets

from stylegan_blend.checkpoints import load_network, native, save_network
from stylegan_blend.checkpoints.rosinality import (
    nvidia_to_rosinality_D,
    nvidia_to_rosinality_G,
    rosinality_to_nvidia_D,
    rosinality_to_nvidia_G,
)
from stylegan_blend.errors import UserError
from stylegan_blend.networks import Discriminator, Generator

SQRT2 = math.sqrt(2)


@pytest.fixture(scope="module")
def nets():
    return tiny_nets()


def z_batch(n=3, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).randn(n, 32)).float()


@torch.no_grad()
def images(G, z, psi=1.0):
    return G(z, None, truncation_psi=psi, noise_mode="const")


def assert_one_line(exc: pytest.ExceptionInfo, *parts: str):
    msg = str(exc.value)
    assert msg and "\n" not in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


# ----------------------------------------------------------------------------------------------- native

def test_native_round_trip_plain_containers(tmp_path, nets):
    path = save_network(tmp_path / "net.pt", nets["G_ema"], G=nets["G"], D=nets["D"],
                        meta={"kimg": 1.5, "epoch": 3, "blend": {"swap_res": 16, "width": 0.0}})
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["format"] == "stylegan_blend.network" and raw["version"] == 1
    assert raw["G_ema"]["kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    net = load_network(path)
    assert net.format == "native" and not net.G_ema.training
    assert net.meta["kimg"] == 1.5 and net.meta["epoch"] == 3 and net.meta["blend"]["swap_res"] == 16
    for key in ("G_ema", "G", "D"):
        ours, theirs = getattr(net, key).state_dict(), nets[key].state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(images(net.G_ema, z_batch(), 0.7), images(nets["G_ema"], z_batch(), 0.7))


def test_native_g_ema_only(tmp_path, nets):
    net = load_network(save_network(tmp_path / "g.pt", nets["G_ema"]))
    assert net.G is None and net.D is None and net.G_ema is not None


def test_save_is_atomic(tmp_path, nets, monkeypatch):
    dst = tmp_path / "net.pt"

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(native.torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_network(dst, nets["G_ema"])
    assert list(tmp_path.iterdir()) == []  # no DST, no temp file
    monkeypatch.undo()
    save_network(dst, nets["G_ema"])
    before = dst.read_bytes()
    monkeypatch.setattr(native.torch, "save", broken_save)
    with pytest.raises(RuntimeError):
        save_network(dst, nets["G"])
    assert dst.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["net.pt"]


def test_saved_files_get_umask_permissions_and_clear_errors(tmp_path, nets):
    """mkstemp creates 0600 files; a network file must be readable like any file the user writes."""
    old = os.umask(0o022)
    try:
        path = save_network(tmp_path / "net.pt", nets["G_ema"])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    (tmp_path / "afile").write_text("x")
    for dst in (tmp_path / "afile" / "net.pt", tmp_path / "afile" / "sub" / "net.pt"):
        with pytest.raises(UserError) as exc:
            save_network(dst, nets["G_ema"])
        assert_one_line(exc, str(dst), "is not a folder")


def test_kwargs_state_mismatch_names_key_and_shapes(tmp_path, nets):
    path = save_network(tmp_path / "net.pt", nets["G_ema"])
    raw = torch.load(path, weights_only=True)
    raw["G_ema"]["kwargs"]["synthesis_kwargs"]["channel_max"] = 16  # b4 now has min(256/4, 16) = 16 channels
    torch.save(raw, path)
    with pytest.raises(UserError) as exc:
        load_network(path)
    assert_one_line(exc, "net.pt", "synthesis.b4.const", "[32, 4, 4]", "[16, 4, 4]")


# --------------------------------------------------------------------------------------------- lightning

def lightning_state(nets):
    state = {f"{name}.{k}": v for name in ("G", "G_ema", "D") for k, v in nets[name].state_dict().items()}
    state["augment.p"] = torch.tensor(0.2)  # other prefixes are ignored
    return state


def test_lightning_checkpoint_dict(tmp_path, nets):
    ckpt = {"pytorch-lightning_version": "2.6.0", "epoch": 4, "global_step": 40, "state_dict": lightning_state(nets),
            "stylegan_blend": {"G_kwargs": TINY_G, "D_kwargs": TINY_D, "kimg": 2.5, "epoch": 4}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    net = load_network(tmp_path / "last.ckpt")
    assert net.format == "lightning" and net.meta["kimg"] == 2.5 and net.meta["epoch"] == 4
    for key in ("G_ema", "G", "D"):
        ours, theirs = getattr(net, key).state_dict(), nets[key].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_lightning_checkpoint_written_by_trainer(tmp_path):
    """Lightning adds loops/callbacks/optimizer state; all of it must pass the weights-only loader."""
    import pytorch_lightning as pl

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": 0.0025})
            self.G, self.G_ema, self.D = Generator(**TINY_G), Generator(**TINY_G), Discriminator(**TINY_D)

        def training_step(self, batch, _):
            return self.D(self.G(torch.randn(4, 32))).mean()

        def configure_optimizers(self):
            return torch.optim.Adam(self.D.parameters(), betas=(0.0, 0.99))

        def on_save_checkpoint(self, checkpoint):
            checkpoint["stylegan_blend"] = {"G_kwargs": TINY_G, "D_kwargs": TINY_D, "kimg": 0.004, "epoch": 0}

    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=4))
    trainer.save_checkpoint(tmp_path / "t.ckpt")
    net = load_network(tmp_path / "t.ckpt")
    assert net.format == "lightning" and net.meta["kimg"] == 0.004 and net.D is not None


# ------------------------------------------------------------------------------ NVIDIA-style pickles
#
# The test builds its own persistence-style pickle: stand-in modules reduce to
# torch_utils.persistence._reconstruct_persistent_obj(meta) with meta.module_src = code that writes a marker
# file, exactly the shape of NVIDIA's snapshots (whose source is never committed here).

def fake_nvidia_packages():
    """Stand-ins for NVIDIA's `torch_utils.persistence` and `dnnlib.util` as seen by pickle."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what NVIDIA's hook does first: exec the embedded source
        exec(meta["module_src"], {})
        return dict(meta["state"])

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    torch_utils, dnnlib = types.ModuleType("torch_utils"), types.ModuleType("dnnlib")
    torch_utils.persistence, dnnlib.util = persistence, util
    return {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib, "dnnlib.util": util}


class PersistentStandIn:
    def __init__(self, class_name, state, module_src):
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


def stand_in(module, module_src, easydict, init_kwargs=None, frozen=()):
    """A module's __dict__ as NVIDIA pickles it; `frozen` submodules keep weight/bias as buffers (Freeze-D)."""
    def convert(m, path):
        params, buffers = OrderedDict(m._parameters), OrderedDict(m._buffers)
        if path in frozen:
            buffers.update((k, v.detach()) for k, v in params.items())
            params = OrderedDict()
        return PersistentStandIn(type(m).__name__, {
            "training": False, "_parameters": params, "_buffers": buffers, "_non_persistent_buffers_set": set(),
            "_forward_hooks": OrderedDict(), "_modules": OrderedDict(
                (n, convert(c, f"{path}.{n}".lstrip("."))) for n, c in m._modules.items()),
            "_init_args": (), "_init_kwargs": easydict(), "weight_gain": np.float64(0.125)}, module_src)

    top = convert(module, "")
    top.meta["state"]["_init_kwargs"] = easydict({k: easydict(v) if isinstance(v, dict) else v
                                                  for k, v in init_kwargs.items()})
    return top


def write_nvidia_style_pickle(path, nets, marker, protocol=4, G_kwargs=TINY_G):
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"
    fakes = fake_nvidia_packages()
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)
    try:
        ed = fakes["dnnlib.util"].EasyDict
        snapshot = {"training_set_kwargs": ed(path="faces.zip", resolution=32),
                    "G": stand_in(nets["G"], src, ed, G_kwargs),
                    "G_ema": stand_in(nets["G_ema"], src, ed, G_kwargs),
                    "D": stand_in(nets["D"], src, ed, TINY_D, frozen={"b32.fromrgb", "b32.conv0"}),
                    "augment_pipe": PersistentStandIn("AugmentPipe", {
                        "_parameters": OrderedDict(), "_modules": OrderedDict(),
                        "_buffers": OrderedDict(p=torch.tensor(0.25))}, src)}
        with open(path, "wb") as f:
            pickle.dump(snapshot, f, protocol=protocol)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return fakes


@pytest.mark.parametrize("protocol", [3, 4])
def test_nvidia_pickle_loads_without_running_embedded_source(tmp_path, nets, protocol, monkeypatch):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "network-snapshot-000120.pkl"
    fakes = write_nvidia_style_pickle(path, nets, marker, protocol)
    net = load_network(path)
    assert not marker.exists(), "module_src was executed"
    assert net.format == "nvidia-pkl"
    assert net.meta["kimg"] == 120.0 and net.meta["ada_p"] == 0.25
    assert net.meta["training_set_kwargs"] == {"path": "faces.zip", "resolution": 32}
    z = z_batch()
    assert torch.equal(images(net.G_ema, z), images(nets["G_ema"], z))
    assert torch.equal(images(net.G, z, 0.5), images(nets["G"], z, 0.5))
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.D(img), nets["D"](img))
    # the same file under plain pickle (with NVIDIA-like packages importable) does run the embedded code
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_nvidia_pickle_kwargs_are_taken_verbatim(tmp_path, nets):
    """kwargs say 8 mapping layers, weights have 2: refuse, naming the key, rather than fit a preset."""
    kwargs = dict(TINY_G, mapping_kwargs=dict(num_layers=8))
    write_nvidia_style_pickle(tmp_path / "ffhq.pkl", nets, tmp_path / "m", G_kwargs=kwargs)
    with pytest.raises(UserError) as exc:
        load_network(tmp_path / "ffhq.pkl")
    assert_one_line(exc, "ffhq.pkl", "mapping.fc2.weight", "[32, 32]")


class Reducer:
    """An object whose unpickling calls fn(*args): how a pickle carries code."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def evil_payloads(marker: Path):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {"os.system": Reducer(os.system, (f"touch {marker}",)),
            "builtins.eval": Reducer(builtins.eval, (touch,)),
            "builtins.exec": Reducer(builtins.exec, (touch,)),
            "subprocess.call": Reducer(subprocess.call, (["touch", str(marker)],))}


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "builtins.exec", "subprocess.call"])
def test_code_carrying_pickles_are_refused(tmp_path, name, protocol):
    marker = tmp_path / "pwned"
    payload = evil_payloads(marker)[name]
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:  # protocol 2 writes Python 2 names (__builtin__.eval); they are reported as today's
        pickle.dump({"G_ema": payload, "D": None}, f, protocol=protocol)
    with pytest.raises(UserError) as exc:
        load_network(path)
    qualified = f"{payload.fn.__module__}.{payload.fn.__name__}"  # e.g. posix.system on Linux
    assert_one_line(exc, f"refused to unpickle {qualified} from evil.pkl", "not on the allow-list")
    assert not marker.exists()


def test_code_hidden_in_module_state_is_refused(tmp_path, nets):
    marker = tmp_path / "pwned"
    path = tmp_path / "snap.pkl"
    write_nvidia_style_pickle(path, nets, tmp_path / "m")
    data = path.read_bytes()
    # splice a payload into an otherwise valid pickle: it must be refused where it sits
    with open(path, "wb") as f:
        pickle.dump({"G_ema": None, "payload": Reducer(os.system, (f"touch {marker}",)), "rest": data}, f)
    with pytest.raises(UserError) as exc:
        load_network(path)
    assert_one_line(exc, "refused to unpickle", "system")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- rosinality
#
# Independent reference: rosinality's published forward pass (model.py: ModulatedConv2d, StyledConv, ToRGB,
# Generator; ConvLayer, ResBlock, Discriminator) re-derived in plain torch on a rosinality-keyed state dict.

def ros_upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Zero-insertion upsampling, zero padding, true convolution with `kernel`, decimation."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, groups=c)[:, :, ::down, ::down]


def ros_modconv(x, sd, prefix, style, demodulate=True, upsample=False):
    weight = sd[f"{prefix}.weight"]  # [1, O, I, k, k]
    _, out_ch, in_ch, k, _ = weight.shape
    mod_w = sd[f"{prefix}.modulation.weight"]
    s = F.linear(style, mod_w / math.sqrt(mod_w.shape[1]), sd[f"{prefix}.modulation.bias"])
    w = weight / math.sqrt(in_ch * k * k) * s.view(-1, 1, in_ch, 1, 1)
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8).view(-1, out_ch, 1, 1, 1)
    outs = []
    for b in range(x.shape[0]):
        if upsample:
            out = F.conv_transpose2d(x[b:b + 1], w[b].transpose(0, 1), stride=2, padding=0)
            blur = sd[f"{prefix}.blur.kernel"]
            p = (blur.shape[0] - 2) - (k - 1)
            out = ros_upfirdn2d(out, blur, pad=((p + 1) // 2 + 1, p // 2 + 1))
        else:
            out = F.conv2d(x[b:b + 1], w[b], padding=k // 2)
        outs.append(out)
    return torch.cat(outs)


def ros_styled_conv(x, sd, prefix, style, noise, upsample=False):
    out = ros_modconv(x, sd, f"{prefix}.conv", style, upsample=upsample)
    out = out + sd[f"{prefix}.noise.weight"] * noise
    return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * SQRT2


def ros_to_rgb(x, sd, prefix, style, skip):
    out = ros_modconv(x, sd, f"{prefix}.conv", style, demodulate=False) + sd[f"{prefix}.bias"]
    if skip is not None:
        kernel = sd[f"{prefix}.upsample.kernel"]
        p = kernel.shape[0] - 2
        out = out + ros_upfirdn2d(skip, kernel, up=2, pad=((p + 1) // 2 + 1, p // 2))
    return out


def ros_generator(sd, z, latent_avg=None, truncation=1.0):
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:  # EqualLinear(lr_mul=0.01, fused_lrelu)
        w = sd[f"style.{i}.weight"]
        x = F.leaky_relu(F.linear(x, w * (0.01 / math.sqrt(w.shape[1]))) + sd[f"style.{i}.bias"] * 0.01, 0.2) * SQRT2
        i += 1
    if truncation < 1:
        x = latent_avg + truncation * (x - latent_avg)
    n_up = sum(1 for k in sd if k.startswith("to_rgbs.") and k.endswith(".upsample.kernel"))
    latent = x.unsqueeze(1).repeat(1, 2 * n_up + 2, 1)
    noise = [sd[f"noises.noise_{j}"] for j in range(2 * n_up + 1)]
    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = ros_styled_conv(out, sd, "conv1", latent[:, 0], noise[0])
    skip = ros_to_rgb(out, sd, "to_rgb1", latent[:, 1], None)
    i = 1
    for k in range(n_up):
        out = ros_styled_conv(out, sd, f"convs.{2 * k}", latent[:, i], noise[2 * k + 1], upsample=True)
        out = ros_styled_conv(out, sd, f"convs.{2 * k + 1}", latent[:, i + 1], noise[2 * k + 2])
        skip = ros_to_rgb(out, sd, f"to_rgbs.{k}", latent[:, i + 2], skip)
        i += 2
    return skip


def ros_conv_layer(x, sd, prefix, downsample=False, activate=True):
    idx = 0
    if downsample:
        kernel, ks = sd[f"{prefix}.0.kernel"], sd[f"{prefix}.1.weight"].shape[-1]
        p = (kernel.shape[0] - 2) + (ks - 1)
        x = ros_upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
        idx = 1
    w = sd[f"{prefix}.{idx}.weight"]
    out = F.conv2d(x, w / math.sqrt(w[0].numel()), stride=2 if downsample else 1,
                   padding=0 if downsample else w.shape[-1] // 2)
    if activate:
        out = F.leaky_relu(out + sd[f"{prefix}.{idx + 1}.bias"].view(1, -1, 1, 1), 0.2) * SQRT2
    return out


def ros_discriminator(sd, img):
    out = ros_conv_layer(img, sd, "convs.0")
    i = 1
    while f"convs.{i}.conv1.0.weight" in sd:
        h = ros_conv_layer(ros_conv_layer(out, sd, f"convs.{i}.conv1"), sd, f"convs.{i}.conv2", downsample=True)
        out = (h + ros_conv_layer(out, sd, f"convs.{i}.skip", downsample=True, activate=False)) / SQRT2
        i += 1
    b, c, h, w = out.shape
    group = min(b, 4)
    std = out.view(group, -1, 1, c, h, w)
    std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    out = torch.cat([out, std.repeat(group, 1, h, w)], 1)
    out = ros_conv_layer(out, sd, "final_conv").view(b, -1)
    w0, w1 = sd["final_linear.0.weight"], sd["final_linear.1.weight"]
    out = F.leaky_relu(F.linear(out, w0 / math.sqrt(w0.shape[1])) + sd["final_linear.0.bias"], 0.2) * SQRT2
    return F.linear(out, w1 / math.sqrt(w1.shape[1]), sd["final_linear.1.bias"])


def test_rosinality_layout_reproduces_our_images_and_logits(nets):
    G, D = nets["G_ema"], nets["D"]
    g_sd, d_sd = nvidia_to_rosinality_G(G.state_dict()), nvidia_to_rosinality_D(D.state_dict())
    assert g_sd["convs.0.conv.weight"].shape == (1, 32, 32, 3, 3) and g_sd["noises.noise_0"].shape == (1, 1, 4, 4)
    assert g_sd["to_rgbs.2.bias"].shape == (1, 3, 1, 1) and g_sd["conv1.noise.weight"].shape == (1,)
    assert torch.equal(g_sd["to_rgbs.0.upsample.kernel"], torch.outer(*[torch.tensor([1., 3, 3, 1])] * 2) / 16)
    z = z_batch(2)
    with torch.no_grad():
        ref = ros_generator(g_sd, z, G.mapping.w_avg, truncation=0.7)
        ours = images(G, z, 0.7)
        assert (ref - ours).abs().max() < 1e-4
        img = torch.randn(4, 3, 32, 32)
        assert (ros_discriminator(d_sd, img) - D(img)).abs().max() < 1e-4


def test_rosinality_round_trip_is_identity(nets):
    for key, to_ros, back in (("G", nvidia_to_rosinality_G, rosinality_to_nvidia_G),
                              ("D", nvidia_to_rosinality_D, rosinality_to_nvidia_D)):
        state = nets[key].state_dict()
        restored, kwargs = back(to_ros(state))
        # not stored by rosinality: w_avg (travels as latent_avg) and filters of non-resampling layers
        absent = {k for k in state if k == "mapping.w_avg" or k.endswith("resample_filter")}
        assert restored.keys() <= state.keys() and state.keys() - restored.keys() <= absent, key
        assert all(torch.equal(restored[k], state[k]) for k in restored), key
        rebuilt = (Generator if key == "G" else Discriminator)(**kwargs)
        assert rebuilt.state_dict().keys() == state.keys()
        assert all(torch.equal(rebuilt.state_dict()[k], state[k]) for k in absent if k != "mapping.w_avg")


def test_rosinality_file_through_load_network(tmp_path, nets):
    ckpt = {"g": nvidia_to_rosinality_G(nets["G"].state_dict()),
            "g_ema": nvidia_to_rosinality_G(nets["G_ema"].state_dict()),
            "d": nvidia_to_rosinality_D(nets["D"].state_dict()),
            "latent_avg": nets["G_ema"].mapping.w_avg.clone(),
            "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99)}]},
            "d_optim": {"state": {}, "param_groups": []},
            "args": argparse.Namespace(size=32, latent=32, n_mlp=2, channel_multiplier=2, lr=0.002)}
    torch.save(ckpt, tmp_path / "ros.pt")
    with pytest.raises(pickle.UnpicklingError):  # what the allow-list for argparse.Namespace is for
        torch.load(tmp_path / "ros.pt", weights_only=True)
    net = load_network(tmp_path / "ros.pt")
    assert net.format == "rosinality" and net.meta["args"]["n_mlp"] == 2
    z = z_batch()
    assert torch.equal(images(net.G_ema, z, 0.7), images(nets["G_ema"], z, 0.7))
    assert torch.equal(images(net.G, z), images(nets["G"], z))
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.D(img), nets["D"](img))


def test_rosinality_without_latent_avg_estimates_w_avg(tmp_path, nets):
    torch.save({"g_ema": nvidia_to_rosinality_G(nets["G_ema"].state_dict())}, tmp_path / "g.pt")
    net = load_network(tmp_path / "g.pt")
    assert "estimated" in net.meta["w_avg"] and net.G is None and net.D is None
    with torch.no_grad():  # the estimate is the mean w; check it against an independent large sample
        ws = net.G_ema.mapping(torch.randn(20000, 32, generator=torch.Generator().manual_seed(7)), None)[:, 0]
    assert (net.G_ema.mapping.w_avg - ws.mean(0)).abs().max() < 0.05 * ws.std(0).max()


def test_rosinality_unknown_layout_is_refused(tmp_path, nets):
    sd = nvidia_to_rosinality_G(nets["G_ema"].state_dict())
    sd["convs.0.conv.extra"] = torch.zeros(3)
    torch.save({"g_ema": sd}, tmp_path / "fork.pt")
    with pytest.raises(UserError) as exc:
        load_network(tmp_path / "fork.pt")
    assert_one_line(exc, "fork.pt", "convs.0.conv.extra")


# ------------------------------------------------------------------------------------------- bad input

def bad_files(tmp_path, nets):
    good = save_network(tmp_path / "good.pt", nets["G_ema"]).read_bytes()
    files = {"empty.pt": b"", "truncated.pt": good[: len(good) // 2], "text.pt": b"hello, not a network\n",
             "list.pkl": pickle.dumps([1, 2, 3], protocol=4), "half.pkl": pickle.dumps({"G_ema": 1}, protocol=4)[:-3]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    return tmp_path


@pytest.mark.parametrize("name, expected", [
    ("missing.pt", "no such file"), ("empty.pt", "empty"), ("truncated.pt", "truncated or corrupt"),
    ("text.pt", "unknown file format"), ("list.pkl", "match no known layout"), ("half.pkl", "truncated or corrupt"),
    ("other.pt", "match no known layout")])
def test_bad_files_give_one_line(tmp_path, nets, name, expected):
    bad_files(tmp_path, nets)
    with pytest.raises(UserError) as exc:
        load_network(tmp_path / name)
    assert_one_line(exc, name, expected)


def test_torch_file_with_foreign_objects_is_refused(tmp_path):
    import datetime

    torch.save({"g_ema": {}, "when": datetime.date(2021, 1, 1)}, tmp_path / "odd.pt")
    with pytest.raises(UserError) as exc:
        load_network(tmp_path / "odd.pt")
    assert_one_line(exc, "odd.pt", "weights-only", "datetime")
