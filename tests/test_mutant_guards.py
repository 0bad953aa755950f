"""Behaviour the mutation check (tools/mutants.py) found unguarded, checked through public functions against
hand-computed cases: the selection rules' scales, which set density/coverage treats as real, and the requeue
checkpoint name that rank 0 decides for every rank."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stylegan_blend.selection import Point, select

# a front from most stylised to closest to the base: A (0, 1), B (0.2, 0.4), C (0.5, 0.2), D (1, 0)
FRONT = [(0.0, 1.0), (0.2, 0.4), (0.5, 0.2), (1.0, 0.0)]


def points(xy):
    return [Point(1, 0.0, f"swap{4 * 2 ** i}_low_base", 4 * 2 ** i, "low_base", x, y) for i, (x, y) in enumerate(xy)]


def test_weighted_rule_measures_style_relative_to_the_base_model():
    """weighted=0.5 minimises 0.5 * style / style(base) + 0.5 * identity. With style(base) = 4 the values are
    A 0.5, B 0.225, C 0.1625, D 0.125: D. On raw style (style(base) ignored) B would win: 0.5, 0.3, 0.35, 0.5."""
    chosen = select(points(FRONT), "weighted=0.5", style_scale=4.0).point
    assert (chosen.style, chosen.identity) == (1.0, 0.0)
    chosen = select(points(FRONT), "weighted=0.5", style_scale=0.25).point  # A 0.5, B 0.6, C 1.1, D 2.0
    assert (chosen.style, chosen.identity) == (0.0, 1.0)


def test_knee_scales_both_axes_before_comparing_them():
    """A two-point front (A at style 0, identity 0.9; B at style 50, identity 0; E at (100, 1) is dominated) has no
    interior point: the rule takes the end nearest the ideal corner with both axes scaled to [0, 1] over the
    points: A (0, 0.9) -> 0.9, B (0.5, 0) -> 0.5, so B. In raw units style 50 would outweigh identity 0.9."""
    chosen = select(points([(0.0, 0.9), (50.0, 0.0), (100.0, 1.0)]), "knee").point
    assert (chosen.style, chosen.identity) == (50.0, 0.0)


def test_score_treats_the_reference_set_as_real_for_density_and_coverage():
    """Naeem et al.: the k-NN balls are the REAL samples'. Reals 0..6 on a line, k = 5: radii 5, 4, 3, 3, 3, 4, 5.
    Fakes 3, 3, 3 lie in all 7 balls, fakes 100 (x4) in none: density = 3 * 7 / (5 * 7) = 0.6, coverage 7/7 = 1.
    (With the sets swapped the balls would be the fakes' (radius 97) and density (21 + 16) / 35 = 1.057.)"""
    from stylegan_blend.evaluation import FeatureExtractor, score

    class Hand(FeatureExtractor):
        name, comparable, cache_id = "hand", False, "hand"

    real = np.arange(7, dtype=np.float64)[:, None]
    fake = np.array([3.0, 3.0, 3.0, 100.0, 100.0, 100.0, 100.0])[:, None]
    out = score(fake, real, Hand())
    assert out["density_hand"] == pytest.approx(0.6) and out["coverage_hand"] == pytest.approx(1.0)


def test_requeue_checkpoint_is_named_by_rank_0_for_every_rank(tmp_path):
    """Rank 1 reaches the save after rank 0 already wrote hpc_ckpt_1.ckpt: it must save under the name rank 0
    broadcast (hpc_ckpt_1), not count rank 0's file and invent hpc_ckpt_2 (the race the broadcast closes)."""
    from stylegan_blend.training.callbacks.requeue import Requeued, SlurmRequeue

    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"rank 0 was faster")
    rank0_name = str(tmp_path / "hpc_ckpt_1.ckpt")  # what rank 0 computed before saving, and broadcast
    saved = []
    strategy = SimpleNamespace(reduce=lambda t, reduce_op: t, broadcast=lambda obj, src=0: rank0_name)
    trainer = SimpleNamespace(world_size=2, strategy=strategy, num_training_batches=10,
                              default_root_dir=str(tmp_path), is_global_zero=False, save_checkpoint=saved.append)
    module = SimpleNamespace(device=torch.device("cpu"), minibatch=3, kimg=0.012, mid_epoch_save=False)
    callback = SlurmRequeue()
    callback.requested = True
    with pytest.raises(Requeued, match="hpc_ckpt_1.ckpt"):
        callback.on_train_batch_end(trainer, module, None, None, batch_idx=2)
    assert saved == [rank0_name] and Path(saved[0]).name == "hpc_ckpt_1.ckpt"
