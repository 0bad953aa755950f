"""TensorFlow-era StyleGAN2 / StyleGAN2-ADA pickles: converted like NVIDIA's legacy.py converts them, read without
running their embedded source, anything else refused in one line.

Reference: tests/data/tf_pickle/ (tools/make_tf_pickle_fixtures.py): TF-format pickles with random weights, and what
NVIDIA's own `legacy.load_network_pkl` + networks compute from them (G_ema images, G images, D logits).
"""
from __future__ import annotations

import builtins
import csv
import os
import pickle
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_blend.app.cli import main
from stylegan_blend.checkpoints import load_network, save_network
from stylegan_blend.errors import UserError

DATA = Path(__file__).parent / "data" / "tf_pickle"
REF = torch.load(DATA / "reference.pt", weights_only=True)
FIXTURES = sorted(REF["fixtures"])
LOGIT_ATOL = 1e-5  # float32 sums of a few hundred terms; measured difference: 0 (same arithmetic as NVIDIA's)


def uint8_images(G, cases) -> torch.Tensor:
    """generate.py's convention: z = RandomState(seed).randn(1, z_dim), (img * 127.5 + 128).clamp(0, 255)."""
    out = []
    with torch.no_grad():
        for seed, psi in cases:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
            img = G(z, None, truncation_psi=psi, noise_mode="const")
            out.append((img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0])
    return torch.stack(out)


def d_input(resolution: int) -> torch.Tensor:
    """The tool's D batch: uniform in [-1, 1], odd samples scaled down (minibatch-stddev groups differ)."""
    img = np.random.RandomState(REF["d_img_seed"]).uniform(-1, 1, [REF["d_batch"], 3, resolution, resolution])
    img[1::2] *= REF["d_odd_scale"]
    return torch.from_numpy(img.astype(np.float32))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


def assert_one_line(exc: pytest.ExceptionInfo, *parts: str):
    msg = str(exc.value)
    assert msg and "\n" not in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def assert_matches_nvidia_images(net, ref):
    assert max_diff(uint8_images(net.G_ema, REF["image_cases"]), ref["G_ema_img"]) <= 1


@pytest.mark.parametrize("name", FIXTURES)
def test_converted_like_nvidias_legacy_py(name):
    ref = REF["fixtures"][name]
    net = load_network(DATA / f"{name}.tfpkl")
    assert net.format == "tf-pkl" and net.meta["tf_family"] == ref["family"]
    # the architecture NVIDIA's converter derives from the static kwargs (see D below for the one difference)
    assert net.G_ema.init_kwargs == ref["G_ema_kwargs"] and net.G.init_kwargs == ref["G_ema_kwargs"]
    assert net.D.init_kwargs == ref["D_kwargs"]
    # seeds 0-3 at psi 1.0 and 0.7, noise const: within 1/255 of NVIDIA's converted G_ema (measured: identical)
    ours = uint8_images(net.G_ema, REF["image_cases"])
    assert max_diff(ours, ref["G_ema_img"]) <= 1
    assert max_diff(ref["G_ema_img"][0], ref["G_ema_img"][1]) > 5  # seeds differ: the comparison has content
    assert max_diff(ref["G_ema_img"][0], ref["G_ema_img"][4]) > 5  # so does truncation (w_avg is used)
    if "G_img" in ref:  # the file's G differs from its Gs: each lands in its own place
        g_cases = [(seed, 1.0) for seed in REF["G_image_seeds"]]
        assert max_diff(uint8_images(net.G, g_cases), ref["G_img"]) <= 1
        assert max_diff(ref["G_img"], ref["G_ema_img"][:len(g_cases)]) > 20
    with torch.no_grad():
        logits = net.D(d_input(net.D.img_resolution))
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=LOGIT_ATOL)


def test_stylegan2_discriminator_keeps_tf_minibatch_group_of_4():
    """D_stylegan2's default group is 4; NVIDIA's converter turns the missing kwarg into None (whole batch).
    The reference is NVIDIA's D at group 4; its as-converted logits for the 8-image batch differ."""
    ref = REF["fixtures"]["sg2_config_f_32"]
    net = load_network(DATA / "sg2_config_f_32.tfpkl")
    assert net.D.init_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 4
    assert (ref["logits"] - ref["logits_nvidia_group_none"]).abs().max() > 100 * LOGIT_ATOL


def test_stylegan2_mapping_is_512_wide_unless_the_file_says_otherwise(tmp_path, monkeypatch):
    nets = read_with_tf_stand_in(DATA / "sg2_config_e_16.tfpkl", monkeypatch)
    for net in walk(nets):
        net.static_kwargs.pop("mapping_fmaps", None)
    path = write_with_tf_stand_in(tmp_path / "wide.pkl", nets, monkeypatch)
    with pytest.raises(UserError) as exc:
        load_network(path)
    assert_one_line(exc, "wide.pkl", "mapping.fc0.weight", "[512, 8]")  # G_mapping's default, not w_dim (8)


# ----------------------------------------------------------------------------------------------- safety
#
# A stand-in for TF's dnnlib.tflib.network.Network as plain pickle sees it: its __setstate__ exec()s
# build_module_src, as TF's does. It reads the fixtures, writes altered copies, and shows the payloads are live.

def tf_stand_in() -> dict:
    def __setstate__(self, state):
        exec(compile(state["build_module_src"], "<build_module_src>", "exec"), {})
        self.__dict__.update(state)

    network = types.ModuleType("dnnlib.tflib.network")
    network.Network = type("Network", (), {"__module__": "dnnlib.tflib.network", "__setstate__": __setstate__,
                                           "__getstate__": lambda self: dict(self.__dict__)})
    tflib, dnnlib = types.ModuleType("dnnlib.tflib"), types.ModuleType("dnnlib")
    tflib.network, dnnlib.tflib = network, tflib
    return {"dnnlib": dnnlib, "dnnlib.tflib": tflib, "dnnlib.tflib.network": network}


STAND_IN = tf_stand_in()


def install_stand_in(monkeypatch):
    for name, module in STAND_IN.items():
        monkeypatch.setitem(sys.modules, name, module)


def read_with_tf_stand_in(path, monkeypatch):
    install_stand_in(monkeypatch)
    with open(path, "rb") as f:
        return list(pickle.load(f))


def write_with_tf_stand_in(path, nets, monkeypatch, protocol=4):
    install_stand_in(monkeypatch)
    with open(path, "wb") as f:
        pickle.dump(tuple(nets), f, protocol=protocol)
    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):  # nothing of it is left for the loader
        monkeypatch.delitem(sys.modules, name)
    return path


def walk(nets):
    """Every network object once: G, D, Gs and their components."""
    seen, stack = {}, list(nets)
    while stack:
        net = stack.pop()
        if id(net) not in seen:
            seen[id(net)] = net
            stack += list(net.components.values())
    return list(seen.values())


@pytest.mark.parametrize("protocol", [3, 4])  # TF's save_pkl used the highest protocol (4 on Python 3.6/3.7)
def test_build_module_src_is_never_run(tmp_path, monkeypatch, protocol):
    marker = tmp_path / "marker.txt"
    nets = read_with_tf_stand_in(DATA / "sg2_config_e_16.tfpkl", monkeypatch)
    for net in walk(nets):
        net.build_module_src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('build_module_src ran')\n"
    path = write_with_tf_stand_in(tmp_path / "network-snapshot-000120.pkl", nets, monkeypatch, protocol)
    net = load_network(path)
    assert not marker.exists(), "build_module_src was executed"
    assert net.meta["kimg"] == 120.0
    assert_matches_nvidia_images(net, REF["fixtures"]["sg2_config_e_16"])
    # the same file under plain pickle, with a TF-like Network class importable, does run the payload
    read_with_tf_stand_in(path, monkeypatch)
    assert marker.read_text() == "build_module_src ran"


def test_build_module_src_is_not_even_compiled(tmp_path, monkeypatch):
    nets = read_with_tf_stand_in(DATA / "ada_16.tfpkl", monkeypatch)
    for net in walk(nets):
        net.build_module_src = "def G_main(:\n"  # compile() would raise SyntaxError
    path = write_with_tf_stand_in(tmp_path / "ada.pkl", nets, monkeypatch)
    assert_matches_nvidia_images(load_network(path), REF["fixtures"]["ada_16"])
    with pytest.raises(SyntaxError):
        read_with_tf_stand_in(path, monkeypatch)


class Reducer:
    """An object whose unpickling calls fn(*args): how a pickle carries code."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "builtins.exec", "subprocess.call"])
def test_any_other_global_is_refused(tmp_path, monkeypatch, name):
    marker = tmp_path / "pwned"
    touch = f"open({str(marker)!r}, 'w').close()"
    payload = {"os.system": Reducer(os.system, (f"touch {marker}",)), "builtins.eval": Reducer(builtins.eval, (touch,)),
               "builtins.exec": Reducer(builtins.exec, (touch,)),
               "subprocess.call": Reducer(subprocess.call, (["touch", str(marker)],))}[name]
    nets = read_with_tf_stand_in(DATA / "sg2_config_e_16.tfpkl", monkeypatch)
    nets[1].static_kwargs["resolution"] = payload  # inside D's state, after the networks' own globals
    path = write_with_tf_stand_in(tmp_path / "evil.pkl", nets, monkeypatch)
    with pytest.raises(UserError) as exc:
        load_network(path)
    qualified = f"{payload.fn.__module__}.{payload.fn.__name__}"  # e.g. posix.system on Linux
    assert_one_line(exc, f"refused to unpickle {qualified} from evil.pkl", "not on the allow-list")
    assert not marker.exists()


def _set(attr, value, which=2, component=None):
    def change(nets):
        net = nets[which] if component is None else nets[which].components[component]
        setattr(net, attr, value)
    return change


def _kwarg(key, value, which=2):
    def change(nets):
        nets[which].static_kwargs[key] = value
    return change


def _variable(name, value, which=1):
    def change(nets):
        nets[which].variables = list(nets[which].variables) + [(name, value)]
    return change


def _drop(name, which=2):
    def change(nets):
        nets[which].variables = [v for v in nets[which].variables if v[0] != name]
    return change


UNSUPPORTED = {  # fixture, change, what the one line must name
    "stylegan_v1": ("sg2_config_f_32", _set("build_func_name", "G_style"), ["Gs", "G_style", "StyleGAN (v1)"]),
    "config_a_to_d": ("sg2_config_f_32", _set("build_func_name", "G_synthesis_stylegan_revised", 0, "synthesis"),
                      ["G is built by", "G_synthesis_stylegan_revised", "configs A-D"]),
    "progressive_D": ("sg2_config_f_32", _set("build_func_name", "D_stylegan", 1), ["D is built by D_stylegan"]),
    "other_function": ("ada_16", _set("build_func_name", "D_custom", 1), ["D_custom", "not a StyleGAN2"]),
    "old_version": ("sg2_config_f_32", _set("version", 3), ["Gs", "version 3"]),
    "conditional": ("ada_16", _kwarg("label_size", 10), ["Gs has label_size=10", "conditional"]),
    "unknown_kwarg": ("sg2_config_e_16", _kwarg("fmap_funky", 3), ["fmap_funky=3", "does not know"]),
    "spectral_norm": ("ada_16", _kwarg("use_spectral_norm", True, 1), ["D has use_spectral_norm=True"]),
    "leftover_variable": ("ada_16", _variable("4x4/Conv/weight_sn", np.zeros([1, 8], np.float32)),
                          ["D has TF variable 4x4/Conv/weight_sn"]),
    "missing_variable": ("sg2_config_e_16", _drop("dlatent_avg"), ["no TF variable dlatent_avg", "mapping.w_avg"]),
    "box_filter": ("ada_16", _kwarg("resample_kernel", None), ["resample_kernel=None"]),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_variants_are_refused_in_one_line(tmp_path, monkeypatch, case):
    fixture, change, parts = UNSUPPORTED[case]
    nets = read_with_tf_stand_in(DATA / f"{fixture}.tfpkl", monkeypatch)
    change(nets)
    path = write_with_tf_stand_in(tmp_path / f"{case}.pkl", nets, monkeypatch)
    with pytest.raises(UserError) as exc:
        load_network(path)
    assert_one_line(exc, f"{case}.pkl", *parts)


def test_a_file_with_only_gs_gives_G_ema(tmp_path, monkeypatch):
    """Some collections share just the generator: G_ema only, as for a native file without G and D."""
    nets = read_with_tf_stand_in(DATA / "ada_16.tfpkl", monkeypatch)
    install_stand_in(monkeypatch)
    with open(tmp_path / "gs.pkl", "wb") as f:
        pickle.dump(nets[2], f, protocol=4)
    net = load_network(tmp_path / "gs.pkl")
    assert net.G is None and net.D is None
    assert_matches_nvidia_images(net, REF["fixtures"]["ada_16"])


# ---------------------------------------------------------------------------------- everywhere a network goes

def test_convert_to_native_and_nvidia_pkl_round_trips(tmp_path, capsys):
    src = DATA / "sg2_config_f_32.tfpkl"
    ref = REF["fixtures"]["sg2_config_f_32"]
    direct = load_network(src)
    assert main(["convert", str(src), str(tmp_path / "net.pt")]) == 0
    assert "(tf-pkl)" in capsys.readouterr().out
    assert main(["convert", "--to", "nvidia-pkl", str(src), str(tmp_path / "net.pkl")]) == 0
    for path, fmt in ((tmp_path / "net.pt", "native"), (tmp_path / "net.pkl", "nvidia-pkl")):
        net = load_network(path)
        assert net.format == fmt
        for key in ("G_ema", "G", "D"):
            ours, theirs = getattr(net, key), getattr(direct, key)
            assert ours.init_kwargs == theirs.init_kwargs
            a, b = ours.state_dict(), theirs.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert_matches_nvidia_images(net, ref)
    assert load_network(tmp_path / "net.pt").meta["source_format"] == "tf-pkl"


def test_inspect_blend_and_init_from_take_tf_pickles(tmp_path, capsys):
    from stylegan_blend.training.architecture import resolve

    src = DATA / "sg2_config_f_32.tfpkl"
    ref = REF["fixtures"]["sg2_config_f_32"]
    assert main(["inspect", str(src)]) == 0
    printed = capsys.readouterr().out
    assert "tf-pkl" in printed and "stylegan2" in printed and "8:8  16:8  32:4" in printed
    G_kwargs, D_kwargs, loaded = resolve({"init_from": str(src)})
    assert G_kwargs == ref["G_ema_kwargs"] and D_kwargs == ref["D_kwargs"] and loaded.format == "tf-pkl"
    # blend the file's G_ema (low) with its G (high) at 8 px: b4, b8 from G_ema, b16, b32 from G
    out = tmp_path / "blend.pt"
    G = load_network(src).G
    save_network(tmp_path / "g.pt", G)
    assert main(["blend", "--low", str(src), "--high", str(tmp_path / "g.pt"), "--swap-res", "8", "--out",
                 str(out)]) == 0
    blended = load_network(out).G_ema.state_dict()
    low, high = load_network(src).G_ema.state_dict(), G.state_dict()
    assert torch.equal(blended["synthesis.b4.const"], low["synthesis.b4.const"])
    assert torch.equal(blended["synthesis.b32.torgb.weight"], high["synthesis.b32.torgb.weight"])
    assert not torch.equal(low["synthesis.b32.torgb.weight"], high["synthesis.b32.torgb.weight"])


def test_eval_scores_a_folder_of_tf_snapshots(tmp_path, capsys):
    from stylegan_blend.app.evaluate import outside_main
    from stylegan_blend.data.prepare import prepare_images

    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    shutil.copy(DATA / "sg2_config_e_16.tfpkl", snaps / "network-snapshot-000004.pkl")
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(raw / f"{i}.png")
    prepare_images(raw, tmp_path / "data", resolution=16, val_fraction=0.0)
    out = tmp_path / "scored"
    assert outside_main(["--base", str(DATA / "sg2_config_e_16.tfpkl"), "--checkpoints", str(snaps),
                         "--data", str(tmp_path / "data"), "--out", str(out), "--swap-res", "8", "--num-gen", "8",
                         "--identity-num", "8", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {(r["epoch"], r["kimg"]) for r in rows if r["swap_res"] != "base"} == {("4", "4.000")}
    assert "network-snapshot-000004.pkl: epoch 4" in capsys.readouterr().out
