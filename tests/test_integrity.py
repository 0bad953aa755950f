"""Bad input and a hostile environment, through the public commands: exactly one `error:` line and exit 1/2,
no traceback, nothing half-written, nothing overwritten. Commands run in-process (cli.main, train(), with
errors.report_failure, the one place that turns expected failures into lines); a few run as subprocesses."""
from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_training import TINY_D, TINY_G, TINY_OVERRIDES, _cfg, _fit, dataset  # noqa: F401  (fixture)

from stylegan_blend.app.cli import main
from stylegan_blend.errors import UserError, report_failure


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its content hash: the reference for "nothing written, nothing changed"."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _one_error(rc: int, err: str, *words: str, codes=(1, 2)) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert rc in codes, (rc, err)
    assert len(errors) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def net16(tmp_path_factory) -> Path:
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.networks import Discriminator, Generator

    torch.manual_seed(0)
    return save_network(tmp_path_factory.mktemp("net") / "g16.pt", Generator(**TINY_G), G=Generator(**TINY_G),
                        D=Discriminator(**TINY_D))


def _fail(exc_info) -> tuple[int, str]:
    """What the entry point prints for an exception raised by train(): (exit code, stderr)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        code = report_failure(exc_info.value)
    assert code is not None, f"not an expected failure: {exc_info.value!r}"
    return code, buf.getvalue()


# --------------------------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("argv, words", [
    (["prepare", "synthetic", "{tmp}/out", "--domain", "toon", "--res", "65536"], ["65536", "4096"]),
    (["generate", "--network", "{net}", "--seeds", "0-4294967295", "--outdir", "{tmp}/out"], ["seeds", "at most"]),
    (["generate", "--network", "{net}", "--seeds", "0", "--outdir", "{tmp}/out", "--device", "banana"], ["banana"]),
    (["generate", "--network", "{net}", "--seeds", "0", "--outdir", "{tmp}/out", "--device", "cuda:4096"], ["cuda:4096"]),
    (["evaluate", "--network", "{net}", "--data", "{data}", "--extractor", "randcnn", "--device", "cuda:99"], ["cuda:99"]),
    (["blend", "--low", "{net}", "--high", "{net}", "--swap-res", "8", "--out", "{tmp}/out/b.pt", "--device", "tpu"],
     ["tpu"]),
    (["evaluate", "--network", "{net}", "--data", "{data}", "--extractor", "randcnn", "--max-ref", "0"], ["--max-ref 0"]),
])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, capsys, net16, dataset, argv, words):  # noqa: F811
    argv = [a.format(tmp=tmp_path, net=net16, data=dataset) for a in argv]
    rc, _, err = _cli(capsys, *argv)
    _one_error(rc, err, *words)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("content, words", [
    (b"\x00\x01\x02PK\xff\xfe binary", ["not a text file"]),
    (b"a,b,c\n1,2,3\n", ["header"]),
])
def test_bad_metrics_csv_is_refused_before_scoring_and_left_alone(tmp_path, capsys, net16, dataset, content,  # noqa: F811
                                                                  words):
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes(content)
    rc, out, err = _cli(capsys, "evaluate", "--network", net16, "--data", dataset, "--extractor", "randcnn",
                        "--num-gen", "4", "--csv", csv_path, "--cache-dir", tmp_path / "cache")
    _one_error(rc, err, "m.csv", *words)
    assert csv_path.read_bytes() == content and "metric" not in out  # refused before any scoring


def test_few_reference_images_warn_but_score(tmp_path, capsys, net16, dataset):  # noqa: F811
    rc, out, err = _cli(capsys, "evaluate", "--network", net16, "--data", dataset, "--extractor", "randcnn",
                        "--num-gen", "64", "--max-ref", "5", "--cache-dir", tmp_path / "cache", "--batch-size", "32")
    assert rc == 0 and "error" not in err, err
    assert any(l.startswith("warning:") and "5 reference images" in l and "64 generated" in l for l in err.splitlines())


# --------------------------------------------------------------------------------------------- network files

def _nan_copy(src: Path, dst: Path) -> Path:
    data = torch.load(src, weights_only=True)
    data["G_ema"]["state_dict"]["synthesis.b16.torgb.weight"][0, 0] = float("nan")
    torch.save(data, dst)
    return dst


def _flip_payload_byte(src: Path, dst: Path) -> Path:
    """Damage one byte inside a stored tensor (torch.save writes them uncompressed): only the CRC notices."""
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.file_size // 2] ^= 0x01
    dst.write_bytes(bytes(raw))
    torch.load(dst, weights_only=True)  # the premise: torch.load itself accepts the damaged file
    return dst


@pytest.mark.parametrize("damage, words", [(_nan_copy, ["NaN", "synthesis.b16.torgb.weight"]),
                                           (_flip_payload_byte, ["CRC"])])
def test_damaged_network_is_refused_and_renders_nothing(tmp_path, capsys, net16, damage, words):
    bad = damage(net16, tmp_path / "bad.pt")
    rc, _, err = _cli(capsys, "generate", "--network", bad, "--seeds", "0-3", "--outdir", tmp_path / "png")
    _one_error(rc, err, "bad.pt", *words)
    assert not list((tmp_path / "png").glob("*.png")) if (tmp_path / "png").exists() else True


# --------------------------------------------------------------------------------------------- prepare

def test_prepare_into_its_own_source_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(src / "a.png")
    before = _snapshot(src)
    rc, _, err = _cli(capsys, "prepare", "images", src, src, "--res", "16")
    _one_error(rc, err, "source folder itself")
    assert _snapshot(src) == before


def test_prepare_counts_unreadable_files_and_follows_symlinked_folders(tmp_path, capsys, monkeypatch):
    src, other = tmp_path / "src", tmp_path / "elsewhere"
    (src / "sub").mkdir(parents=True)
    other.mkdir()
    rng = np.random.default_rng(0)
    for i, folder in enumerate([src, src / "sub", other, other, src]):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (src / "linked").symlink_to(other, target_is_directory=True)
    locked = src / "img4.png"
    real_read = Path.read_bytes

    def read_bytes(self):  # mode 000 cannot be simulated as root: refuse the read like the OS would
        if self.name == locked.name and self.parent == locked.parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    rc, out, err = _cli(capsys, "prepare", "images", src, tmp_path / "dst", "--res", "16", "--val-fraction", "0")
    assert rc == 0, err
    from stylegan_blend.data.folder import read_manifest

    sources = sorted(e.source for e in read_manifest(tmp_path / "dst").entries)
    assert sources == ["img0.png", "linked/img2.png", "linked/img3.png", "sub/img1.png"]
    assert "skipped 1 unreadable: img4.png (Permission denied)" in out


def test_prepare_reports_an_unlistable_subfolder(tmp_path, capsys, monkeypatch):
    src = tmp_path / "src"
    (src / "locked").mkdir(parents=True)
    Image.new("RGB", (20, 20), (9, 9, 9)).save(src / "a.png")
    real_walk = os.walk

    def walk(top, onerror=None, followlinks=False, **kw):
        for folder, dirs, names in real_walk(top, onerror=onerror, followlinks=followlinks, **kw):
            if Path(folder).name == "locked":
                onerror(PermissionError(errno.EACCES, "Permission denied", folder))
                dirs[:] = []
                continue
            yield folder, dirs, names

    monkeypatch.setattr(os, "walk", walk)
    rc, out, err = _cli(capsys, "prepare", "images", src, tmp_path / "dst", "--res", "16")
    assert rc == 0, err
    assert "folder locked (Permission denied)" in out


def test_val_fraction_leaving_no_train_images_warns(tmp_path, capsys):
    rc, out, err = _cli(capsys, "prepare", "synthetic", tmp_path / "d", "--domain", "toon", "--count", "6",
                        "--res", "16", "--val-fraction", "0.999")
    assert rc == 0
    assert any(l.startswith("warning:") and "0 train" in l for l in err.splitlines()), err


def test_training_refuses_a_folder_without_manifest(tmp_path, dataset):  # noqa: F811
    half = tmp_path / "half"  # what a prepare killed before its last step leaves
    half.mkdir()
    for p in sorted(dataset.glob("*.png"))[:8]:
        (half / p.name).write_bytes(p.read_bytes())
    with pytest.raises(UserError) as exc:
        _fit(_cfg(tmp_path / "run", half, "trainer.max_epochs=1"))
    code, err = _fail(exc)
    _one_error(code, err, "manifest.json")


# --------------------------------------------------------------------------------------------- run folders

@pytest.fixture
def one_epoch_run(tmp_path, dataset):  # noqa: F811
    out = tmp_path / "run"
    _fit(_cfg(out, dataset, "trainer.max_epochs=1", "checkpoint.every_n_epochs=1"))
    return out


def test_a_folder_holding_a_run_is_refused_and_left_as_it_was(tmp_path, dataset, one_epoch_run):  # noqa: F811
    before = _snapshot(one_epoch_run)
    with pytest.raises(UserError) as exc:
        _fit(_cfg(one_epoch_run, dataset, "trainer.max_epochs=2", "seed=5"))
    _one_error(*_fail(exc), "already holds a run", "ckpt_path=last", "overwrite=true")
    assert _snapshot(one_epoch_run) == before


def test_overwrite_moves_the_old_run_aside(tmp_path, dataset, one_epoch_run, capsys):  # noqa: F811
    before = _snapshot(one_epoch_run)
    _fit(_cfg(one_epoch_run, dataset, "trainer.max_epochs=1", "overwrite=true", "seed=3"))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and _snapshot(aside[0]) == before
    assert "moved the previous run" in capsys.readouterr().out
    assert (one_epoch_run / "checkpoints" / "last.ckpt").is_file()


def test_resuming_a_copied_run_keeps_last_ckpt_newest(tmp_path, dataset, one_epoch_run):  # noqa: F811
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(one_epoch_run, copy)
    for epochs in (2, 3):  # the second resume must start from epoch 2, not from the copied epoch 1
        _fit(_cfg(copy, dataset, f"trainer.max_epochs={epochs}", "checkpoint.every_n_epochs=1", "ckpt_path=last"))
        ck = torch.load(copy / "checkpoints" / "last.ckpt", weights_only=True)
        assert ck["stylegan_blend"]["epoch"] == epochs
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == \
        ["epoch=0001.ckpt", "epoch=0002.ckpt", "epoch=0003.ckpt", "last.ckpt"]


def test_resume_with_another_architecture_is_one_line(tmp_path, dataset, one_epoch_run):  # noqa: F811
    cfg_before = (one_epoch_run / ".hydra" / "config.yaml").read_bytes()
    with pytest.raises(UserError) as exc:
        _fit(_cfg(one_epoch_run, dataset, "trainer.max_epochs=2", "ckpt_path=last",
                  "model.G_kwargs.synthesis_kwargs.channel_max=32"))
    _one_error(*_fail(exc), "synthesis_kwargs", "channel_max")
    assert (one_epoch_run / ".hydra" / "config.yaml").read_bytes() == cfg_before


def test_resume_from_a_code_carrying_checkpoint_is_one_line(tmp_path, dataset, one_epoch_run):  # noqa: F811
    evil = tmp_path / "evil.ckpt"
    data = torch.load(one_epoch_run / "checkpoints" / "last.ckpt", weights_only=True)
    data["payload"] = Path("x")  # any non-plain object: the weights-only loader must refuse the whole file
    torch.save(data, evil)
    with pytest.raises(UserError) as exc:
        _fit(_cfg(tmp_path / "fresh", dataset, "trainer.max_epochs=2", f"ckpt_path={evil}"))
    _one_error(*_fail(exc), "evil.ckpt", "refuses")


def test_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_temp(tmp_path, dataset, one_epoch_run,  # noqa: F811
                                                                      monkeypatch):
    last = one_epoch_run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        if "pytorch-lightning_version" in obj:  # only the Lightning checkpoint hits the full disk
            f.write(b"x" * 1000)  # part of it made it to the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError) as exc:
        _fit(_cfg(one_epoch_run, dataset, "trainer.max_epochs=2", "checkpoint.every_n_epochs=1", "ckpt_path=last"))
    _one_error(*_fail(exc), "No space left on device")
    assert last.read_bytes() == before
    assert not [p for p in one_epoch_run.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------- divergence

class _Poison:
    """A callback that makes D's output NaN from batch `start` of epoch `epoch` (0-based) on."""

    def __new__(cls, epoch: int):
        import pytorch_lightning as pl

        class P(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if trainer.current_epoch >= epoch:
                    with torch.no_grad():
                        module.D.b4.out.bias.fill_(float("nan"))

        return P()


def test_nan_from_the_first_minibatch_exports_and_saves_nothing(tmp_path, dataset):  # noqa: F811
    from stylegan_blend.training.module import TrainingDiverged

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as exc:  # never max_nonfinite in a row: the run goes to its end
        _fit(_cfg(out, dataset, "trainer.max_epochs=2", "train.max_nonfinite=100", "checkpoint.every_n_epochs=1"),
             [_Poison(0)])
    _one_error(*_fail(exc), "non-finite", "none saved yet")
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.ckpt"))


def test_last_good_checkpoint_is_from_before_the_first_nan(tmp_path, dataset):  # noqa: F811
    from stylegan_blend.training.module import TrainingDiverged

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as exc:
        _fit(_cfg(out, dataset, "trainer.max_epochs=3", "train.max_nonfinite=100", "checkpoint.every_n_epochs=1"),
             [_Poison(1)])
    line = _one_error(*_fail(exc), "last good checkpoint")
    assert str(out / "checkpoints" / "last.ckpt") in line
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["stylegan_blend"]["epoch"] == 1
    assert sorted(p.name for p in (out / "networks").iterdir()) == ["epoch=0001.pt"]


# --------------------------------------------------------------------------------------------- entry points

def test_train_and_eval_entry_points_print_one_line(tmp_path, dataset, one_epoch_run):  # noqa: F811
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    before = _snapshot(one_epoch_run)
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", f"data.path={dataset}", *TINY_OVERRIDES,
                        f"paths.output_dir={one_epoch_run}"], capture_output=True, text=True, timeout=120, env=env)
    _one_error(r.returncode, r.stderr, "already holds a run")
    after = _snapshot(one_epoch_run)
    assert after.pop("train.log", "") in ("", hashlib.sha256(b"").hexdigest()) and after == before  # Hydra's log
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.evaluate", f"run_dir={one_epoch_run}",
                        "device=cuda:5"], capture_output=True, text=True, timeout=120, env=env)
    _one_error(r.returncode, r.stderr, "cuda:5")


# --------------------------------------------------------------------------------------------- files

def test_metrics_csv_and_feature_cache_respect_the_umask(tmp_path, net16, dataset):  # noqa: F811
    from stylegan_blend.evaluation import make_extractor, reference_features
    from stylegan_blend.run.tables import append_metrics_rows

    old = os.umask(0o027)
    try:
        append_metrics_rows(tmp_path / "metrics.csv", [dict(epoch=1, swap_res="none", metric="fd_x", value=1)])
        reference_features(make_extractor("randcnn"), dataset, 16, cache_dir=tmp_path / "cache")
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.csv").stat().st_mode & 0o777 == 0o640
    (cache,) = (tmp_path / "cache").iterdir()
    assert cache.stat().st_mode & 0o777 == 0o640


def test_full_disk_while_exporting_a_network_leaves_no_temp(tmp_path, net16, monkeypatch):
    from stylegan_blend.checkpoints import load_network, save_network

    net = load_network(net16)
    target = save_network(tmp_path / "networks" / "epoch=0001.pt", net.G_ema)
    before = target.read_bytes()

    def full_disk(obj, f, *a, **kw):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match="No space left on device"):
        save_network(target, net.G_ema)
    assert target.read_bytes() == before and sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_resuming_an_older_checkpoint_into_its_run_is_refused(tmp_path, dataset):  # noqa: F811
    out = tmp_path / "run"
    _fit(_cfg(out, dataset, "trainer.max_epochs=2", "checkpoint.every_n_epochs=1"))
    before = _snapshot(out)
    with pytest.raises(UserError) as exc:
        _fit(_cfg(out, dataset, "trainer.max_epochs=3", f"ckpt_path='{out / 'checkpoints' / 'epoch=0001.ckpt'}'"))
    _one_error(*_fail(exc), "epoch 1", "up to 2", "ckpt_path=last")
    assert _snapshot(out) == before


def test_config_and_environment_failures_map_to_one_line(capsys):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"trainer": {"max_epochs": 3}})
    OmegaConf.set_struct(cfg, True)
    cases = []
    for make in (lambda: cfg.trainer.max_epoch,  # a typo in a key
                 lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device", "/x/last.ckpt")),
                 lambda: (_ for _ in ()).throw(MemoryError("Unable to allocate 64.0 GiB"))):
        try:
            make()
        except BaseException as exc:  # noqa: BLE001
            cases.append((report_failure(exc), capsys.readouterr().err))
    for (code, err), word in zip(cases, ("max_epoch", "/x/last.ckpt: no space left", "not enough memory")):
        _one_error(code, err, word)
    assert report_failure(ZeroDivisionError()) is None  # a bug is not an expected failure: it keeps its traceback
