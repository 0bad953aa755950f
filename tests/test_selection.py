"""Pareto front and selection rules against hand-computed points."""
import math

import pytest

from stylegan_blend.errors import UserError
from stylegan_blend.selection import Point, pareto_front, parse_rule, select
from stylegan_blend.selection.rules import select_run


def pts(xy, epoch=1):
    return [Point(epoch, 0.0, f"swap{4 * 2 ** i}_low_base", 4 * 2 ** i, "low_base", x, y)
            for i, (x, y) in enumerate(xy)]


# A, B, C, D are the front; E is dominated by C, F by B
XY = [(0.0, 1.0), (0.2, 0.4), (0.5, 0.2), (1.0, 0.0), (0.6, 0.5), (0.2, 0.6)]


def test_pareto_front_by_hand():
    assert pareto_front(XY) == [0, 1, 2, 3]
    # duplicates both stay; a point equal on one axis and worse on the other is dominated; NaN never on it
    assert pareto_front([(1, 1), (1, 1), (1, 2), (2, 1), (math.nan, 0)]) == [0, 1]
    assert pareto_front([(3, 0), (0, 3)]) == [1, 0]


def test_knee_is_farthest_from_the_ends_line():
    # normalised axes are already [0, 1]; line x + y = 1; distances B 0.4/√2, C 0.3/√2
    choice = select(pts(XY), "knee")
    assert choice.point.style == 0.2 and not choice.fallback
    # the order of distances to one line is the same in any per-axis scaling
    scaled = [(10 * x, y) for x, y in XY]
    assert select(pts(scaled), "knee").point.identity == 0.4


def test_concave_front_has_no_knee_and_says_so():
    # the front: (0.5, 0.9) is far from the chord x + y = 1 but on the wrong side (worse than the
    # straight trade-off). Normalised sums 1, 1.4, 1: the ends tie; the one with fewest fine-tuned layers
    # (swap16 of swap4/8/16 at an inferred 64 px: 2 blocks vs 4) wins
    choice = select(pts([(0, 1), (0.5, 0.9), (1, 0)]), "knee")
    assert (choice.point.style, choice.point.identity) == (1, 0)
    assert "concave" in choice.fallback and "no knee" in choice.why() and "no knee" in str(choice)


def test_straight_front_falls_back_to_the_declared_rule():
    # every cell on the chord: none on the ideal side; all normalised sums 1 -> tie -> fewest fine-tuned layers
    choice = select(pts([(0, 1), (0.25, 0.75), (0.5, 0.5), (1, 0)]), "knee")
    assert choice.fallback and (choice.point.style, choice.point.identity) == (1, 0)
    # a cell just inside the chord is a knee again
    choice = select(pts([(0, 1), (0.25, 0.75), (0.5, 0.45), (1, 0)]), "knee")
    assert not choice.fallback and choice.point.identity == 0.45


@pytest.mark.parametrize("front", [[(0, 1), (1, 0)], [(0, 1), (0.3, 0.4), (0.6, 0.25), (1, 0)]])
def test_a_dominated_outlier_does_not_change_the_pick(front):
    # (0.5, 3) is dominated by (0, 1): stretching the identity axis with it (run-wide ranges) would make
    # (0, 1) look nearly ideal and flip the 2-point tie-break; a (3, 0.5) outlier would stretch style
    base = select(pts(front), "knee").point
    for outlier in ((0.5, 3.0), (3.0, 0.5), (50.0, 50.0)):
        with_outlier = select(pts(front + [outlier]), "knee").point
        assert (with_outlier.style, with_outlier.identity) == (base.style, base.identity)
    per_epoch, overall = select_run(pts(front, epoch=1) + pts([(0.5, 3.0)], epoch=2), "knee")
    assert (per_epoch[0].point.style, per_epoch[0].point.identity) == (base.style, base.identity)


def test_axis_scaling_decides_the_per_epoch_fallback():
    # run front (0, 1) .. (100, 0) sets the scales: style / 100, identity / 1. Epoch 2 has a 2-cell front
    # P = (10, 0.5), Q = (40, 0.1): normalised sums 0.6 and 0.5 -> Q; raw sums 10.5 and 40.1 would pick P
    points = pts([(0, 1), (100, 0)], epoch=1) + pts([(10, 0.5), (40, 0.1)], epoch=2)
    per_epoch, overall = select_run(points, "knee")
    assert (per_epoch[1].point.style, per_epoch[1].point.identity) == (40, 0.1)
    assert per_epoch[1].fallback  # two cells: no interior cell, the declared fallback
    assert (overall.point.style, overall.point.identity) == (40, 0.1)  # farthest inside x + y = 1


def test_tie_break_counts_fine_tuned_blocks():
    from stylegan_blend.selection.rules import fine_tuned_blocks

    def cell(swap_res, direction, epoch=1):
        return Point(epoch, 0.0, f"swap{swap_res}_{direction}", swap_res, direction, 1.0, 1.0)

    # 256 px = b4..b256 (7 blocks). low_base at 16: b32..b256 tuned (4); low_tuned at 16: b4, b8, b16 (3)
    assert fine_tuned_blocks(cell(16, "low_base"), 256) == 4
    assert fine_tuned_blocks(cell(16, "low_tuned"), 256) == 3
    assert fine_tuned_blocks(cell(64, "low_base"), 256) == 2
    tied = [cell(16, "low_base", 3), cell(64, "low_base", 6), cell(64, "low_base", 3), cell(16, "low_tuned", 1)]
    assert select(tied, "weighted=0.5", resolution=256).point == tied[2]  # 2 blocks, then epoch 3 < 6


def test_per_epoch_choice_among_few_swap_points_is_labelled():
    per_epoch, overall = select_run(pts(XY[:4], epoch=1) + pts(XY[:3], epoch=2), "knee")
    assert not per_epoch[0].caveat and "only 3 swap point(s)" in per_epoch[1].caveat
    assert "only 3 swap point(s)" in str(per_epoch[1]) and not overall.caveat


@pytest.mark.parametrize("rule,expected", [("min_identity=0.7", (0.5, 0.2)), ("min_identity=0.5", (0.2, 0.4)),
                                           ("min_identity=1", (1.0, 0.0)), ("weighted=0.5", (0.2, 0.4)),
                                           ("weighted=0.2", (1.0, 0.0)), ("weighted=0.9", (0.0, 1.0))])
def test_rules_by_hand(rule, expected):
    choice = select(pts(XY), rule)
    assert (choice.point.style, choice.point.identity) == expected
    assert str(parse_rule(rule)) in str(choice)  # the rule is printed next to the choice


def test_rule_values_and_infeasible():
    assert select(pts(XY), "knee").value == pytest.approx(0.6)  # 0.2 + 0.4
    assert select(pts(XY), "weighted=0.2", style_scale=2.0).value == pytest.approx(min(
        0.2 * x / 2 + 0.8 * y for x, y in XY))
    assert select(pts(XY), "min_identity=0.7", style_scale=2.0).value == pytest.approx(0.25)  # C: 0.5 / 2
    none = select(pts([(0.1, 0.5), (0.3, 0.45)]), "min_identity=0.9")
    assert none.point is None and none.value == math.inf and "0.55" in none.note


def test_per_epoch_uses_run_ranges():
    points = pts(XY[:2], epoch=1) + pts(XY[2:4], epoch=2)
    per_epoch, overall = select_run(points, "knee")
    # two-point fronts: no interior cell -> the declared fallback, the normalised sum on the run front's
    # axes: epoch 1 A (sum 1.0) vs B (0.6) -> B; epoch 2 C (0.7) vs D (1.0) -> C
    assert [(c.point.epoch, c.point.style) for c in per_epoch] == [(1, 0.2), (2, 0.5)]
    assert (overall.point.style, overall.point.identity) == (0.2, 0.4)


@pytest.mark.parametrize("bad", ["kneee", "min_identity", "min_identity=abc", "weighted=2"])
def test_bad_rules(bad):
    with pytest.raises(UserError):
        parse_rule(bad)


def test_bad_rule_in_the_training_config_fails_before_training(tmp_path):
    from test_training import _cfg

    from stylegan_blend.app.train import train

    for bad, match in (("selection=weighted selection.param=1.5", "must be in"), ("selection.rule=best", "best")):
        cfg = _cfg(tmp_path / "run", tmp_path / "no-data", *bad.split())
        with pytest.raises(UserError, match=match):
            train(cfg)
    assert not (tmp_path / "run").exists()  # nothing written


def test_report_says_when_no_cell_satisfies_the_rule(tmp_path):
    from test_report import IDL, KID, make_run

    from stylegan_blend.reporting.report import build_report

    run = make_run(tmp_path, metrics=(("kid", KID), ("idloss_proxy", IDL)))
    html = build_report([run], rule="min_identity=0.95").read_text()
    assert "No blend cell satisfies <code>min_identity=0.95</code>: no cell keeps identity ≥ 0.95; highest is 0.9" in html


def test_default_identity_axis_is_the_normalised_loss_of_the_best_network():
    from stylegan_blend.selection import default_identity_metric
    from stylegan_blend.selection.run import identity_label

    names = {"kid", "idloss_proxy", "idnorm_proxy", "idbase_proxy", "idloss_dlib", "idnorm_dlib", "idretr_dlib"}
    assert default_identity_metric(names) == "idnorm_dlib"
    assert default_identity_metric(names - {"idnorm_dlib"}) == "idnorm_proxy"  # normalised beats a better raw one
    assert default_identity_metric({"kid", "idloss_lpips", "idloss_proxy"}) == "idloss_lpips"
    assert "unnormalised" in identity_label("idloss_lpips") and "another person" in identity_label("idnorm_dlib")
    assert default_identity_metric({"kid", "idbase_proxy"}) is None
