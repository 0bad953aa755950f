"""Mutation check: do the tests notice when the training (or selection, scoring, blending) is broken?

Each mutant below is one deliberate bug, written as a text replacement in one source file. For every mutant the
repository is copied to a temporary folder (tracked and untracked-but-not-ignored files, no .git), the replacement
is made there, and the mutant's tests run against the copy (PYTHONPATH=copy). A mutant is `caught` when a test
fails, `SURVIVED` when all pass, and `STALE` when its old text is not in the file exactly once (the code moved on:
update the entry; a stale mutant is an error, never counted as caught). The tests are first run unmutated: a
failure there stops the check, since a red test catches every mutant.

    .venv/bin/python tools/mutants.py              # all mutants (make mutants)
    .venv/bin/python tools/mutants.py --only r1_gain_dropped --jobs 2
    .venv/bin/python tools/mutants.py --list

Exit status 0 only when every mutant is caught. Add a mutant by adding a row to MUTANTS.
"""
from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAINING = "tests/test_training.py"
PARITY = "tests/test_nvidia_parity.py"
K_STEP = f"{PARITY}::test_k_minibatches_match_nvidias_training_loop"
ONE_STEP = f"{PARITY}::test_training_step_matches_nvidia_stylegan2loss_in_fp32"
GUARDS = "tests/test_mutant_guards.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("g_ema_never_updated", "stylegan_blend/training/module.py",
           "update_ema(self.G_ema, self.G, ema_beta(batch, ema_kimg, self.nimg, self.ema_rampup))",
           "ema_beta(batch, ema_kimg, self.nimg, self.ema_rampup)",
           (f"{TRAINING}::test_g_ema_without_ramp_up_when_fine_tuning", K_STEP)),
    Mutant("ema_rampup_ignored", "stylegan_blend/training/ema.py",
           "ema_nimg = min(ema_nimg, cur_nimg * rampup)", "ema_nimg = ema_nimg",
           (f"{TRAINING}::test_g_ema_beta_uses_the_images_before_the_minibatch", K_STEP)),
    Mutant("ema_beta_from_nimg_after_the_minibatch", "stylegan_blend/training/module.py",
           "ema_beta(batch, ema_kimg, self.nimg, self.ema_rampup)",
           "ema_beta(batch, ema_kimg, self.nimg + batch, self.ema_rampup)",
           (f"{TRAINING}::test_g_ema_beta_uses_the_images_before_the_minibatch", K_STEP)),
    Mutant("ema_rampup_kept_when_fine_tuning", "stylegan_blend/training/module.py",
           'FINE_TUNING = {"ada_kimg": 100.0, "ema_rampup": None}',
           'FINE_TUNING = {"ada_kimg": 100.0, "ema_rampup": 0.05}',
           (f"{TRAINING}::test_g_ema_without_ramp_up_when_fine_tuning",)),
    Mutant("ada_kimg_500_when_fine_tuning", "stylegan_blend/training/module.py",
           'FINE_TUNING = {"ada_kimg": 100.0,', 'FINE_TUNING = {"ada_kimg": 500.0,',
           (f"{TRAINING}::test_schedule_defaults_are_nvidias_for_scratch_and_fine_tuning",)),
    Mutant("style_mixing_probability_inverted", "stylegan_blend/training/module.py",
           'if float(torch.rand(())) >= self.tcfg["style_mixing"]:',
           'if float(torch.rand(())) < self.tcfg["style_mixing"]:', (K_STEP,)),
    Mutant("ada_not_applied_to_d_inputs", "stylegan_blend/training/module.py",
           "img = self.augment(img)", "img = img",
           (f"{TRAINING}::test_every_d_call_sees_augmented_images",)),
    Mutant("lazy_adam_correction_dropped", "stylegan_blend/training/losses.py",
           "c = interval / (interval + 1)", "c = 1.0",
           (f"{TRAINING}::test_lazy_regularisation_adam_correction",
            f"{TRAINING}::test_lazy_correction_applies_even_without_the_regularisers", K_STEP)),
    Mutant("lazy_adam_correction_dropped_without_pl", "stylegan_blend/training/module.py",
           'losses.lazy_adam_params(t["g_lr"], t["betas"], t["pl_interval"])',
           'losses.lazy_adam_params(t["g_lr"], t["betas"], t["pl_interval"] if t["pl_weight"] else None)',
           (f"{TRAINING}::test_lazy_correction_applies_even_without_the_regularisers",)),
    Mutant("r1_gain_dropped", "stylegan_blend/training/module.py",
           'self._step("Dreg", opt_D, loss, gain=t["r1_interval"])', 'self._step("Dreg", opt_D, loss, gain=1)',
           (ONE_STEP, K_STEP)),
    Mutant("pl_decay_inverted", "stylegan_blend/training/module.py",
           'self.pl_mean.lerp(lengths.mean(), t["pl_decay"])', 'self.pl_mean.lerp(lengths.mean(), 1 - t["pl_decay"])',
           (ONE_STEP, K_STEP)),
    Mutant("nan_to_num_skipped", "stylegan_blend/training/module.py",
           "torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)", "pass",
           ("tests/test_precision.py::test_gradients_are_nan_to_num_before_each_step_as_nvidia",)),
    Mutant("ada_p_adjustment_sign_flipped", "stylegan_blend/training/augment.py",
           "math.copysign(1.0, r_t - self.target)", "math.copysign(1.0, self.target - r_t)",
           (f"{TRAINING}::test_ada_p_rises_by_the_exact_step_when_d_overfits", K_STEP)),
    Mutant("ada_p_clamped_at_one", "stylegan_blend/training/augment.py",
           "pipe.p.copy_((pipe.p + delta).clamp_min(0))", "pipe.p.copy_((pipe.p + delta).clamp(0, 1))",
           (f"{TRAINING}::test_ada_p_is_clamped_at_zero_only",)),
    Mutant("r_t_without_dreg_logits", "stylegan_blend/training/module.py",
           "self.ada.accumulate(logits.detach())  # NVIDIA's r_t counts these signs too", "pass",
           (f"{TRAINING}::test_r_t_counts_dmain_and_dreg_real_logits", K_STEP)),
    Mutant("weighted_rule_ignores_style_of_base", "stylegan_blend/selection/rules.py",
           "rule.param * p.style / style_scale + (1 - rule.param) * p.identity,",
           "rule.param * p.style + (1 - rule.param) * p.identity,",
           ("tests/test_selection.py", GUARDS)),
    Mutant("knee_axis_scaling_removed", "stylegan_blend/selection/rules.py",
           "xy = {id(p): (_scale(p.style, ranges[0]), _scale(p.identity, ranges[1])) for p in front}",
           "xy = {id(p): (p.style, p.identity) for p in front}", ("tests/test_selection.py", GUARDS)),
    Mutant("density_coverage_real_and_fake_swapped", "stylegan_blend/evaluation/scoring.py",
           "density_coverage(ref_features, gen_features, k=DENSITY_K)",
           "density_coverage(gen_features, ref_features, k=DENSITY_K)", ("tests/test_evaluation.py", GUARDS)),
    Mutant("requeue_checkpoint_name_not_broadcast", "stylegan_blend/training/callbacks/requeue.py",
           "path = trainer.strategy.broadcast(next_hpc_checkpoint(Path(trainer.default_root_dir)), src=0)",
           "path = next_hpc_checkpoint(Path(trainer.default_root_dir))", (GUARDS,)),
    Mutant("blend_direction_swapped", "stylegan_blend/blending/swap.py",
           "out[key] = (high if alpha >= 0.5 else low).detach().clone()",
           "out[key] = (low if alpha >= 0.5 else high).detach().clone()", ("tests/test_blending.py",)),
    Mutant("blend_direction_pair_swapped", "stylegan_blend/blending/swap.py",
           'if direction == "low_base":\n        return base, tuned', 'if direction == "low_base":\n        return tuned, base',
           ("tests/test_blending.py",)),
]


def copy_repo(dst: Path) -> None:
    """Tracked and untracked-but-not-ignored files of the working tree (what a fresh clone plus local edits has)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src, out = ROOT / rel, dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():  # e.g. stylegan_blend/conf -> ../conf
            os.symlink(os.readlink(src), out)
        elif src.is_file():
            shutil.copy2(src, out)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    """(passed, last lines of output) of pytest on `tests` with the copy's code."""
    env = dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", WANDB_MODE="offline")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    tail = (r.stdout + r.stderr).strip().splitlines()
    return r.returncode == 0, tail[-1] if tail else ""


def check(mutant: Mutant, copy: Path, timeout: float) -> tuple[str, float, str]:
    """(result, seconds, detail) of one mutant in `copy` (restored afterwards)."""
    path = copy / mutant.file
    text = path.read_text()
    found = text.count(mutant.old)
    if found != 1:
        return "STALE", 0.0, f"old text found {found} times in {mutant.file}"
    start = time.monotonic()
    path.write_text(text.replace(mutant.old, mutant.new))
    try:
        passed, tail = run_tests(copy, mutant.tests, timeout)
    finally:
        path.write_text(text)
    return ("SURVIVED" if passed else "caught"), time.monotonic() - start, tail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME", help="run just this mutant (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants checked at once (one repository copy each)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        sys.exit(f"error: unknown mutant(s) {', '.join(sorted(unknown))}; see --list")
    if args.list:
        for m in mutants:
            print(f"{m.name:42s} {m.file}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copies: queue.Queue = queue.Queue()
        for i in range(max(1, args.jobs)):
            copy = Path(tmp) / f"copy{i}"
            copy_repo(copy)
            copies.put(copy)
        tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        copy = copies.get()
        passed, tail = run_tests(copy, tests, args.timeout)
        copies.put(copy)
        if not passed:
            sys.exit(f"error: the tests fail without any mutation ({tail}); fix them first")

        def work(m):
            c = copies.get()
            try:
                return m, *check(m, c, args.timeout)
            finally:
                copies.put(c)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(work, mutants))
    width = max(len(m.name) for m in mutants)
    print(f"\n{'mutant':{width}s}  {'result':8s}  {'s':>5s}  file / tests")
    for m, result, seconds, detail in rows:
        tests = ", ".join(t.replace("tests/", "").replace("::test_", "::") for t in m.tests)
        print(f"{m.name:{width}s}  {result:8s}  {seconds:5.0f}  {m.file}  [{tests}]")
        if result != "caught":
            print(f"{'':{width}s}  {'':8s}  {'':5s}  {detail}")
    bad = [m.name for m, result, *_ in rows if result != "caught"]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} mutants caught" + (f"; not caught: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
