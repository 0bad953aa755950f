"""`convert --to nvidia-pkl|rosinality`: files NVIDIA's and rosinality's code load, round trips exact.

NVIDIA: the file is loaded with the standard unpickler (what NVIDIA's legacy.load_network_pkl uses) in a
tree where `training.networks` is importable; here that module is a stand-in made of our classes (parity
with NVIDIA's own is tests/test_nvidia_parity.py); tools/check_nvidia_export.py runs the same check
inside a real NVIDIA checkout. rosinality: the independent re-implementation of its forward pass in
tests/test_checkpoints.py.
"""
from __future__ import annotations

import argparse
import pickle
import sys

import pytest
import torch
from test_checkpoints import images, ros_discriminator, ros_generator, z_batch
from tiny_nets import tiny_nets

from stylegan_blend.app.cli import main
from stylegan_blend.checkpoints import load_network, save_network


@pytest.fixture(scope="module")
def nets():
    return tiny_nets()


@pytest.fixture
def network_file(tmp_path, nets):
    return save_network(tmp_path / "net.pt", nets["G_ema"], G=nets["G"], D=nets["D"], meta={"kimg": 12.0})


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_nvidia_pkl_round_trip_is_exact(tmp_path, network_file, nets, capsys):
    out = tmp_path / "network-snapshot-000012.pkl"
    assert main(["convert", "--to", "nvidia-pkl", str(network_file), str(out)]) == 0
    assert "nvidia-pkl" in capsys.readouterr().out
    back = load_network(out)
    assert back.format == "nvidia-pkl"
    for key in ("G_ema", "G", "D"):
        assert _equal(getattr(back, key), nets[key]), key
        assert getattr(back, key).init_kwargs == nets[key].init_kwargs


class _Recording(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.globals = set()

    def find_class(self, module, name):
        self.globals.add(f"{module}.{name}")
        return super().find_class(module, name)


def test_nvidia_pkl_loads_as_the_classes_of_training_networks(tmp_path, network_file, nets, monkeypatch):
    """What legacy.load_network_pkl does (a plain Unpickler) yields `training.networks` modules built from
    their init_kwargs; the file names nothing of this package, only NVIDIA's classes, stdlib and torch."""
    out = tmp_path / "net.pkl"
    assert main(["convert", "--to", "nvidia-pkl", str(network_file), str(out)]) == 0
    pkg = tmp_path / "nvidia_tree" / "training"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "networks.py").write_text(
        "from stylegan_blend.networks import Generator as _G, Discriminator as _D\n"
        "class Generator(_G):\n    pass\n\nclass Discriminator(_D):\n    pass\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    try:
        with open(out, "rb") as f:
            u = _Recording(f)
            data = u.load()
    finally:
        for name in ("training.networks", "training"):
            sys.modules.pop(name, None)
    assert {"G", "D", "G_ema"} <= data.keys() and data["augment_pipe"] is None
    assert type(data["G_ema"]).__module__ == "training.networks" and type(data["D"]).__name__ == "Discriminator"
    for key in ("G_ema", "G", "D"):
        assert _equal(data[key], nets[key]), key
    assert not any(g.startswith("stylegan_blend") for g in u.globals), u.globals
    assert "importlib.import_module" in u.globals  # NVIDIA's classes are looked up at load time
    assert u.globals <= {"functools.partial", "builtins.getattr", "importlib.import_module",
                         "torch.nn.modules.module.Module.load_state_dict", "collections.OrderedDict",
                         "torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes"}, u.globals


def test_rosinality_export_runs_in_the_independent_reimplementation(tmp_path, network_file, nets):
    out = tmp_path / "ros.pt"
    assert main(["convert", "--to", "rosinality", str(network_file), str(out)]) == 0
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(out, weights_only=True)
    assert vars(ckpt["args"]) == dict(size=32, latent=32, n_mlp=2, channel_multiplier=2)
    z = z_batch(2)
    with torch.no_grad():
        ref = ros_generator(ckpt["g_ema"], z, ckpt["latent_avg"], truncation=0.7)
        assert (ref - images(nets["G_ema"], z, 0.7)).abs().max() < 1e-4
        img = torch.randn(4, 3, 32, 32)
        assert (ros_discriminator(ckpt["d"], img) - nets["D"](img)).abs().max() < 1e-4
    back = load_network(out)  # round trip: rosinality keeps one latent_avg (G_ema's), so G's w_avg is G_ema's
    assert _equal(back.G_ema, nets["G_ema"]) and _equal(back.D, nets["D"])
    g = dict(nets["G"].state_dict(), **{"mapping.w_avg": nets["G_ema"].mapping.w_avg})
    assert all(torch.equal(back.G.state_dict()[k], v) for k, v in g.items())


def test_export_of_a_G_ema_only_file_completes_G_and_D(tmp_path, nets, capsys):
    src = save_network(tmp_path / "blend.pt", nets["G_ema"])
    assert main(["convert", "--to", "nvidia-pkl", str(src), str(tmp_path / "b.pkl")]) == 0
    out = capsys.readouterr().out
    assert "G: a copy of G_ema" in out and "D: freshly initialised" in out
    back = load_network(tmp_path / "b.pkl")
    assert _equal(back.G, nets["G_ema"]) and back.D.img_resolution == 32


def test_export_error_is_one_line_and_leaves_nothing(tmp_path, network_file, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["convert", "--to", "nvidia-pkl", str(network_file), str(blocker / "out.pkl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and blocker.read_text() == "x"
