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
    assert select(pts(XY), "knee").point.style == 0.2
    # scaling one axis does not move the knee (per-axis normalisation)
    scaled = [(10 * x, y) for x, y in XY]
    assert select(pts(scaled), "knee").point.identity == 0.4


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
    # two-point fronts: both on the line through their ends; tie -> nearer the ideal corner on run-scaled
    # axes: epoch 1 A (sum 1.0) vs B (0.6) -> B; epoch 2 C (0.7) vs D (1.0) -> C
    assert [(c.point.epoch, c.point.style) for c in per_epoch] == [(1, 0.2), (2, 0.5)]
    assert (overall.point.style, overall.point.identity) == (0.2, 0.4)


@pytest.mark.parametrize("bad", ["kneee", "min_identity", "min_identity=abc", "weighted=2"])
def test_bad_rules(bad):
    with pytest.raises(UserError):
        parse_rule(bad)


def test_bad_rule_in_the_training_config_fails_before_training(tmp_path):
    from test_training import _cfg

    from stylegan_blend.train import train

    for bad, match in (("selection=weighted selection.param=1.5", "must be in"), ("selection.rule=best", "best")):
        cfg = _cfg(tmp_path / "run", tmp_path / "no-data", *bad.split())
        with pytest.raises(UserError, match=match):
            train(cfg)
    assert not (tmp_path / "run").exists()  # nothing written


def test_report_says_when_no_cell_satisfies_the_rule(tmp_path):
    from test_report import IDL, KID, make_run

    from stylegan_blend.reporting import build_report

    run = make_run(tmp_path, metrics=(("kid", KID), ("idloss_proxy", IDL)))
    html = build_report([run], rule="min_identity=0.95").read_text()
    assert "No blend cell satisfies <code>min_identity=0.95</code>: no cell keeps identity ≥ 0.95; highest is 0.9" in html
