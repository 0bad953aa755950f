"""The fine-tune parity benchmark's own logic (bench/bench_finetune.py; the benchmark itself is not a test): its
statistics against SciPy / NumPy and a hand case, and how our demo settings are handed to NVIDIA's loop."""
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from stylegan_blend.networks import Generator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_finetune_under_test", ROOT / "bench" / "bench_finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_matches_scipy_students_t(bench):
    ours, nvidia = [0.0101, 0.0095, 0.0098, 0.0104], [0.0099, 0.0093, 0.0106]
    got = bench.compare(ours, nvidia)
    ref = stats.ttest_ind(ours, nvidia, equal_var=True)
    assert got["diff_over_pooled_se"] == pytest.approx(ref.statistic, rel=1e-12)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert got["ours_mean"] == pytest.approx(np.mean(ours), rel=1e-12)
    assert got["ours_std"] == pytest.approx(np.std(ours, ddof=1), rel=1e-12)
    assert got["nvidia_std"] == pytest.approx(np.std(nvidia, ddof=1), rel=1e-12)


def test_compare_hand_case(bench):
    # s1^2 = 1, s2^2 = 4 -> pooled variance (2 * 1 + 2 * 4) / 4 = 2.5, SE = sqrt(2.5 * (1/3 + 1/3)) = sqrt(5/3)
    got = bench.compare([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert got["pooled_se"] == pytest.approx(math.sqrt(5 / 3))
    assert got["diff_over_pooled_se"] == pytest.approx(-2 / math.sqrt(5 / 3))
    assert (got["nvidia_min"], got["nvidia_max"]) == (2.0, 6.0)
    assert got["ours_mean_within_nvidia_range"] is True  # 2.0 is NVIDIA's minimum: the range is closed
    assert got["ours_runs_within_nvidia_range"] == 2  # 2 and 3 are, 1 is not
    outside = bench.compare([7.0, 8.0, 9.0], [2.0, 4.0, 6.0])
    assert outside["ours_mean_within_nvidia_range"] is False and outside["ours_runs_within_nvidia_range"] == 0


def test_summary_records_pair_impls_by_metric(bench):
    runs = [dict(impl=impl, seed=s, kd=kd, fd=fd, wall_s=w, cpu_s=c, ada_p=kd / 100)
            for impl, s, kd, fd, w, c in [("ours", 0, 1.0, 10.0, 100.0, 50.0), ("ours", 1, 3.0, 30.0, 120.0, 70.0),
                                          ("nvidia", 0, 2.0, 20.0, 200.0, 100.0), ("nvidia", 1, 6.0, 60.0, 240.0, 140.0)]]
    rows = {r["metric"]: r for r in bench.summary_records(runs)}
    assert (rows["kd"]["ours_mean"], rows["kd"]["nvidia_mean"]) == (2.0, 4.0)
    assert (rows["fd"]["ours_mean"], rows["fd"]["nvidia_mean"]) == (20.0, 40.0)
    assert (rows["ada_p"]["ours_mean"], rows["ada_p"]["nvidia_mean"]) == (0.02, 0.04)
    assert rows["time"]["cpu_ratio"] == 0.5 and rows["time"]["wall_ratio"] == 0.5
    assert bench.summary_records(runs[:3]) == []  # one NVIDIA run: no spread to compare with


def _demo_like(**changes) -> dict:
    cfg = dict(
        model=dict(resolution=32),
        train=dict(batch_size=16, g_lr=0.0025, d_lr=0.002, betas=[0.0, 0.99], eps=1e-8, r1_gamma=0.01, r1_interval=16,
                   pl_weight=0.0, pl_interval=4, pl_decay=0.01, pl_batch_shrink=2, style_mixing=0.0, ema_kimg=1,
                   ema_rampup=None, freeze_noise=True, freeze_d=0, mbstd_group_size=None),
        augment=dict(kind="ada", preset="bgc", target=0.6, interval=4, ada_kimg=None, initial_p=0.0),
        data=dict(mirror=True))
    for section, values in changes.items():
        cfg[section] = dict(cfg[section], **values)
    return cfg


G_KW = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=0, conv_clamp=None))
D_KW = dict(c_dim=0, img_resolution=32, img_channels=3, architecture="resnet", channel_base=1024, channel_max=64,
            num_fp16_res=0, conv_clamp=None, cmap_dim=None, block_kwargs={}, mapping_kwargs={},
            epilogue_kwargs=dict(mbstd_group_size=4))
SPECS = dict(bgc=dict(xflip=1, rotate90=1), blit=dict(xflip=1))


def test_nvidia_settings_follow_train_py_for_a_resumed_run(bench):
    s = bench.nvidia_settings(_demo_like(), G_KW, D_KW, SPECS)
    loop = s["loop_kwargs"]
    # NVIDIA's train.py with --resume: ada_kimg 100, no EMA ramp-up; the loop applies the lazy Adam correction itself,
    # so the configured learning rates go in unchanged
    assert loop["ada_kimg"] == 100 and loop["ema_rampup"] is None and loop["ema_kimg"] == 1
    assert (loop["ada_target"], loop["ada_interval"], loop["augment_p"]) == (0.6, 4, 0.0)
    assert loop["augment_kwargs"] == dict(class_name="training.augment.AugmentPipe", xflip=1, rotate90=1)
    assert (loop["G_opt_kwargs"]["lr"], loop["D_opt_kwargs"]["lr"]) == (0.0025, 0.002)
    assert loop["D_opt_kwargs"]["class_name"] == "torch.optim.Adam"
    assert loop["G_opt_kwargs"]["class_name"] == "_bench_finetune_optim.AdamKeepNoise"  # freeze_noise
    assert (loop["batch_size"], loop["batch_gpu"], loop["G_reg_interval"], loop["D_reg_interval"]) == (16, 16, 4, 16)
    assert loop["loss_kwargs"]["r1_gamma"] == 0.01 and loop["loss_kwargs"]["style_mixing_prob"] == 0.0
    assert s["xflip"] is True
    assert "img_resolution" not in s["G_kwargs"] and s["D_kwargs"]["epilogue_kwargs"] == dict(mbstd_group_size=4)


def test_nvidia_settings_resolve_nulls_and_options(bench):
    s = bench.nvidia_settings(_demo_like(train=dict(r1_gamma=None, ema_kimg=None, ema_rampup=0.05, freeze_noise=False,
                                                    freeze_d=2, mbstd_group_size=2),
                                         augment=dict(preset="blit", ada_kimg=500, target=None, initial_p=0.3),
                                         data=dict(mirror=False)), G_KW, D_KW, SPECS)
    loop = s["loop_kwargs"]
    assert loop["loss_kwargs"]["r1_gamma"] == pytest.approx(0.0002 * 32 ** 2 / 16)  # train.py's auto heuristic
    assert loop["ema_kimg"] == pytest.approx(16 * 10 / 32) and loop["ema_rampup"] == 0.05
    assert loop["ada_kimg"] == 500 and loop["ada_target"] is None and loop["augment_p"] == 0.3  # fixed p
    assert loop["augment_kwargs"] == dict(class_name="training.augment.AugmentPipe", xflip=1)
    assert loop["G_opt_kwargs"]["class_name"] == "torch.optim.Adam" and s["xflip"] is False
    assert s["D_kwargs"]["block_kwargs"] == dict(freeze_layers=2)
    assert s["D_kwargs"]["epilogue_kwargs"] == dict(mbstd_group_size=2)
    assert D_KW["epilogue_kwargs"] == dict(mbstd_group_size=4)  # the caller's kwargs are left alone
    off = bench.nvidia_settings(_demo_like(augment=dict(kind="none")), G_KW, D_KW, SPECS)["loop_kwargs"]
    assert off["augment_kwargs"] is None and off["ada_target"] is None and off["augment_p"] == 0.0
    with pytest.raises(SystemExit, match="diffaug"):
        bench.nvidia_settings(_demo_like(augment=dict(kind="diffaug")), G_KW, D_KW, SPECS)


def test_keep_noise_optimizer_leaves_out_exactly_the_noise_strengths(bench):
    """NVIDIA's Generator has our parameter names and shapes (DESIGN §3), so ours stands in for it here."""
    bench._register_keep_noise()
    G = Generator(**G_KW)
    opt = sys.modules[bench.KEEP_NOISE_MODULE].AdamKeepNoise(G.parameters(), lr=0.1)
    kept = {id(p) for group in opt.param_groups for p in group["params"]}
    left_out = sorted(n for n, p in G.named_parameters() if id(p) not in kept)
    assert left_out == sorted(n for n, _ in G.named_parameters() if n.endswith("noise_strength"))
    assert len(left_out) == 7  # b4: conv1; b8, b16, b32: conv0 and conv1
