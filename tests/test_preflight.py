"""preflight.py: every config problem is one `error:` line before the logger, data or features start."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_training import TINY_MODEL


def _images(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"i{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from stylegan_blend.data.prepare import prepare_images

    dst = tmp_path_factory.mktemp("data16")
    prepare_images(_images(tmp_path_factory.mktemp("raw")), dst, resolution=16, val_fraction=0.3)
    return dst


@pytest.fixture(scope="module")
def data_noval(tmp_path_factory) -> Path:
    from stylegan_blend.data.prepare import prepare_images

    dst = tmp_path_factory.mktemp("data16noval")
    prepare_images(_images(tmp_path_factory.mktemp("raw2")), dst, resolution=16, val_fraction=0.0)
    return dst


TINY = [*TINY_MODEL, "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "logger=none", "augment=none", "trainer.max_epochs=1",
        "train.diagnostics.num_images=4", "train.diagnostics.grid_size=4"]


def _cfg(*overrides):
    from hydra import compose, initialize_config_dir

    from stylegan_blend.app.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=TINY + list(overrides))


def _problems(cfg, run_dir=None) -> list[str]:
    from stylegan_blend.app.preflight import ConfigErrors, check_training_config

    try:
        check_training_config(cfg, run_dir)
    except ConfigErrors as e:
        return e.problems
    return []


@pytest.fixture
def base_file(tmp_path) -> Path:
    p = tmp_path / "base.pt"
    p.write_bytes(b"not checked by preflight")  # preflight checks that it exists; loading comes later
    return p


def test_valid_config_has_no_problem(data, tmp_path, base_file):
    assert _problems(_cfg(f"data.path={data}", f"blend.base={base_file}", "blend.swap_res=[4,8]"),
                     tmp_path / "run") == []


@pytest.mark.parametrize("overrides, words", [
    (["blend.swap_res=[16,32]"], ["blend.swap_res=[16, 32]", "16, 32 not a swap point of a 16 px model", "4, 8"]),
    (["data.resolution=8"], ["data.resolution=8 but model.resolution=16"]),
    (["model.resolution=32", "model.G_kwargs.img_resolution=32"],
     ["images were prepared at 16 px but data.resolution=32 (model.resolution=32)"]),
    (["train.batch_size=6", "train.mbstd_group_size=4"], ["batch of 6 images", "minibatch-stddev group 4"]),
    (["metrics=fid", "metrics.inception_path=/nonexistent/inception.pt"],
     ["/nonexistent/inception.pt not found", "metrics.inception_path=", "metrics=proxy"]),
    (["trainer.max_epochs=abc"], ["trainer.max_epochs='abc': expected an integer >= 1"]),
    (["checkpoint.every_n_epochs=-1"], ["checkpoint.every_n_epochs=-1: expected an integer >= 1"]),
    (["checkpoint.every_n_epochs=0"], ["checkpoint.every_n_epochs=0"]),
    (["blend.directions=[sideways]"], ["'sideways'; expected low_base or low_tuned"]),
])
def test_each_problem_is_named(data, tmp_path, base_file, overrides, words):
    problems = _problems(_cfg(f"data.path={data}", f"blend.base={base_file}", "blend.swap_res=[4,8]", *overrides),
                         tmp_path / "run")
    assert len(problems) == 1, problems
    for w in words:
        assert w in problems[0], problems[0]


def test_missing_inception_without_path_suggests_both_fixes(data, tmp_path, base_file, monkeypatch):
    from stylegan_blend.evaluation import extractors

    monkeypatch.delenv(extractors.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(extractors, "CLEANFID_DIR", tmp_path / "no-cleanfid")
    (p,) = _problems(_cfg(f"data.path={data}", f"blend.base={base_file}", "blend.swap_res=[4]", "metrics=fid"))
    assert "metrics.inception_path=FILE" in p and "metrics=proxy" in p


def test_data_folder_missing_or_without_images(tmp_path):
    (p,) = _problems(_cfg(f"data.path={tmp_path / 'nope'}"))
    assert f"data.path={tmp_path / 'nope'}: no such dataset folder" in p
    (tmp_path / "empty").mkdir()
    (p,) = _problems(_cfg(f"data.path={tmp_path / 'empty'}"))
    assert "no images and no manifest.json" in p


def test_output_dir_that_is_a_file_or_unwritable(data, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    (p,) = _problems(_cfg(f"data.path={data}"), f)
    assert f"paths.output_dir={f}: {f} is a file, not a folder" in p
    (p,) = _problems(_cfg(f"data.path={data}"), f / "run")
    assert "(a parent) is a file" in p
    if os.geteuid() == 0:  # root writes through permission bits; a read-only mount still refuses
        ro = Path("/sys/stylegan-blend-run")
        assert not os.access("/sys", os.W_OK) or not ro.exists()
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        ro = ro / "run"
    (p,) = _problems(_cfg(f"data.path={data}"), ro)
    assert "is not writable" in p


def test_all_problems_at_once(tmp_path):
    problems = _problems(_cfg(f"data.path={tmp_path / 'nope'}", "trainer.max_epochs=abc",
                              "checkpoint.every_n_epochs=-1", "data.resolution=8"))
    assert len(problems) == 4


def test_warnings_empty_val_split_and_small_noisy_finetune(data, data_noval, base_file):
    from stylegan_blend.app.preflight import check_training_config

    w = check_training_config(_cfg(f"data.path={data_noval}"))
    assert len(w) == 1 and "val split is empty" in w[0]
    assert check_training_config(_cfg(f"data.path={data}")) == []
    w = check_training_config(_cfg(f"data.path={data}", f"model.init_from={base_file}", "model.G_kwargs=null",
                                   "model.D_kwargs=null", "blend.swap_res=[4]"))
    assert len(w) == 1 and "train.freeze_noise=true" in w[0]
    assert check_training_config(_cfg(f"data.path={data}", f"model.init_from={base_file}", "model.G_kwargs=null",
                                      "model.D_kwargs=null", "blend.swap_res=[4]", "train.freeze_noise=true")) == []


@pytest.mark.parametrize("res, grid, want", [
    (256, "epochs_x_swap", [16, 32, 64]), (256, "swap_grid", [8, 16, 32, 64]),
    (32, "epochs_x_swap", [4, 8]), (1024, "epochs_x_swap", [64, 128, 256]), (16, "swap_grid", [4])])
def test_swap_presets_scale_with_the_model(data, base_file, res, grid, want):
    from omegaconf import OmegaConf

    from stylegan_blend.blending.swap import swap_points

    cfg = _cfg(f"sweep={grid}", f"model.resolution={res}", f"data.path={data}", f"blend.base={base_file}")
    got = OmegaConf.to_container(cfg.blend, resolve=True)["swap_res"]
    assert got == want and set(got) <= set(swap_points(res))


def test_swap_points_are_the_blocks_below_the_output():
    from stylegan_blend.blending.swap import swap_points
    from stylegan_blend.networks import Generator

    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8))
    assert swap_points(32) == sorted(G.synthesis.block_resolutions)[:-1] == [4, 8, 16]


def test_bad_swap_grid_fails_before_wandb_or_run_folder(tmp_path, data, base_file):
    """Seen 5: the swap check ran ~25 s in, after W&B and the reference features; now nothing starts."""
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", f"data.path={data}", *TINY, "logger=wandb",
                        f"blend.base={base_file}", "blend.swap_res=[32]", "trainer.max_epochs=abc",
                        f"paths.output_dir={run}"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "WANDB_MODE": "offline"})
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1, r.stderr
    assert len(err) == 2 and all(line.startswith("error: ") for line in err), r.stderr
    assert "32 not a swap point of a 16 px model" in r.stderr and "trainer.max_epochs='abc'" in r.stderr
    assert not run.exists()  # no run folder, no .hydra, no wandb/


def test_output_dir_that_is_a_file_is_one_line_before_hydra_creates_it(tmp_path, data):
    """Hydra itself creates the run folder before the task starts; a file there used to end in a traceback."""
    f = tmp_path / "taken"
    f.write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", f"data.path={data}", *TINY,
                        f"paths.output_dir={f}"], capture_output=True, text=True, timeout=300)
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(err) == 1, r.stderr
    assert err[0] == f"error: paths.output_dir={f}: {f} is a file, not a folder; expected a folder the run can write"
    assert f.read_text() == "not a folder"


@pytest.fixture(scope="module")
def data30(tmp_path_factory) -> Path:
    from stylegan_blend.data.prepare import prepare_images

    dst = tmp_path_factory.mktemp("data16x30")
    prepare_images(_images(tmp_path_factory.mktemp("raw30"), n=30), dst, resolution=16, val_fraction=0.0)
    return dst


def test_the_batch_per_device_is_checked_against_the_minibatch_stddev_group(data30, tmp_path):
    """train.batch_size is the total over the devices: 12 on 2 devices gives each D 6 images, which its group of 4
    does not divide, though the total 12 would pass. One check, knowing the device count."""
    group = ["train.mbstd_group_size=4", "train.batch_size=12"]
    assert _problems(_cfg(f"data.path={data30}", *group), tmp_path / "run") == []  # one device: 12 = 3 groups
    (p,) = _problems(_cfg(f"data.path={data30}", *group, "trainer.devices=2"), tmp_path / "run")
    assert "batch of 6 images per process (2 processes)" in p and "minibatch-stddev group 4" in p
    (p,) = _problems(_cfg(f"data.path={data30}", *group, "trainer.devices=[0,1,2,3,4]"), tmp_path / "run")
    assert "train.batch_size=12 is the total batch over 5 processes and does not divide by 5" in p


def test_batch_12_on_2_devices_is_refused_before_anything_is_created(data30, tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", f"data.path={data30}", *TINY,
                        "train.mbstd_group_size=4", "train.batch_size=12", "trainer.devices=2",
                        f"paths.output_dir={run}"], capture_output=True, text=True, timeout=300)
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(err) == 1 and err[0].startswith("error: batch of 6 images per process"), r.stderr
    assert not run.exists()  # refused before Hydra made the run folder: no .hydra, no checkpoints, no logger
